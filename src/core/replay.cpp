#include "imarot/replay.h"

#include <algorithm>
#include <charconv>

#include <fmt/format.h>
#include <fmt/ranges.h>

namespace imarot {

Result<Digest> extend_value(HashAlgo bank, const Digest& old_value, const Digest& digest) {
  auto hasher = Hasher::create(bank);
  if (!hasher) return hasher.error();
  hasher->update(old_value.view());
  hasher->update(digest.view());
  return hasher->finish();
}

Result<Digest> bank_extend_digest(const Entry& entry, HashAlgo bank, BankDigest mode) {
  if (mode == BankDigest::own || entry.is_violation()) return extend_digest(entry, bank);
  Digest padded = entry.stored_digest();
  size_t size = digest_size(bank);
  if (size < padded.size()) return Error{fmt::format("bank {} is shorter than a SHA-1 digest", hash_name(bank))};
  padded.resize(size);
  std::fill(padded.data() + 20, padded.data() + size, uint8_t{0});
  return padded;
}

Replay::Replay(std::vector<HashAlgo> banks) : banks_(std::move(banks)) {}

Result<void> Replay::extend(const Entry& entry) {
  for (HashAlgo bank : banks_) {
    auto digest = extend_digest(entry, bank);
    if (!digest) return digest.error();
    auto [it, inserted] = values_.try_emplace(RegisterId{entry.pcr, bank}, Digest::zeros(digest_size(bank)));
    auto next = extend_value(bank, it->second, *digest);
    if (!next) return next.error();
    it->second = *next;
  }
  return Ok{};
}

Result<RegisterValues> replay_list(const std::vector<Entry>& entries, std::span<const HashAlgo> banks) {
  Replay replay(std::vector<HashAlgo>(banks.begin(), banks.end()));
  for (const Entry& entry : entries) {
    auto extended = replay.extend(entry);
    if (!extended) return extended.error();
  }
  return replay.values();
}

std::optional<HashAlgo> boot_aggregate_bank(HashAlgo ima_hash, std::span<const HashAlgo> banks) {
  auto has = [&](HashAlgo algo) { return std::find(banks.begin(), banks.end(), algo) != banks.end(); };
  for (HashAlgo candidate : {ima_hash, HashAlgo::sha256, HashAlgo::sha1}) {
    if (has(candidate)) return candidate;
  }
  return std::nullopt;
}

size_t boot_aggregate_pcr_count(HashAlgo bank) { return bank == HashAlgo::sha1 ? 8 : 10; }

Result<Digest> compute_boot_aggregate(HashAlgo bank, std::span<const Digest> pcrs) {
  const size_t count = boot_aggregate_pcr_count(bank);
  if (pcrs.size() < count) {
    return Error{fmt::format("boot_aggregate in the {} bank needs PCR 0-{}, but only {} values were given",
                             hash_name(bank), count - 1, pcrs.size())};
  }
  auto hasher = Hasher::create(bank);
  if (!hasher) return hasher.error();
  for (size_t i = 0; i < count; ++i) {
    if (pcrs[i].size() != digest_size(bank)) {
      return Error{fmt::format("PCR {} of the {} bank is {} bytes; expected {}", i, hash_name(bank), pcrs[i].size(),
                               digest_size(bank))};
    }
    hasher->update(pcrs[i].view());
  }
  return hasher->finish();
}

namespace {

std::string_view trim(std::string_view text) {
  while (!text.empty() && (text.front() == ' ' || text.front() == '\t' || text.front() == '\r')) text.remove_prefix(1);
  while (!text.empty() && (text.back() == ' ' || text.back() == '\t' || text.back() == '\r')) text.remove_suffix(1);
  return text;
}

std::optional<uint32_t> parse_index(std::string_view text) {
  uint32_t value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size() || text.empty()) return std::nullopt;
  return value;
}

}  // namespace

Result<RegisterValues> parse_register_values(std::string_view text, std::string_view source,
                                             std::optional<HashAlgo> default_bank) {
  RegisterValues values;
  size_t line_number = 0;
  while (!text.empty()) {
    size_t end = text.find('\n');
    std::string_view line = trim(text.substr(0, end));
    text = end == std::string_view::npos ? std::string_view() : text.substr(end + 1);
    ++line_number;
    if (line.empty() || line.front() == '#') continue;

    auto fail = [&](const std::string& what) {
      return Error{fmt::format("{}:{}: {}: '{}'; expected 'PCR-NN: HEX' or 'BANK:INDEX:HEX'", source, line_number,
                               what, line)};
    };

    RegisterId id;
    std::string hex;
    if (line.substr(0, 4) == "PCR-") {
      size_t colon = line.find(':');
      if (colon == std::string_view::npos) return fail("missing ':' after the PCR number");
      auto index = parse_index(trim(line.substr(4, colon - 4)));
      if (!index) return fail("invalid PCR number");
      if (!default_bank) {
        return Error{fmt::format("{}:{}: 'PCR-NN' lines do not name their bank; give it with the file "
                                 "(ALG,FILE) or --bank",
                                 source, line_number)};
      }
      id = RegisterId{*index, *default_bank};
      // evmctl tolerates spaces inside the hex digits.
      for (char c : line.substr(colon + 1)) {
        if (c != ' ' && c != '\t') hex += c;
      }
    } else {
      size_t first = line.find(':');
      size_t second = first == std::string_view::npos ? first : line.find(':', first + 1);
      if (second == std::string_view::npos) return fail("not a register value line");
      std::string bank_name(trim(line.substr(0, first)));
      std::transform(bank_name.begin(), bank_name.end(), bank_name.begin(),
                     [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
      auto bank = hash_algo_from_name(bank_name);
      if (!bank) return fail(fmt::format("unknown bank '{}'", bank_name));
      auto index = parse_index(trim(line.substr(first + 1, second - first - 1)));
      if (!index) return fail("invalid register index");
      id = RegisterId{*index, *bank};
      hex = std::string(trim(line.substr(second + 1)));
    }

    auto bytes = from_hex(hex);
    if (!bytes) return fail("the value is not hexadecimal");
    if (bytes->size() != digest_size(id.bank)) {
      return fail(fmt::format("the value is {} bytes, but {} values are {} bytes", bytes->size(), hash_name(id.bank),
                              digest_size(id.bank)));
    }
    if (values.count(id) != 0) {
      return fail(fmt::format("register {} of bank {} is given twice", id.index, hash_name(id.bank)));
    }
    values.emplace(id, Digest(*bytes));
  }
  return values;
}

std::string format_evmctl_pcrs(const RegisterValues& values, HashAlgo bank) {
  std::string out;
  for (uint32_t index = 0; index < 24; ++index) {
    auto it = values.find(RegisterId{index, bank});
    Digest value = it != values.end() ? it->second : Digest::zeros(digest_size(bank));
    out += fmt::format("PCR-{:02d}: {}\n", index, value.hex());
  }
  return out;
}

namespace {

// security.ima signature header (struct signature_v2_hdr): type, version,
// hash algorithm, 4-byte key id, big-endian u16 signature size, signature.
std::optional<std::string> signature_problem(ByteView sig) {
  constexpr size_t kHeader = 9;
  if (sig.size() < kHeader) return fmt::format("{} bytes is shorter than a signature header", sig.size());
  uint8_t type = sig[0];
  if (type != 0x03 && type != 0x06) return fmt::format("type byte 0x{:02x} is not a signature type", type);
  size_t size = static_cast<size_t>(sig[7]) << 8 | sig[8];
  if (size != sig.size() - kHeader) {
    return fmt::format("header gives a {}-byte signature, but {} bytes follow it", size, sig.size() - kHeader);
  }
  return std::nullopt;
}

struct RegisterReplay {
  Digest value;
  // Position in `members` after which the value equals the reference; -1
  // means before the first entry.
  std::optional<ptrdiff_t> last_match;
};

Result<RegisterReplay> replay_register(const std::vector<Entry>& entries, const std::vector<size_t>& members,
                                       const Digest& reference, HashAlgo bank, BankDigest mode) {
  RegisterReplay replay{Digest::zeros(digest_size(bank)), std::nullopt};
  if (replay.value == reference) replay.last_match = -1;
  for (size_t k = 0; k < members.size(); ++k) {
    auto digest = bank_extend_digest(entries[members[k]], bank, mode);
    if (!digest) return Error{fmt::format("entry {}: {}", members[k] + 1, digest.error().message)};
    auto next = extend_value(bank, replay.value, *digest);
    if (!next) return Error{fmt::format("entry {}: {}", members[k] + 1, next.error().message)};
    replay.value = *next;
    if (replay.value == reference) replay.last_match = static_cast<ptrdiff_t>(k);
  }
  return replay;
}

// Returns "; register 10, ..." when the reference gives a non-zero value for
// the kernel's default IMA register (10, the default of the kernel's
// CONFIG_IMA_MEASURE_PCR_IDX) in one of `banks` and no entry of the list
// extends it, else an empty string. Verification compares only the
// registers the list extends, so such a register was extended by entries
// the list does not contain, or the list was recorded in another register.
std::string unaccounted_default_register(const RegisterValues& reference, const std::set<HashAlgo>& banks,
                                         const std::map<uint32_t, std::vector<size_t>>& entries_by_register) {
  constexpr uint32_t kImaDefaultRegister = 10;
  if (entries_by_register.count(kImaDefaultRegister) != 0) return {};
  std::vector<std::string> nonzero;
  for (HashAlgo bank : banks) {
    auto value = reference.find(RegisterId{kImaDefaultRegister, bank});
    if (value != reference.end() && !value->second.is_zero()) nonzero.emplace_back(hash_name(bank));
  }
  if (nonzero.empty()) return {};
  return fmt::format("; register {}, the kernel's default IMA register, is not zero in {} {} of the reference, "
                     "but no entry of the list extends it, so it was not compared: its entries are missing from "
                     "the list, or the list was recorded in another register",
                     kImaDefaultRegister, nonzero.size() == 1 ? "bank" : "banks", fmt::join(nonzero, ", "));
}

}  // namespace

VerifyReport verify_list(const ParsedList& list, const RegisterValues& reference, const VerifyOptions& options) {
  VerifyReport report;
  report.entries = list.entries.size();
  auto fail = [&](std::optional<size_t> entry, std::string message) {
    report.failures.push_back(VerifyFinding{entry, std::move(message)});
  };
  auto warn = [&](std::optional<size_t> entry, std::string message) {
    report.warnings.push_back(VerifyFinding{entry, std::move(message)});
  };

  // 1. Each entry on its own: template digest, violation form, signature.
  for (size_t i = 0; i < list.entries.size(); ++i) {
    const Entry& entry = list.entries[i];
    Digest listed = list.column_algo == HashAlgo::sha1 ? entry.stored_digest() : list.column_digests[i];
    auto fields = decode_fields(entry);
    if (!fields) {
      fail(i, fmt::format("entry {}: {}", i + 1, fields.error().message));
      continue;
    }
    if (listed.is_zero()) {
      ++report.violations;
      bool zero_file_digest = std::all_of(fields->file_digest.begin(), fields->file_digest.end(),
                                          [](uint8_t b) { return b == 0; });
      if (!zero_file_digest) {
        fail(i, fmt::format("entry {} ('{}'): zero template digest marks a violation, but its file digest is not "
                            "zero",
                            i + 1, fields->name));
      }
      continue;
    }
    auto computed = hash_bytes(list.column_algo, template_hash_input(entry));
    if (!computed) {
      fail(i, fmt::format("entry {}: {}", i + 1, computed.error().message));
      continue;
    }
    if (!(*computed == listed)) {
      fail(i, fmt::format("entry {} ('{}'): template digest {} does not match the {} of its template data, {}", i + 1,
                          fields->name, listed.hex(), hash_name(list.column_algo), computed->hex()));
    }
    if (!fields->signature.empty()) {
      if (auto problem = signature_problem(fields->signature)) {
        warn(i, fmt::format("entry {} ('{}'): signature does not parse ({}); its bytes are replayed as recorded",
                            i + 1, fields->name, *problem));
      }
    }
  }

  // 2. Registers: every register the list extends, in every bank given.
  std::set<HashAlgo> banks;
  for (const auto& [id, value] : reference) {
    if (!options.banks || options.banks->count(id.bank) != 0) banks.insert(id.bank);
  }
  if (banks.empty()) fail(std::nullopt, "the reference values contain no register of the requested banks");

  // An empty list verifies nothing, so it must never pass: a list from the
  // kernel or from imarotd starts with the boot_aggregate entry.
  if (list.entries.empty()) {
    fail(std::nullopt, "the list has no entries, so nothing was verified: a list from the kernel or imarotd "
                       "starts with boot_aggregate, so this one was emptied or is not a measurement list" +
                           unaccounted_default_register(reference, banks, {}));
    return report;
  }

  std::map<uint32_t, std::vector<size_t>> entries_by_register;
  for (size_t i = 0; i < list.entries.size(); ++i) {
    uint32_t index = list.entries[i].pcr;
    if (!options.pcr || *options.pcr == index) entries_by_register[index].push_back(i);
  }
  if (options.pcr && entries_by_register.empty()) {
    fail(std::nullopt, fmt::format("no entry of the list extends register {}", *options.pcr));
  }

  for (HashAlgo bank : banks) {
    if (!hash_supported(bank)) {
      fail(std::nullopt, fmt::format("bank {} cannot be replayed: OpenSSL does not provide {}", hash_name(bank),
                                     hash_name(bank)));
      continue;
    }
    for (const auto& [index, members] : entries_by_register) {
      RegisterId id{index, bank};
      auto ref = reference.find(id);
      if (ref == reference.end()) {
        fail(members.front(), fmt::format("entry {} extends register {}, which has no reference value in bank {}",
                                          members.front() + 1, index, hash_name(bank)));
        continue;
      }
      RegisterCheck check{id, ref->second, Digest::zeros(digest_size(bank)), members.size(), false};
      auto replayed = replay_register(list.entries, members, check.reference, bank, BankDigest::own);
      if (!replayed) {
        fail(std::nullopt, replayed.error().message);
        continue;
      }
      const auto last = static_cast<ptrdiff_t>(members.size()) - 1;
      if (!(replayed->last_match && *replayed->last_match == last)) {
        auto padded = replay_register(list.entries, members, check.reference, bank, BankDigest::padded_sha1);
        if (padded && padded->last_match && *padded->last_match == last) {
          replayed = padded;
          check.mode = BankDigest::padded_sha1;
          warn(std::nullopt, fmt::format("register {} of bank {} matches only with zero-padded SHA-1 template "
                                         "digests: the kernel that extended it could not compute {}",
                                         index, hash_name(bank), hash_name(bank)));
        }
      }
      check.replayed = replayed->value;
      std::optional<ptrdiff_t> last_match = replayed->last_match;

      check.matched = last_match.has_value() && *last_match == last;
      report.registers.push_back(check);
      if (check.matched) continue;

      if (last_match) {
        size_t next_entry = members[static_cast<size_t>(*last_match + 1)];
        std::string covered = *last_match < 0 ? "before its first entry"
                                              : fmt::format("after entry {}", members[static_cast<size_t>(*last_match)] + 1);
        std::string message = fmt::format("register {} of bank {} matches the list {}; entries from {} on are not in it",
                                          index, hash_name(bank), covered, next_entry + 1);
        if (options.allow_trailing) {
          warn(next_entry, std::move(message));
        } else {
          fail(next_entry, std::move(message));
        }
      } else {
        // With one entry the mismatch comes from that entry or from a wrong
        // reference. With more, no check can single out the wrong entry.
        std::optional<size_t> blamed;
        std::string extended_by = fmt::format("its {} entries", members.size());
        if (members.size() == 1) {
          blamed = members.front();
          extended_by = fmt::format("its only entry, entry {},", members.front() + 1);
        }
        fail(blamed, fmt::format("register {} of bank {}: replaying {} gives {}, but the reference is {}; no "
                                 "prefix of the list matches",
                                 index, hash_name(bank), extended_by, check.replayed.hex(), check.reference.hex()));
      }
    }
  }

  if (!options.pcr) {
    std::string unaccounted = unaccounted_default_register(reference, banks, entries_by_register);
    if (!unaccounted.empty()) warn(std::nullopt, unaccounted.substr(2));
  }
  // Each register above is compared or has a failure. This guard keeps a
  // check that compared nothing from passing if that ever changes.
  if (report.registers.empty() && report.failures.empty()) {
    fail(std::nullopt, "no register of the list was compared with the reference, so nothing was verified");
  }

  // 3. boot_aggregate against PCR 0-9 (0-7 for sha1) of the bank it names.
  if (!list.entries.empty()) {
    auto fields = decode_fields(list.entries.front());
    if (fields && fields->name == "boot_aggregate" && fields->digest_algo && !list.entries.front().is_violation()) {
      HashAlgo bank = *fields->digest_algo;
      std::vector<Digest> pcrs;
      for (uint32_t i = 0; i < boot_aggregate_pcr_count(bank); ++i) {
        auto it = reference.find(RegisterId{i, bank});
        if (it == reference.end()) break;
        pcrs.push_back(it->second);
      }
      if (pcrs.size() == boot_aggregate_pcr_count(bank)) {
        auto expected = compute_boot_aggregate(bank, pcrs);
        if (!expected) {
          fail(0, fmt::format("entry 1 (boot_aggregate): {}", expected.error().message));
        } else if (!(Digest(ByteView(fields->file_digest)) == *expected)) {
          fail(0, fmt::format("entry 1 (boot_aggregate): digest {} does not match {} computed from PCR 0-{} of bank "
                              "{}",
                              to_hex(fields->file_digest), expected->hex(), pcrs.size() - 1, hash_name(bank)));
        }
      } else {
        warn(0, fmt::format("boot_aggregate not checked: the reference lacks PCR 0-{} of bank {}",
                            boot_aggregate_pcr_count(bank) - 1, hash_name(bank)));
      }
    }
  }

  for (const auto& finding : report.failures) {
    if (finding.entry_index &&
        (!report.first_failing_entry || *finding.entry_index < *report.first_failing_entry)) {
      report.first_failing_entry = finding.entry_index;
    }
  }
  return report;
}

}  // namespace imarot
