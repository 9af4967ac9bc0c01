/* The C ABI between imarotd and its root-of-trust (RoT) backend plugins.
 *
 * A backend is a shared object named imarot-rot-<name>.so in the plugin
 * directory. It exports one function, imarot_rot_plugin(), that returns a
 * table of operations. imarotd compares the table's abi_version with its own
 * IMAROT_ROT_ABI_VERSION and rejects the plugin on any difference, naming both
 * versions. Errors never cross this boundary as C++ exceptions: every
 * operation returns an IMAROT_ROT_* code and fills an imarot_rot_error. */
#ifndef IMAROT_ROT_PLUGIN_H
#define IMAROT_ROT_PLUGIN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define IMAROT_ROT_ABI_VERSION 1u
#define IMAROT_ROT_ENTRY_SYMBOL "imarot_rot_plugin"
#define IMAROT_ROT_MAX_DIGEST 64u
#define IMAROT_ROT_MAX_BANKS 16u

/* Marks the entry function for export when the plugin is built with
 * -fvisibility=hidden, which keeps every other symbol private to it. */
#define IMAROT_ROT_EXPORT __attribute__((visibility("default")))

/* Return codes of the operations. */
enum imarot_rot_status {
  IMAROT_ROT_OK = 0,
  IMAROT_ROT_ERR_INVALID = 1,     /* bad argument or configuration; retrying will not help */
  IMAROT_ROT_ERR_RETRY = 2,       /* transient (device busy, TPM_RC_RETRY); try again later */
  IMAROT_ROT_ERR_UNAVAILABLE = 3, /* device gone or not reachable */
  IMAROT_ROT_ERR_READ_ONLY = 4,   /* the register or the whole backend cannot be extended */
  IMAROT_ROT_ERR_UNALLOCATED = 5, /* the bank exists in the algorithm list but contains no values */
  IMAROT_ROT_ERR_FAILED = 6,      /* any other failure, which the message names */
};

struct imarot_rot_error {
  int32_t native_code; /* errno, TSS2_RC, ... ; 0 when none applies */
  char message[512];   /* NUL-terminated, written for the operator */
};

/* One digest, tagged with its algorithm as the kernel numbers it
 * (include/uapi/linux/hash_info.h: sha1 = 2, sha256 = 4, sha384 = 5,
 * sha512 = 6, sm3 = 17). */
struct imarot_rot_digest {
  uint8_t hash_algo;
  uint8_t reserved;
  uint16_t size;
  uint8_t bytes[IMAROT_ROT_MAX_DIGEST];
};

struct imarot_rot_bank {
  uint8_t hash_algo;    /* kernel hash_info number */
  uint8_t reserved;
  uint16_t digest_size; /* bytes */
  uint16_t tpm_alg_id;  /* TPM2_ALG_ID, 0 when the backend is not a TPM */
};

#define IMAROT_ROT_FLAG_READ_ONLY 0x1u /* no register of the backend can be extended */
/* The registers are the ones kernel IMA extends on this system (a TPM
 * character device or a resource manager in front of it), so imarotd must
 * not extend a register that the kernel's measurement list uses. */
#define IMAROT_ROT_FLAG_KERNEL_SHARED 0x2u

struct imarot_rot_description {
  char name[32];          /* "tpm2", "tdx", ... */
  char register_kind[16]; /* "PCR", "RTMR", "REM" */
  uint32_t register_count;
  uint32_t default_register; /* register for runtime measurements */
  uint32_t flags;
  uint32_t bank_count;
  struct imarot_rot_bank banks[IMAROT_ROT_MAX_BANKS];
  char read_only_reason[256]; /* why, when IMAROT_ROT_FLAG_READ_ONLY is set */
};

/* The register can be read but never extended, such as TDX's MRTD or a
 * realm's RIM, both fixed when the guest was built. */
#define IMAROT_ROT_REGISTER_READ_ONLY 0x1u

/* Properties of one register, from describe_register(). */
struct imarot_rot_register_info {
  char name[32];              /* as the platform names it: "RTMR2", "MRTD", "REM0" */
  char alias[32];             /* its name in another numbering ("CC MR 3"), or empty */
  uint32_t flags;             /* IMAROT_ROT_REGISTER_* */
  char read_only_reason[256]; /* why, when IMAROT_ROT_REGISTER_READ_ONLY is set */
};

struct imarot_rot_ops {
  uint32_t abi_version; /* IMAROT_ROT_ABI_VERSION the plugin was built against */
  uint32_t struct_size; /* sizeof(struct imarot_rot_ops) in that build */
  const char* name;

  /* Opens the backend from its JSON config section (a JSON object as text,
   * "{}" when the config has none) and stores a handle in *handle. */
  int (*init)(const char* json_config, void** handle, struct imarot_rot_error* error);

  int (*describe)(void* handle, struct imarot_rot_description* out, struct imarot_rot_error* error);

  /* Checks that `reg` can be extended (a TPM rejects PCR 17-22 at locality
   * 0, for example), so a config can be rejected before anything runs. */
  int (*check_register)(void* handle, uint32_t reg, struct imarot_rot_error* error);

  /* Extends `reg` in every bank at once: digests[i] is the value for bank i
   * of the description, in its algorithm. Either all banks are extended or,
   * on error, the plugin reports which state it left (the message states it). */
  int (*extend)(void* handle, uint32_t reg, const struct imarot_rot_digest* digests, size_t count,
                struct imarot_rot_error* error);

  /* Reads `reg` of the bank with kernel algorithm number `hash_algo`. */
  int (*read)(void* handle, uint32_t reg, uint8_t hash_algo, struct imarot_rot_digest* out,
              struct imarot_rot_error* error);

  /* Computes the boot_aggregate the kernel would record for `ima_hash`; the
   * backend picks the bank as kernel IMA does and sets out->hash_algo. */
  int (*boot_aggregate)(void* handle, uint8_t ima_hash, struct imarot_rot_digest* out,
                        struct imarot_rot_error* error);

  void (*close)(void* handle);

  /* Optional, NULL when absent; a plugin built before this member existed
   * has a smaller struct_size, and imarotd then calls read() per register.
   * Reads registers regs[0..count) of the bank with kernel algorithm number
   * `hash_algo` into out[0..count), in as few device round trips as the
   * device allows. IMAROT_ROT_ERR_UNALLOCATED means the bank has no
   * registers allocated, and out[] is then left unset, never zero-filled. */
  int (*read_registers)(void* handle, uint8_t hash_algo, const uint32_t* regs, size_t count,
                        struct imarot_rot_digest* out, struct imarot_rot_error* error);

  /* Optional, NULL when absent. Describes register `reg` (below
   * register_count): its name, and whether it can be extended. imarotd calls
   * it once per register right after describe(). A plugin built before this
   * member existed has a smaller struct_size. Its registers are then shown by
   * number only, and they count as extendable unless the backend is
   * read-only. */
  int (*describe_register)(void* handle, uint32_t reg, struct imarot_rot_register_info* out,
                           struct imarot_rot_error* error);

  /* Optional, NULL when absent. Checks a JSON config section as init()
   * would, with the same errors, but opens no device, so `imarotd --check`
   * can validate a config on any machine. A plugin built before this member
   * existed has a smaller struct_size, and its config is then checked only
   * when the backend is opened. */
  int (*check_config)(const char* json_config, struct imarot_rot_error* error);
};

/* Size of the operations table as version 1 first defined it, without
 * read_registers. imarotd accepts any struct_size from this value up. */
#define IMAROT_ROT_OPS_V1_MIN_SIZE offsetof(struct imarot_rot_ops, read_registers)

typedef const struct imarot_rot_ops* (*imarot_rot_plugin_fn)(void);

#ifdef __cplusplus
}
#endif

#endif /* IMAROT_ROT_PLUGIN_H */
