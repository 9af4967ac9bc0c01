/* A shared object that loads but lacks the imarot_rot_plugin entry symbol,
 * as a library dropped into the plugin directory by mistake would. */
__attribute__((visibility("default"))) int imarot_unrelated_function(int value) { return value + 1; }
