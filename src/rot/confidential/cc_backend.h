// The confidential-computing backends behind the plugin ABI: registers read
// and extended through tsm-mr sysfs files, or only read from TDREPORTs or
// attestation tokens. Register numbering is the same whatever the source:
// TDX has RTMR0-3 as registers 0-3 and MRTD as register 4; Arm CCA and
// VirtCCA have REM0-3 as registers 0-3 and RIM as register 4. The numbers
// that kernel IMA writes into a TDX list (2 for RTMR2) thus stay valid.
#pragma once

#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "cc_errors.h"
#include "cca_token.h"
#include "tdreport.h"
#include "token_source.h"

namespace imarot::cc {

enum class BootAggregateRule {
  none,  // no rule is known for the registers
  // SHA-384 over MRTD, RTMR0, RTMR1 and RTMR2, leaving out each register
  // that is all zeros, as Intel's IMA patches for TDX compute it.
  tdx,
  // The RIM itself, as openEuler's IMA code for VirtCCA records it.
  rim,
};

struct RegisterSpec {
  std::string name;   // "RTMR2"
  std::string alias;  // "CC MR 3"
  bool read_only = false;
  std::string read_only_reason;
};

struct BackendLayout {
  std::string plugin;         // plugin name, as the description reports it
  std::string register_kind;  // "RTMR", "REM", "MR"
  HashAlgo algo = HashAlgo::sha384;
  std::vector<RegisterSpec> registers;
  uint32_t default_register = 0;
  BootAggregateRule boot_rule = BootAggregateRule::none;
  bool read_only = false;
  std::string read_only_reason;
};

inline constexpr uint32_t kTdxDefaultRegister = 2;  // RTMR2, where Intel's IMA patches extend
inline constexpr uint32_t kTdxMrtdRegister = 4;
inline constexpr uint32_t kRealmDefaultRegister = 0;  // REM0, where openEuler's IMA extends
inline constexpr uint32_t kRealmRimRegister = 4;

BackendLayout tdx_layout(std::string plugin);
BackendLayout realm_layout(std::string plugin, HashAlgo algo);

// One open backend. Not thread-safe, as the plugin ABI requires.
class Backend {
 public:
  virtual ~Backend() = default;
  Backend(const Backend&) = delete;
  Backend& operator=(const Backend&) = delete;

  const BackendLayout& layout() const { return layout_; }

  // Rejects a register that does not exist or cannot be extended, and any
  // register of a read-only backend, naming the reason.
  RotResult<void> check_register(uint32_t reg) const;
  RotResult<std::vector<Digest>> read(std::span<const uint32_t> regs);
  // Extends `reg` with `input`, which must be one digest of the register's
  // algorithm. Nothing is written when a check fails.
  RotResult<void> extend(uint32_t reg, const Digest& input);
  RotResult<rot::BootAggregate> boot_aggregate();

 protected:
  explicit Backend(BackendLayout layout) : layout_(std::move(layout)) {}
  virtual RotResult<std::vector<Digest>> read_values(std::span<const uint32_t> regs) = 0;
  virtual RotResult<void> extend_value(uint32_t reg, const Digest& input) = 0;

  BackendLayout layout_;
};

enum class Preset { none, tdx, cca };

struct TsmMrOptions {
  std::string path;  // the measurements directory
  Preset preset = Preset::none;
  std::optional<HashAlgo> hash;        // the algorithm to use when files have several
  std::vector<std::string> registers;  // without a preset: register names in index order; empty takes all
  std::optional<std::string> default_register;  // without a preset: a register name
};

// A backend on a tsm-mr measurements directory. With a preset, the files of
// that platform must all be present; without one, every "<name>:<hash>" file
// of the chosen algorithm is a register. Registers whose files have no write
// bit are read-only.
RotResult<std::unique_ptr<Backend>> open_tsm_mr(std::string plugin, const TsmMrOptions& options);

// A read-only TDX backend that reads each value from a fresh TDREPORT.
RotResult<std::unique_ptr<Backend>> open_tdreport(std::string plugin, std::unique_ptr<IoctlDevice> device,
                                                  std::string read_only_reason);

// A read-only Arm CCA or VirtCCA backend that reads each value from a fresh
// attestation token. Opening requests one token to learn the realm hash
// algorithm.
RotResult<std::unique_ptr<Backend>> open_token(std::string plugin, std::unique_ptr<TokenSource> source,
                                               TokenFormat format, std::string read_only_reason);

}  // namespace imarot::cc
