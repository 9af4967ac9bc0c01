// imarot-rot-cca.so: Arm CCA REMs: extended through tsm-mr where the kernel
// exposes them, else read-only from configfs-tsm attestation tokens.
#include "plugin_glue.h"

namespace {

int init(const char* json_config, void** handle, imarot_rot_error* error) {
  return imarot::cc::plugin_init(imarot::cc::PluginKind::cca, json_config, handle, error);
}

int check_config(const char* json_config, imarot_rot_error* error) {
  return imarot::cc::plugin_check_config(imarot::cc::PluginKind::cca, json_config, error);
}

constexpr imarot_rot_ops kOps = imarot::cc::make_plugin_ops("cca", init, check_config);

}  // namespace

extern "C" IMAROT_ROT_EXPORT const imarot_rot_ops* imarot_rot_plugin(void) { return &kOps; }
