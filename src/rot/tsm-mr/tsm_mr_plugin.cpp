// imarot-rot-tsm-mr.so: registers of any tsm-mr measurements directory
// (/sys/class/misc/<device>/measurements), with the "tdx" or "cca" preset or
// none.
#include "plugin_glue.h"

namespace {

int init(const char* json_config, void** handle, imarot_rot_error* error) {
  return imarot::cc::plugin_init(imarot::cc::PluginKind::tsm_mr, json_config, handle, error);
}

int check_config(const char* json_config, imarot_rot_error* error) {
  return imarot::cc::plugin_check_config(imarot::cc::PluginKind::tsm_mr, json_config, error);
}

constexpr imarot_rot_ops kOps = imarot::cc::make_plugin_ops("tsm-mr", init, check_config);

}  // namespace

extern "C" IMAROT_ROT_EXPORT const imarot_rot_ops* imarot_rot_plugin(void) { return &kOps; }
