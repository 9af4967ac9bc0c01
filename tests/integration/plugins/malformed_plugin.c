/* Plugins that the loader must reject, one per build of this file:
 * MALFORMED_NAME is the name in the operations table, MALFORMED_ABI its ABI
 * version, and MALFORMED_STRUCT_SIZE its struct_size. Each operation fails
 * with IMAROT_ROT_ERR_FAILED, so a loader that accepted one of these would
 * make the test fail at the first call. */
#include <stdio.h>

#include "imarot/rot_plugin.h"

static int fail_call(struct imarot_rot_error* error) {
  if (error != NULL) {
    error->native_code = 0;
    snprintf(error->message, sizeof error->message, "%s", "malformed test plugin: this call must not be reached");
  }
  return IMAROT_ROT_ERR_FAILED;
}

static int malformed_init(const char* json_config, void** handle, struct imarot_rot_error* error) {
  (void)json_config;
  (void)handle;
  return fail_call(error);
}

static int malformed_describe(void* handle, struct imarot_rot_description* out, struct imarot_rot_error* error) {
  (void)handle;
  (void)out;
  return fail_call(error);
}

static int malformed_check_register(void* handle, uint32_t reg, struct imarot_rot_error* error) {
  (void)handle;
  (void)reg;
  return fail_call(error);
}

static int malformed_extend(void* handle, uint32_t reg, const struct imarot_rot_digest* digests, size_t count,
                            struct imarot_rot_error* error) {
  (void)handle;
  (void)reg;
  (void)digests;
  (void)count;
  return fail_call(error);
}

static int malformed_read(void* handle, uint32_t reg, uint8_t hash_algo, struct imarot_rot_digest* out,
                          struct imarot_rot_error* error) {
  (void)handle;
  (void)reg;
  (void)hash_algo;
  (void)out;
  return fail_call(error);
}

static int malformed_boot_aggregate(void* handle, uint8_t ima_hash, struct imarot_rot_digest* out,
                                    struct imarot_rot_error* error) {
  (void)handle;
  (void)ima_hash;
  (void)out;
  return fail_call(error);
}

static void malformed_close(void* handle) { (void)handle; }

static const struct imarot_rot_ops ops = {
    .abi_version = MALFORMED_ABI,
    .struct_size = MALFORMED_STRUCT_SIZE,
    .name = MALFORMED_NAME,
    .init = malformed_init,
    .describe = malformed_describe,
    .check_register = malformed_check_register,
    .extend = malformed_extend,
    .read = malformed_read,
    .boot_aggregate = malformed_boot_aggregate,
    .close = malformed_close,
    .read_registers = NULL,
};

IMAROT_ROT_EXPORT const struct imarot_rot_ops* imarot_rot_plugin(void) { return &ops; }
