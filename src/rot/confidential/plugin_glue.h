// The RoT plugin C ABI on top of cc::Backend. Each plugin library defines its
// operations table from these functions and its own init, which calls
// plugin_init with its kind. No C++ exception crosses the ABI.
#pragma once

#include "cc_config.h"
#include "imarot/rot_plugin.h"

namespace imarot::cc {

int plugin_init(PluginKind kind, const char* json_config, void** handle, imarot_rot_error* error);
int plugin_check_config(PluginKind kind, const char* json_config, imarot_rot_error* error);
int plugin_describe(void* handle, imarot_rot_description* out, imarot_rot_error* error);
int plugin_describe_register(void* handle, uint32_t reg, imarot_rot_register_info* out, imarot_rot_error* error);
int plugin_check_register(void* handle, uint32_t reg, imarot_rot_error* error);
int plugin_extend(void* handle, uint32_t reg, const imarot_rot_digest* digests, size_t count,
                  imarot_rot_error* error);
int plugin_read(void* handle, uint32_t reg, uint8_t hash_algo, imarot_rot_digest* out, imarot_rot_error* error);
int plugin_read_registers(void* handle, uint8_t hash_algo, const uint32_t* regs, size_t count,
                          imarot_rot_digest* out, imarot_rot_error* error);
int plugin_boot_aggregate(void* handle, uint8_t ima_hash, imarot_rot_digest* out, imarot_rot_error* error);
void plugin_close(void* handle);

// The operations table of a plugin named `name` whose init is `init` and
// whose config check is `check_config`.
constexpr imarot_rot_ops make_plugin_ops(const char* name, int (*init)(const char*, void**, imarot_rot_error*),
                                         int (*check_config)(const char*, imarot_rot_error*)) {
  return imarot_rot_ops{
      .abi_version = IMAROT_ROT_ABI_VERSION,
      .struct_size = sizeof(imarot_rot_ops),
      .name = name,
      .init = init,
      .describe = plugin_describe,
      .check_register = plugin_check_register,
      .extend = plugin_extend,
      .read = plugin_read,
      .boot_aggregate = plugin_boot_aggregate,
      .close = plugin_close,
      .read_registers = plugin_read_registers,
      .describe_register = plugin_describe_register,
      .check_config = check_config,
  };
}

}  // namespace imarot::cc
