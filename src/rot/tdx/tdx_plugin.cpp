// imarot-rot-tdx.so: Intel TDX RTMRs: extended through tsm-mr on Linux 6.16 and
// later, read-only from TDREPORTs (TDX_CMD_GET_REPORT0) on older kernels.
#include "plugin_glue.h"

namespace {

int init(const char* json_config, void** handle, imarot_rot_error* error) {
  return imarot::cc::plugin_init(imarot::cc::PluginKind::tdx, json_config, handle, error);
}

int check_config(const char* json_config, imarot_rot_error* error) {
  return imarot::cc::plugin_check_config(imarot::cc::PluginKind::tdx, json_config, error);
}

constexpr imarot_rot_ops kOps = imarot::cc::make_plugin_ops("tdx", init, check_config);

}  // namespace

extern "C" IMAROT_ROT_EXPORT const imarot_rot_ops* imarot_rot_plugin(void) { return &kOps; }
