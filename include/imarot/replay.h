// Register replay, boot_aggregate, reference register values, and list
// verification against them.
#pragma once

#include <compare>
#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "imarot/hash.h"
#include "imarot/measurement_list.h"
#include "imarot/result.h"

namespace imarot {

// A register of one bank: TPM PCR 10 in the sha256 bank, or RTMR 2 (whose
// only bank is sha384).
struct RegisterId {
  uint32_t index = 0;
  HashAlgo bank = HashAlgo::sha256;
  auto operator<=>(const RegisterId&) const = default;
};
using RegisterValues = std::map<RegisterId, Digest>;

// new = H_bank(old || digest), the extend operation of TPM PCRs and RTMRs.
Result<Digest> extend_value(HashAlgo bank, const Digest& old_value, const Digest& digest);

// Source of a bank's extend value for an entry.
enum class BankDigest {
  // H_bank(template data): what kernels since 5.1 extend, and what imarotd
  // extends.
  own,
  // The SHA-1 template digest padded with zeros to the bank size. Kernels
  // before 5.1 extended it into every bank. Later kernels extend it into a
  // bank whose algorithm their crypto could not allocate at boot, and their
  // console then shows "ima: Can not allocate sha384".
  padded_sha1,
};

Result<Digest> bank_extend_digest(const Entry& entry, HashAlgo bank, BankDigest mode);

// Replays entries into registers that start at zero, one set per bank.
class Replay {
 public:
  explicit Replay(std::vector<HashAlgo> banks);
  Result<void> extend(const Entry& entry);
  const RegisterValues& values() const { return values_; }
  const std::vector<HashAlgo>& banks() const { return banks_; }

 private:
  std::vector<HashAlgo> banks_;
  RegisterValues values_;
};

Result<RegisterValues> replay_list(const std::vector<Entry>& entries, std::span<const HashAlgo> banks);

// The bank kernel IMA (5.8 and later) takes boot_aggregate from: the bank of
// `ima_hash` if the TPM has it, else sha256, else sha1. nullopt when none of
// them is allocated, in which case boot_aggregate is all zeros.
std::optional<HashAlgo> boot_aggregate_bank(HashAlgo ima_hash, std::span<const HashAlgo> banks);

// Number of PCRs boot_aggregate covers in `bank`: 8 (PCR 0-7) for sha1, 10
// (PCR 0-9) for every other bank.
size_t boot_aggregate_pcr_count(HashAlgo bank);

// H_bank(PCR0 || PCR1 || ...), over boot_aggregate_pcr_count(bank) values.
Result<Digest> compute_boot_aggregate(HashAlgo bank, std::span<const Digest> pcrs);

// Parses reference register values. Two line forms are accepted and may be
// mixed: evmctl's "PCR-NN: HEX", whose bank is `default_bank`, and
// "BANK:INDEX:HEX" as in "sha256:10:DAD1...". Blank lines and lines starting
// with '#' are skipped. Errors name `source` and the line.
Result<RegisterValues> parse_register_values(std::string_view text, std::string_view source,
                                             std::optional<HashAlgo> default_bank);

// Writes the "PCR-NN: HEX" lines evmctl's --pcrs reads, PCR 00 to 23 in
// order; PCRs missing from `values` are written as zeros.
std::string format_evmctl_pcrs(const RegisterValues& values, HashAlgo bank);

struct VerifyOptions {
  std::optional<std::set<HashAlgo>> banks;  // restrict to these banks
  std::optional<uint32_t> pcr;               // restrict to this register index
  // Accept a register that matches after an earlier entry, as when a
  // register was read while entries were still being extended. Entries past
  // the match are reported, never counted as verified.
  bool allow_trailing = false;
};

struct VerifyFinding {
  std::optional<size_t> entry_index;  // zero-based, when one entry is to blame
  std::string message;
};

struct RegisterCheck {
  RegisterId id;
  Digest reference;
  Digest replayed;
  size_t entries = 0;
  bool matched = false;
  BankDigest mode = BankDigest::own;
};

struct VerifyReport {
  bool ok() const { return failures.empty(); }
  std::vector<VerifyFinding> failures;
  std::vector<VerifyFinding> warnings;
  std::vector<RegisterCheck> registers;
  size_t entries = 0;
  size_t violations = 0;
  std::optional<size_t> first_failing_entry;
};

// Verifies a parsed list against reference values: every template digest
// against its template data, every register the list extends against the
// reference of each bank given, and boot_aggregate against PCR 0-9 when the
// reference holds them.
VerifyReport verify_list(const ParsedList& list, const RegisterValues& reference, const VerifyOptions& options);

}  // namespace imarot
