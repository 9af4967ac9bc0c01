// Roots of trust behind the plugin C ABI: loading a backend plugin by name,
// and the C++ view of one backend (description, extend, read,
// boot_aggregate).
#pragma once

#include <cassert>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "imarot/hash.h"
#include "imarot/measurement_list.h"
#include "imarot/result.h"

struct imarot_rot_ops;

namespace imarot::rot {

// Outcome classes of a backend operation; the values are those of the C ABI's
// enum imarot_rot_status.
enum class Status : int {
  ok = 0,
  invalid = 1,      // bad argument or configuration: retrying cannot help
  retry = 2,        // transient: the device is busy
  unavailable = 3,  // the device is gone or not reachable
  read_only = 4,    // the register or the backend cannot be extended
  unallocated = 5,  // the bank exists but has no registers allocated
  failed = 6,       // any other failure
};

std::string_view status_name(Status status);

// True for the statuses after which the same operation may succeed later.
inline bool is_transient(Status status) { return status == Status::retry || status == Status::unavailable; }

struct RotError {
  Status status = Status::failed;
  int native_code = 0;  // errno or TSS2_RC; 0 when none applies
  std::string message;

  Error to_error() const { return Error{message, native_code}; }
};

// A value or a RotError.
template <typename T>
using RotResult = Result<T, RotError>;

struct Bank {
  HashAlgo algo = HashAlgo::sha256;
  size_t digest_size = 0;
  uint16_t tpm_alg_id = 0;  // 0 when the backend is not a TPM
};

// Properties of one register, for backends that name their registers.
struct RegisterInfo {
  std::string name;   // "RTMR2", "MRTD", "REM0"
  std::string alias;  // its name in another numbering ("CC MR 3"), or empty
  bool read_only = false;
  std::string read_only_reason;
};

// Properties an open backend reports: name, registers and banks.
struct Description {
  std::string name;           // plugin name: "tpm2", "tdx", ...
  std::string register_kind;  // "PCR", "RTMR", "REM"
  uint32_t register_count = 0;
  uint32_t default_register = 0;
  std::vector<Bank> banks;  // every bank an extend covers, in the backend's order
  bool read_only = false;
  std::string read_only_reason;
  // The registers are the ones kernel IMA extends on this system.
  bool kernel_shared = false;
  // One entry per register when the plugin names its registers, else empty.
  std::vector<RegisterInfo> registers;

  std::vector<HashAlgo> bank_algos() const;
  bool has_bank(HashAlgo algo) const;
  // The register's name ("RTMR2") when the plugin gives one, else
  // "<register_kind> <index>" ("PCR 10").
  std::string register_name(uint32_t index) const;
  // The register's own properties; nullptr when the plugin names no
  // registers or `index` is out of range.
  const RegisterInfo* register_info(uint32_t index) const;
};

// Registers of one bank as read from the device. An unallocated bank has
// allocated == false and no values; its registers are never reported as
// zeros.
struct BankRead {
  HashAlgo bank = HashAlgo::sha256;
  bool allocated = true;
  std::vector<uint32_t> registers;
  std::vector<Digest> values;  // values[i] belongs to registers[i]
};

struct BootAggregate {
  HashAlgo bank = HashAlgo::sha256;
  Digest digest;
};

// The dlopen handle of a plugin file, shared by every backend opened from it.
class PluginLibrary;

// One open backend. Not thread-safe: one thread at a time may call it.
class RotBackend {
 public:
  // Loads imarot-rot-<name>.so from `plugin_dir` and opens it with
  // `config_json`, the backend's JSON config section ("{}" when empty). The
  // error names the plugin file and states what is wrong: an unknown name (with
  // the plugins that are available), a missing directory, a library that does
  // not load, a missing entry symbol, an ABI version other than this
  // library's, JSON that does not parse or is not an object, or the plugin's
  // own init failure.
  static RotResult<std::unique_ptr<RotBackend>> load(std::string_view name, std::string_view config_json,
                                                     const std::string& plugin_dir);

  // Loads the plugin and checks `config_json` as load() would, without
  // opening the backend's device. Returns false when the plugin cannot check
  // a config without opening its device (it has no check_config), true when
  // the config was checked and is valid.
  static RotResult<bool> check_config(std::string_view name, std::string_view config_json,
                                      const std::string& plugin_dir);

  RotBackend(const RotBackend&) = delete;
  RotBackend& operator=(const RotBackend&) = delete;
  ~RotBackend();

  const Description& description() const { return description_; }
  const std::string& plugin_path() const;

  // Checks that `reg` exists and can be extended, before anything runs.
  RotResult<void> check_register(uint32_t reg);

  // Extends `reg` with the entry's extend digest in every bank (the template
  // digest, or 0xFF bytes for a violation), in one plugin call.
  RotResult<void> extend(uint32_t reg, const Entry& entry);
  // Extends `reg` with digests[i] in bank i of description().banks.
  RotResult<void> extend_digests(uint32_t reg, std::span<const Digest> digests);

  // Reads one register; nullopt when the bank is not allocated.
  RotResult<std::optional<Digest>> read(uint32_t reg, HashAlgo bank);
  // Reads several registers of one bank.
  RotResult<BankRead> read_bank(HashAlgo bank, std::span<const uint32_t> regs);

  // The boot_aggregate kernel IMA would record with `ima_hash`; the backend
  // chooses the bank as the kernel does.
  RotResult<BootAggregate> boot_aggregate(HashAlgo ima_hash);

 private:
  RotBackend(std::shared_ptr<PluginLibrary> library, const imarot_rot_ops* ops, void* handle);

  std::shared_ptr<PluginLibrary> library_;
  const imarot_rot_ops* ops_;
  void* handle_;
  Description description_;
};

// "imarot-rot-<name>.so".
std::string plugin_file_name(std::string_view name);

// The plugin directory when no explicit one is given: $IMAROTD_PLUGIN_DIR if
// set and not empty, else the directory chosen at build time.
std::string default_plugin_dir();

// Names of the plugins in `dir`, sorted; empty when the directory cannot be
// read.
std::vector<std::string> list_plugins(const std::string& dir);

// The kernel IMA measurement list found under a securityfs mount.
struct KernelImaList {
  std::string path;
  size_t entries = 0;
  std::vector<uint32_t> registers;  // PCRs its entries extend, ascending
};

// Looks for kernel IMA under `securityfs_root` (normally /sys/kernel/security),
// in ima/ and integrity/ima/. nullopt when kernel IMA is not there.
RotResult<std::optional<KernelImaList>> find_kernel_ima(const std::string& securityfs_root);

// Rejects extending `reg` of a backend whose registers kernel IMA shares
// when the kernel's measurement list is not empty and extends that register.
// The error explains the conflict and how to choose another register.
RotResult<void> check_kernel_ima_conflict(const std::string& securityfs_root, std::string_view backend_id,
                                          const Description& description, uint32_t reg);

}  // namespace imarot::rot
