#include "rot_test_util.h"

#include <charconv>
#include <cstdlib>
#include <sstream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

namespace imarot::test {
namespace {

std::string_view trim(std::string_view text) {
  while (!text.empty() && (text.front() == ' ' || text.front() == '\t')) text.remove_prefix(1);
  while (!text.empty() && (text.back() == ' ' || text.back() == '\t' || text.back() == '\r')) text.remove_suffix(1);
  return text;
}

Digest file_digest(size_t number) {
  auto digest = hash_bytes(HashAlgo::sha256, ByteView(reinterpret_cast<const uint8_t*>(&number), sizeof number));
  return *digest;
}

}  // namespace

std::vector<Entry> make_entries(uint32_t pcr, size_t count, size_t first) {
  const TemplateDescriptor& ima_ng = *find_builtin_template("ima-ng");
  const TemplateDescriptor& ima_sig = *find_builtin_template("ima-sig");
  std::vector<Entry> entries;
  for (size_t n = first; n < first + count; ++n) {
    TemplateInput input;
    input.digest_algo = HashAlgo::sha256;
    input.digest = file_digest(n);
    input.name = fmt::format("/usr/lib/imarot-test/file {}.so", n);
    const TemplateDescriptor* tmpl = &ima_ng;
    if (n % 7 == 3) {
      // A well-formed signature header (type 3, version 2, sha256, key id,
      // big-endian length) over 16 bytes of signature.
      tmpl = &ima_sig;
      input.ima_xattr = {0x03, 0x02, 0x04, 0xde, 0xad, 0xbe, 0xef, 0x00, 0x10};
      for (uint8_t i = 0; i < 16; ++i) input.ima_xattr.push_back(static_cast<uint8_t>(n + i));
    }
    if (n % 5 == 4) {
      input.violation = true;
      input.digest = Digest::zeros(32);
    }
    auto entry = make_entry(pcr, *tmpl, input);
    if (!entry) throw std::runtime_error(entry.error().message);
    entries.push_back(std::move(*entry));
  }
  return entries;
}

Entry boot_aggregate_entry(uint32_t pcr, const rot::BootAggregate& aggregate) {
  TemplateInput input;
  input.digest_algo = aggregate.bank;
  input.digest = aggregate.digest;
  input.name = "boot_aggregate";
  auto entry = make_entry(pcr, *find_builtin_template("ima-ng"), input);
  if (!entry) throw std::runtime_error(entry.error().message);
  return std::move(*entry);
}

void SuiteSwtpm::start(SwtpmOptions options) {
  // tpm2-tss prints a warning to stderr for every failed connection, which
  // the outage tests cause on purpose.
  ::setenv("TSS2_LOG", "all+none", 0);
  auto found = SwtpmTools::find();
  if (!found) {
    error = found.error().message;
    return;
  }
  tools = *found;
  dir = std::make_unique<TempDir>();
  auto started = Swtpm::start(tools, dir->path(), std::move(options));
  if (!started) {
    error = started.error().message;
    return;
  }
  swtpm = std::move(*started);
}

void SuiteSwtpm::stop() {
  swtpm.reset();
  dir.reset();
}

std::string tpm2_config(const Swtpm& swtpm) { return nlohmann::json{{"tcti", swtpm.tcti()}}.dump(); }

Result<PcrDump> parse_pcrread(const std::string& text) {
  PcrDump dump;
  std::optional<HashAlgo> bank;
  bool bank_has_values = false;
  std::istringstream lines(text);
  std::string raw;
  size_t line_number = 0;
  auto close_bank = [&] {
    if (bank && !bank_has_values) dump.empty_banks.insert(*bank);
  };
  while (std::getline(lines, raw)) {
    ++line_number;
    std::string_view line = trim(raw);
    if (line.empty()) continue;
    size_t colon = line.find(':');
    if (colon == std::string_view::npos) return Error{fmt::format("pcrread line {}: no ':' in '{}'", line_number, line)};
    std::string_view key = trim(line.substr(0, colon));
    std::string_view value = trim(line.substr(colon + 1));

    uint32_t index = 0;
    auto [end, ec] = std::from_chars(key.data(), key.data() + key.size(), index);
    if (ec != std::errc() || end != key.data() + key.size()) {
      close_bank();
      bank = hash_algo_from_name(key);
      if (!bank && key == "sm3_256") bank = HashAlgo::sm3;
      if (!bank) return Error{fmt::format("pcrread line {}: unknown bank '{}'", line_number, key)};
      dump.banks.push_back(*bank);
      bank_has_values = false;
      continue;
    }
    if (!bank) return Error{fmt::format("pcrread line {}: a value before any bank", line_number)};
    if (value.starts_with("0x") || value.starts_with("0X")) value.remove_prefix(2);
    auto bytes = from_hex(value);
    if (!bytes || bytes->size() != digest_size(*bank)) {
      return Error{fmt::format("pcrread line {}: '{}' is not a {} value", line_number, value, hash_name(*bank))};
    }
    dump.values[RegisterId{index, *bank}] = Digest(*bytes);
    bank_has_values = true;
  }
  close_bank();
  return dump;
}

Result<PcrDump> pcrread(const SwtpmTools& tools, const std::string& tcti, const std::string& selection) {
  CommandResult result = run_command({tools.tpm2_pcrread, "-T", tcti, selection}, std::chrono::seconds(30));
  if (result.exit_code != 0) {
    return Error{fmt::format("tpm2_pcrread -T {} {} failed (exit {}): {}", tcti, selection, result.exit_code,
                             result.err)};
  }
  return parse_pcrread(result.out);
}

Result<void> pcrextend(const SwtpmTools& tools, const std::string& tcti, uint32_t pcr,
                       const std::vector<std::pair<HashAlgo, Digest>>& digests) {
  std::vector<std::string> parts;
  for (const auto& [bank, digest] : digests) parts.push_back(fmt::format("{}={}", hash_name(bank), digest.hex()));
  std::string argument = fmt::format("{}:{}", pcr, fmt::join(parts, ","));
  CommandResult result = run_command({tools.tpm2_pcrextend, "-T", tcti, argument}, std::chrono::seconds(30));
  if (result.exit_code != 0) {
    return Error{fmt::format("tpm2_pcrextend {} failed (exit {}): {}", argument, result.exit_code, result.err)};
  }
  return Ok{};
}

std::string pcr_selection(const std::vector<HashAlgo>& banks, const std::vector<uint32_t>& pcrs) {
  std::vector<std::string> parts;
  for (HashAlgo bank : banks) parts.push_back(fmt::format("{}:{}", hash_name(bank), fmt::join(pcrs, ",")));
  return fmt::format("{}", fmt::join(parts, "+"));
}

}  // namespace imarot::test
