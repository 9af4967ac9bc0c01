// imarot-rot-virtcca.so: Huawei VirtCCA REMs, read-only from attestation
// tokens of /dev/tsi (TMM_GET_ATTESTATION_TOKEN), or through a configured
// tsm-mr directory.
#include "plugin_glue.h"

namespace {

int init(const char* json_config, void** handle, imarot_rot_error* error) {
  return imarot::cc::plugin_init(imarot::cc::PluginKind::virtcca, json_config, handle, error);
}

int check_config(const char* json_config, imarot_rot_error* error) {
  return imarot::cc::plugin_check_config(imarot::cc::PluginKind::virtcca, json_config, error);
}

constexpr imarot_rot_ops kOps = imarot::cc::make_plugin_ops("virtcca", init, check_config);

}  // namespace

extern "C" IMAROT_ROT_EXPORT const imarot_rot_ops* imarot_rot_plugin(void) { return &kOps; }
