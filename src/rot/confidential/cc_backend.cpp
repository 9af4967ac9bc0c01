#include "cc_backend.h"

#include <algorithm>
#include <cctype>
#include <set>

#include <fmt/format.h>

#include "tsm_mr.h"

namespace imarot::cc {
namespace {

constexpr std::string_view kMrtdReason = "MRTD is the TD's build-time measurement; no interface extends it";
constexpr std::string_view kRimReason = "RIM is the realm's initial measurement, fixed when the realm was activated";

// Orders "rtmr2" before "rtmr10": runs of digits compare by value.
bool natural_less(const std::string& a, const std::string& b) {
  size_t i = 0;
  size_t j = 0;
  while (i < a.size() && j < b.size()) {
    if (std::isdigit(static_cast<unsigned char>(a[i])) && std::isdigit(static_cast<unsigned char>(b[j]))) {
      size_t end_a = i;
      size_t end_b = j;
      while (end_a < a.size() && std::isdigit(static_cast<unsigned char>(a[end_a]))) ++end_a;
      while (end_b < b.size() && std::isdigit(static_cast<unsigned char>(b[end_b]))) ++end_b;
      std::string_view digits_a = std::string_view(a).substr(i, end_a - i);
      std::string_view digits_b = std::string_view(b).substr(j, end_b - j);
      while (digits_a.size() > 1 && digits_a.front() == '0') digits_a.remove_prefix(1);
      while (digits_b.size() > 1 && digits_b.front() == '0') digits_b.remove_prefix(1);
      if (digits_a.size() != digits_b.size()) return digits_a.size() < digits_b.size();
      if (digits_a != digits_b) return digits_a < digits_b;
      i = end_a;
      j = end_b;
      continue;
    }
    if (a[i] != b[j]) return a[i] < b[j];
    ++i;
    ++j;
  }
  return a.size() - i < b.size() - j;
}

std::string upper(std::string text) {
  for (char& c : text) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return text;
}

std::string file_list(const std::vector<MrFile>& files) {
  std::vector<std::string> names;
  for (const MrFile& file : files) names.push_back(file.path.substr(file.path.rfind('/') + 1));
  if (names.empty()) return "the directory is empty";
  return fmt::format("found {}", fmt::join(names, ", "));
}

class TsmMrBackend : public Backend {
 public:
  TsmMrBackend(BackendLayout layout, std::vector<MrFile> files) : Backend(std::move(layout)), files_(std::move(files)) {}

 protected:
  RotResult<std::vector<Digest>> read_values(std::span<const uint32_t> regs) override {
    std::vector<Digest> values;
    for (uint32_t reg : regs) {
      auto value = read_measurement(files_[reg], digest_size(layout_.algo));
      if (!value) return value.error();
      values.push_back(*value);
    }
    return values;
  }

  RotResult<void> extend_value(uint32_t reg, const Digest& input) override {
    return extend_measurement(files_[reg], input);
  }

 private:
  std::vector<MrFile> files_;  // files_[i] is the file of register i
};

class TdReportBackend : public Backend {
 public:
  TdReportBackend(BackendLayout layout, std::unique_ptr<IoctlDevice> device)
      : Backend(std::move(layout)), device_(std::move(device)) {}

 protected:
  RotResult<std::vector<Digest>> read_values(std::span<const uint32_t> regs) override {
    auto report = request_tdreport(*device_);
    if (!report) return report.error();
    std::vector<Digest> values;
    for (uint32_t reg : regs) values.push_back(reg == kTdxMrtdRegister ? report->mrtd : report->rtmr[reg]);
    return values;
  }

  RotResult<void> extend_value(uint32_t, const Digest&) override {
    return RotError{Status::read_only, 0, layout_.read_only_reason};
  }

 private:
  std::unique_ptr<IoctlDevice> device_;
};

// Requests a token with a fresh challenge and checks that the token carries
// that challenge.
RotResult<RealmMeasurements> request_measurements(TokenSource& source, TokenFormat format) {
  auto challenge = random_bytes(kRealmChallengeSize);
  if (!challenge) return challenge.error();
  auto token = source.request(*challenge);
  if (!token) return token.error();
  auto measurements = parse_cca_token(*token, format);
  if (!measurements) {
    return RotError{measurements.error().status, 0,
                    fmt::format("token from '{}': {}", source.where(), measurements.error().message)};
  }
  if (measurements->challenge != *challenge) {
    return failed_error(fmt::format("token from '{}' carries another challenge than the one requested; it is stale "
                                    "or belongs to another request",
                                    source.where()));
  }
  return measurements;
}

class TokenBackend : public Backend {
 public:
  TokenBackend(BackendLayout layout, std::unique_ptr<TokenSource> source, TokenFormat format)
      : Backend(std::move(layout)), source_(std::move(source)), format_(format) {}

 protected:
  RotResult<std::vector<Digest>> read_values(std::span<const uint32_t> regs) override {
    auto measurements = request_measurements(*source_, format_);
    if (!measurements) return measurements.error();
    if (measurements->algo != layout_.algo) {
      return failed_error(fmt::format("token from '{}' names hash algorithm {}, but earlier tokens named {}",
                                      source_->where(), measurements->algo_name, hash_name(layout_.algo)));
    }
    std::vector<Digest> values;
    for (uint32_t reg : regs) values.push_back(reg == kRealmRimRegister ? measurements->rim : measurements->rems[reg]);
    return values;
  }

  RotResult<void> extend_value(uint32_t, const Digest&) override {
    return RotError{Status::read_only, 0, layout_.read_only_reason};
  }

 private:
  std::unique_ptr<TokenSource> source_;
  TokenFormat format_;
};

// The file `name`:`algo` of a directory listing, or an error naming what the
// directory holds.
RotResult<MrFile> find_file(const std::vector<MrFile>& files, const std::string& dir, const std::string& name,
                            HashAlgo algo) {
  for (const MrFile& file : files) {
    if (file.name == name && file.algo == algo) {
      if (file.size != digest_size(algo)) {
        return invalid_error(fmt::format("'{}' is {} bytes; a {} register is {}", file.path, file.size,
                                         hash_name(algo), digest_size(algo)));
      }
      return file;
    }
  }
  return RotError{Status::unavailable, 0,
                  fmt::format("'{}' has no register file {}:{}; {}", dir, name, hash_name(algo), file_list(files))};
}

void mark_file_access(RegisterSpec& spec, const MrFile& file) {
  if (!file.writable && !spec.read_only) {
    spec.read_only = true;
    spec.read_only_reason = fmt::format("the kernel exposes '{}' without write permission", file.path);
  }
}

// The one algorithm of the hashed files named `name` (or of all hashed files
// when `name` is empty), unless `requested` picks one.
RotResult<HashAlgo> choose_algo(const std::vector<MrFile>& files, const std::string& dir, const std::string& name,
                                std::optional<HashAlgo> requested) {
  if (requested) return *requested;
  std::set<HashAlgo> found;
  for (const MrFile& file : files) {
    if (file.algo && (name.empty() || file.name == name)) found.insert(*file.algo);
  }
  std::string what = name.empty() ? "register files" : fmt::format("files of register {}", name);
  if (found.empty()) {
    return RotError{Status::unavailable, 0,
                    fmt::format("'{}' has no {} with a known hash algorithm; {}", dir, what, file_list(files))};
  }
  if (found.size() > 1) {
    std::vector<std::string_view> names;
    for (HashAlgo algo : found) names.push_back(hash_name(algo));
    return invalid_error(fmt::format("'{}' has {} in several algorithms ({}); set \"hash\" in the config to one of them",
                                     dir, what, fmt::join(names, ", ")));
  }
  return *found.begin();
}

RotResult<std::unique_ptr<Backend>> open_preset(std::string plugin, const TsmMrOptions& options,
                                                const std::vector<MrFile>& listing) {
  bool tdx = options.preset == Preset::tdx;
  HashAlgo algo = HashAlgo::sha384;
  if (tdx) {
    if (options.hash && *options.hash != HashAlgo::sha384) {
      return invalid_error(fmt::format("\"hash\": TDX registers are sha384, not {}", hash_name(*options.hash)));
    }
  } else {
    auto chosen = choose_algo(listing, options.path, "rem0", options.hash);
    if (!chosen) return chosen.error();
    algo = *chosen;
  }
  BackendLayout layout = tdx ? tdx_layout(std::move(plugin)) : realm_layout(std::move(plugin), algo);

  std::vector<MrFile> files;
  for (uint32_t reg = 0; reg < layout.registers.size(); ++reg) {
    std::string name = tdx ? (reg == kTdxMrtdRegister ? "mrtd" : fmt::format("rtmr{}", reg))
                           : (reg == kRealmRimRegister ? "rim" : fmt::format("rem{}", reg));
    auto file = find_file(listing, options.path, name, algo);
    if (!file) return file.error();
    mark_file_access(layout.registers[reg], *file);
    files.push_back(std::move(*file));
  }
  bool any_writable = std::any_of(layout.registers.begin(), layout.registers.end(),
                                  [](const RegisterSpec& spec) { return !spec.read_only; });
  if (!any_writable) {
    layout.read_only = true;
    layout.read_only_reason = fmt::format("no register file in '{}' is writable", options.path);
  }
  return std::unique_ptr<Backend>(new TsmMrBackend(std::move(layout), std::move(files)));
}

RotResult<std::unique_ptr<Backend>> open_generic(std::string plugin, const TsmMrOptions& options,
                                                 const std::vector<MrFile>& listing) {
  auto algo = choose_algo(listing, options.path, "", options.hash);
  if (!algo) return algo.error();

  std::vector<std::string> names = options.registers;
  if (names.empty()) {
    for (const MrFile& file : listing) {
      if (file.algo == *algo) names.push_back(file.name);
    }
    std::sort(names.begin(), names.end(), natural_less);
  }

  BackendLayout layout;
  layout.plugin = std::move(plugin);
  layout.register_kind = "MR";
  layout.algo = *algo;
  std::vector<MrFile> files;
  std::optional<uint32_t> first_writable;
  for (const std::string& name : names) {
    auto file = find_file(listing, options.path, name, *algo);
    if (!file) return file.error();
    RegisterSpec spec;
    spec.name = upper(name);
    mark_file_access(spec, *file);
    if (!spec.read_only && !first_writable) first_writable = static_cast<uint32_t>(layout.registers.size());
    layout.registers.push_back(std::move(spec));
    files.push_back(std::move(*file));
  }

  if (options.default_register) {
    auto found = std::find(names.begin(), names.end(), *options.default_register);
    if (found == names.end()) {
      return invalid_error(fmt::format("\"default_register\": '{}' is not one of the registers ({})",
                                       *options.default_register, fmt::join(names, ", ")));
    }
    layout.default_register = static_cast<uint32_t>(found - names.begin());
    if (layout.registers[layout.default_register].read_only) {
      return invalid_error(fmt::format("\"default_register\": '{}' is read-only: {}", *options.default_register,
                                       layout.registers[layout.default_register].read_only_reason));
    }
  } else if (first_writable) {
    layout.default_register = *first_writable;
  } else {
    layout.read_only = true;
    layout.read_only_reason = fmt::format("no register file in '{}' is writable", options.path);
  }
  return std::unique_ptr<Backend>(new TsmMrBackend(std::move(layout), std::move(files)));
}

}  // namespace

BackendLayout tdx_layout(std::string plugin) {
  BackendLayout layout;
  layout.plugin = std::move(plugin);
  layout.register_kind = "RTMR";
  layout.algo = HashAlgo::sha384;
  // The CC measurement register index of UEFI's CC measurement protocol:
  // MRTD is 0 and RTMR n is n + 1.
  for (uint32_t i = 0; i < kTdxRtmrCount; ++i) {
    layout.registers.push_back(RegisterSpec{fmt::format("RTMR{}", i), fmt::format("CC MR {}", i + 1), false, ""});
  }
  layout.registers.push_back(RegisterSpec{"MRTD", "CC MR 0", true, std::string(kMrtdReason)});
  layout.default_register = kTdxDefaultRegister;
  layout.boot_rule = BootAggregateRule::tdx;
  return layout;
}

BackendLayout realm_layout(std::string plugin, HashAlgo algo) {
  BackendLayout layout;
  layout.plugin = std::move(plugin);
  layout.register_kind = "REM";
  layout.algo = algo;
  // RSI and TSI number the RIM 0 and REM n as n + 1.
  for (uint32_t i = 0; i < kRemCount; ++i) {
    layout.registers.push_back(
        RegisterSpec{fmt::format("REM{}", i), fmt::format("measurement index {}", i + 1), false, ""});
  }
  layout.registers.push_back(RegisterSpec{"RIM", "measurement index 0", true, std::string(kRimReason)});
  layout.default_register = kRealmDefaultRegister;
  layout.boot_rule = BootAggregateRule::rim;
  return layout;
}

RotResult<void> Backend::check_register(uint32_t reg) const {
  if (reg >= layout_.registers.size()) {
    return invalid_error(fmt::format("{} has no register {}: registers are 0 to {}", layout_.plugin, reg,
                                     layout_.registers.size() - 1));
  }
  if (layout_.read_only) return RotError{Status::read_only, 0, layout_.read_only_reason};
  const RegisterSpec& spec = layout_.registers[reg];
  if (spec.read_only) {
    return RotError{Status::read_only, 0,
                    fmt::format("register {} ({}) cannot be extended: {}", reg, spec.name, spec.read_only_reason)};
  }
  return Ok{};
}

RotResult<std::vector<Digest>> Backend::read(std::span<const uint32_t> regs) {
  for (uint32_t reg : regs) {
    if (reg >= layout_.registers.size()) {
      return invalid_error(fmt::format("{} has no register {}: registers are 0 to {}", layout_.plugin, reg,
                                       layout_.registers.size() - 1));
    }
  }
  return read_values(regs);
}

RotResult<void> Backend::extend(uint32_t reg, const Digest& input) {
  if (auto checked = check_register(reg); !checked) return checked.error();
  if (input.size() != digest_size(layout_.algo)) {
    return invalid_error(fmt::format("{} register {} takes a {}-byte {} digest, not {} bytes",
                                     layout_.plugin, layout_.registers[reg].name, digest_size(layout_.algo),
                                     hash_name(layout_.algo), input.size()));
  }
  return extend_value(reg, input);
}

RotResult<rot::BootAggregate> Backend::boot_aggregate() {
  switch (layout_.boot_rule) {
    case BootAggregateRule::none:
      return invalid_error(fmt::format("{} has no boot_aggregate rule for a generic tsm-mr device; use the \"tdx\" or "
                                       "\"cca\" preset",
                                       layout_.plugin));
    case BootAggregateRule::rim: {
      std::array<uint32_t, 1> regs = {kRealmRimRegister};
      auto values = read(regs);
      if (!values) return values.error();
      return rot::BootAggregate{layout_.algo, values->front()};
    }
    case BootAggregateRule::tdx: {
      std::array<uint32_t, 4> regs = {kTdxMrtdRegister, 0, 1, 2};
      auto values = read(regs);
      if (!values) return values.error();
      Bytes input;
      for (const Digest& value : *values) {
        if (!value.is_zero()) input.insert(input.end(), value.view().begin(), value.view().end());
      }
      auto digest = hash_bytes(HashAlgo::sha384, input);
      if (!digest) return failed_error(digest.error().message);
      return rot::BootAggregate{HashAlgo::sha384, *digest};
    }
  }
  return failed_error("unknown boot_aggregate rule");
}

RotResult<std::unique_ptr<Backend>> open_tsm_mr(std::string plugin, const TsmMrOptions& options) {
  auto listing = list_measurement_files(options.path);
  if (!listing) return listing.error();
  if (options.preset != Preset::none) return open_preset(std::move(plugin), options, *listing);
  return open_generic(std::move(plugin), options, *listing);
}

RotResult<std::unique_ptr<Backend>> open_tdreport(std::string plugin, std::unique_ptr<IoctlDevice> device,
                                                  std::string read_only_reason) {
  // One report now, so that a missing or broken device fails at start-up.
  auto report = request_tdreport(*device);
  if (!report) return report.error();
  BackendLayout layout = tdx_layout(std::move(plugin));
  layout.read_only = true;
  layout.read_only_reason = std::move(read_only_reason);
  return std::unique_ptr<Backend>(new TdReportBackend(std::move(layout), std::move(device)));
}

RotResult<std::unique_ptr<Backend>> open_token(std::string plugin, std::unique_ptr<TokenSource> source,
                                               TokenFormat format, std::string read_only_reason) {
  auto measurements = request_measurements(*source, format);
  if (!measurements) return measurements.error();
  BackendLayout layout = realm_layout(std::move(plugin), measurements->algo);
  layout.read_only = true;
  layout.read_only_reason = std::move(read_only_reason);
  return std::unique_ptr<Backend>(new TokenBackend(std::move(layout), std::move(source), format));
}

}  // namespace imarot::cc
