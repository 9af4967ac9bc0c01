// RotBackend: the C++ side of one open plugin.
#include <algorithm>
#include <cstring>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "plugin_library.h"

namespace imarot::rot {
namespace {

RotError invalid(std::string message) { return RotError{Status::invalid, 0, std::move(message)}; }

std::string c_text(const char* text, size_t capacity) { return std::string(text, strnlen(text, capacity)); }

// Checks that the config is one JSON object, so a syntax error is reported
// here with its position rather than by each plugin in its own words.
RotResult<void> check_config_json(std::string_view name, std::string_view config_json) {
  nlohmann::json parsed;
  try {
    parsed = nlohmann::json::parse(config_json);
  } catch (const nlohmann::json::parse_error& e) {
    // what() starts with "[json.exception.parse_error.N] ", which means
    // nothing to an operator.
    std::string_view detail = e.what();
    if (size_t end = detail.find("] "); detail.starts_with("[json.exception") && end != std::string_view::npos) {
      detail.remove_prefix(end + 2);
    }
    return invalid(fmt::format("config of backend '{}' is not valid JSON: {}", name, detail));
  }
  if (!parsed.is_object()) {
    return invalid(fmt::format("config of backend '{}' must be a JSON object, got {}", name, parsed.type_name()));
  }
  return Ok{};
}

RotResult<Description> convert_description(const imarot_rot_description& raw, std::string_view context) {
  Description out;
  out.name = c_text(raw.name, sizeof raw.name);
  out.register_kind = c_text(raw.register_kind, sizeof raw.register_kind);
  out.register_count = raw.register_count;
  out.default_register = raw.default_register;
  out.read_only = (raw.flags & IMAROT_ROT_FLAG_READ_ONLY) != 0;
  out.kernel_shared = (raw.flags & IMAROT_ROT_FLAG_KERNEL_SHARED) != 0;
  out.read_only_reason = c_text(raw.read_only_reason, sizeof raw.read_only_reason);

  auto broken = [&](std::string what) {
    return RotError{Status::failed, 0, fmt::format("{}: invalid description: {}", context, what)};
  };
  if (raw.bank_count > IMAROT_ROT_MAX_BANKS) {
    return broken(fmt::format("{} banks, more than the maximum of {}", raw.bank_count, IMAROT_ROT_MAX_BANKS));
  }
  if (raw.bank_count == 0 && !out.read_only) return broken("no banks");
  if (out.register_count == 0) return broken("no registers");
  if (out.default_register >= out.register_count) {
    return broken(fmt::format("default register {} is not below the register count {}", out.default_register,
                              out.register_count));
  }
  for (uint32_t i = 0; i < raw.bank_count; ++i) {
    const imarot_rot_bank& bank = raw.banks[i];
    if (bank.hash_algo >= kHashAlgoCount) return broken(fmt::format("bank {} has unknown algorithm {}", i, bank.hash_algo));
    auto algo = static_cast<HashAlgo>(bank.hash_algo);
    if (bank.digest_size != digest_size(algo)) {
      return broken(fmt::format("bank {} ({}) has {}-byte digests; expected {}", i, hash_name(algo), bank.digest_size,
                                digest_size(algo)));
    }
    if (out.has_bank(algo)) return broken(fmt::format("bank {} is listed twice", hash_name(algo)));
    out.banks.push_back(Bank{algo, bank.digest_size, bank.tpm_alg_id});
  }
  return out;
}

// Upper bound on the registers a plugin may describe one by one, so that a
// broken register_count cannot stall loading.
constexpr uint32_t kMaxDescribedRegisters = 1024;

// Reads every register's name and read-only flag from a plugin that
// implements describe_register.
RotResult<void> describe_registers(const imarot_rot_ops* ops, void* handle, Description& description,
                                   std::string_view context) {
  if (description.register_count > kMaxDescribedRegisters) {
    return RotError{Status::failed, 0,
                    fmt::format("{}: invalid description: {} registers to describe, more than the maximum of {}",
                                context, description.register_count, kMaxDescribedRegisters)};
  }
  for (uint32_t reg = 0; reg < description.register_count; ++reg) {
    imarot_rot_register_info raw{};
    imarot_rot_error error{};
    int code = ops->describe_register(handle, reg, &raw, &error);
    if (code != IMAROT_ROT_OK) return error_from_plugin(code, error, context);
    RegisterInfo info;
    info.name = c_text(raw.name, sizeof raw.name);
    info.alias = c_text(raw.alias, sizeof raw.alias);
    info.read_only = (raw.flags & IMAROT_ROT_REGISTER_READ_ONLY) != 0;
    info.read_only_reason = c_text(raw.read_only_reason, sizeof raw.read_only_reason);
    if (info.name.empty()) {
      return RotError{Status::failed, 0,
                      fmt::format("{}: invalid description: register {} has no name", context, reg)};
    }
    description.registers.push_back(std::move(info));
  }
  return Ok{};
}

}  // namespace

std::string Description::register_name(uint32_t index) const {
  if (const RegisterInfo* info = register_info(index)) return info->name;
  return fmt::format("{} {}", register_kind, index);
}

const RegisterInfo* Description::register_info(uint32_t index) const {
  return index < registers.size() ? &registers[index] : nullptr;
}

std::vector<HashAlgo> Description::bank_algos() const {
  std::vector<HashAlgo> algos;
  for (const Bank& bank : banks) algos.push_back(bank.algo);
  return algos;
}

bool Description::has_bank(HashAlgo algo) const {
  return std::any_of(banks.begin(), banks.end(), [algo](const Bank& bank) { return bank.algo == algo; });
}

RotBackend::RotBackend(std::shared_ptr<PluginLibrary> library, const imarot_rot_ops* ops, void* handle)
    : library_(std::move(library)), ops_(ops), handle_(handle) {}

RotBackend::~RotBackend() { ops_->close(handle_); }

const std::string& RotBackend::plugin_path() const { return library_->path(); }

RotResult<std::unique_ptr<RotBackend>> RotBackend::load(std::string_view name, std::string_view config_json,
                                                        const std::string& plugin_dir) {
  std::string config(config_json.empty() ? std::string_view("{}") : config_json);
  if (auto checked = check_config_json(name, config); !checked) return checked.error();

  auto library = PluginLibrary::open(name, plugin_dir);
  if (!library) return library.error();
  const imarot_rot_ops* ops = (*library)->ops();
  std::string context = fmt::format("backend '{}' ({})", name, (*library)->path());

  imarot_rot_error error{};
  void* handle = nullptr;
  int code = ops->init(config.c_str(), &handle, &error);
  if (code != IMAROT_ROT_OK) return error_from_plugin(code, error, context);

  // From here on the destructor closes the handle.
  std::unique_ptr<RotBackend> backend(new RotBackend(*library, ops, handle));
  imarot_rot_description raw{};
  error = imarot_rot_error{};
  code = ops->describe(handle, &raw, &error);
  if (code != IMAROT_ROT_OK) return error_from_plugin(code, error, context);
  auto description = convert_description(raw, context);
  if (!description) return description.error();
  if ((*library)->has_describe_register()) {
    if (auto described = describe_registers(ops, handle, *description, context); !described) {
      return described.error();
    }
  }
  backend->description_ = std::move(*description);
  return backend;
}

RotResult<bool> RotBackend::check_config(std::string_view name, std::string_view config_json,
                                         const std::string& plugin_dir) {
  std::string config(config_json.empty() ? std::string_view("{}") : config_json);
  if (auto checked = check_config_json(name, config); !checked) return checked.error();

  auto library = PluginLibrary::open(name, plugin_dir);
  if (!library) return library.error();
  if (!(*library)->has_check_config()) return false;

  imarot_rot_error error{};
  int code = (*library)->ops()->check_config(config.c_str(), &error);
  if (code != IMAROT_ROT_OK) {
    return error_from_plugin(code, error, fmt::format("backend '{}' ({})", name, (*library)->path()));
  }
  return true;
}

RotResult<void> RotBackend::check_register(uint32_t reg) {
  if (description_.read_only) {
    return RotError{Status::read_only, 0,
                    fmt::format("{}: the backend cannot be extended: {}", description_.name,
                                description_.read_only_reason)};
  }
  if (const RegisterInfo* info = description_.register_info(reg); info != nullptr && info->read_only) {
    return RotError{Status::read_only, 0,
                    fmt::format("{}: register {} ({}) cannot be extended: {}", description_.name, reg, info->name,
                                info->read_only_reason)};
  }
  imarot_rot_error error{};
  int code = ops_->check_register(handle_, reg, &error);
  if (code != IMAROT_ROT_OK) return error_from_plugin(code, error, description_.name);
  return Ok{};
}

RotResult<void> RotBackend::extend(uint32_t reg, const Entry& entry) {
  std::array<Digest, IMAROT_ROT_MAX_BANKS> digests;
  for (size_t i = 0; i < description_.banks.size(); ++i) {
    auto digest = extend_digest(entry, description_.banks[i].algo);
    if (!digest) return RotError{Status::failed, digest.error().code, digest.error().message};
    digests[i] = *digest;
  }
  return extend_digests(reg, std::span<const Digest>(digests.data(), description_.banks.size()));
}

RotResult<void> RotBackend::extend_digests(uint32_t reg, std::span<const Digest> digests) {
  const auto& banks = description_.banks;
  if (digests.size() != banks.size()) {
    return invalid(fmt::format("{}: {} digests given for {} banks", description_.name, digests.size(), banks.size()));
  }
  std::array<imarot_rot_digest, IMAROT_ROT_MAX_BANKS> raw{};
  for (size_t i = 0; i < banks.size(); ++i) {
    if (digests[i].size() != banks[i].digest_size) {
      return invalid(fmt::format("{}: the {} digest is {} bytes; expected {}", description_.name,
                                 hash_name(banks[i].algo), digests[i].size(), banks[i].digest_size));
    }
    raw[i].hash_algo = static_cast<uint8_t>(banks[i].algo);
    raw[i].size = static_cast<uint16_t>(digests[i].size());
    std::memcpy(raw[i].bytes, digests[i].data(), digests[i].size());
  }
  imarot_rot_error error{};
  int code = ops_->extend(handle_, reg, raw.data(), banks.size(), &error);
  if (code != IMAROT_ROT_OK) return error_from_plugin(code, error, description_.name);
  return Ok{};
}

namespace {

RotResult<Digest> convert_digest(const imarot_rot_digest& raw, HashAlgo bank, std::string_view context) {
  if (raw.hash_algo != static_cast<uint8_t>(bank) || raw.size != digest_size(bank)) {
    return RotError{Status::failed, 0,
                    fmt::format("{}: read returned a {}-byte value of algorithm {} for bank {}", context, raw.size,
                                raw.hash_algo, hash_name(bank))};
  }
  return Digest(ByteView(raw.bytes, raw.size));
}

}  // namespace

RotResult<std::optional<Digest>> RotBackend::read(uint32_t reg, HashAlgo bank) {
  imarot_rot_digest raw{};
  imarot_rot_error error{};
  int code = ops_->read(handle_, reg, static_cast<uint8_t>(bank), &raw, &error);
  if (code == IMAROT_ROT_ERR_UNALLOCATED) return std::optional<Digest>();
  if (code != IMAROT_ROT_OK) return error_from_plugin(code, error, description_.name);
  auto digest = convert_digest(raw, bank, description_.name);
  if (!digest) return digest.error();
  return std::optional<Digest>(*digest);
}

RotResult<BankRead> RotBackend::read_bank(HashAlgo bank, std::span<const uint32_t> regs) {
  BankRead out;
  out.bank = bank;
  out.registers.assign(regs.begin(), regs.end());
  if (regs.empty()) return out;

  if (library_->has_read_registers()) {
    std::vector<imarot_rot_digest> raw(regs.size());
    imarot_rot_error error{};
    int code = ops_->read_registers(handle_, static_cast<uint8_t>(bank), regs.data(), regs.size(), raw.data(), &error);
    if (code == IMAROT_ROT_ERR_UNALLOCATED) {
      out.allocated = false;
      out.registers.clear();
      return out;
    }
    if (code != IMAROT_ROT_OK) return error_from_plugin(code, error, description_.name);
    for (const imarot_rot_digest& value : raw) {
      auto digest = convert_digest(value, bank, description_.name);
      if (!digest) return digest.error();
      out.values.push_back(*digest);
    }
    return out;
  }

  for (uint32_t reg : regs) {
    auto value = read(reg, bank);
    if (!value) return value.error();
    if (!value->has_value()) {
      out.allocated = false;
      out.registers.clear();
      out.values.clear();
      return out;
    }
    out.values.push_back(**value);
  }
  return out;
}

RotResult<BootAggregate> RotBackend::boot_aggregate(HashAlgo ima_hash) {
  imarot_rot_digest raw{};
  imarot_rot_error error{};
  int code = ops_->boot_aggregate(handle_, static_cast<uint8_t>(ima_hash), &raw, &error);
  if (code != IMAROT_ROT_OK) return error_from_plugin(code, error, description_.name);
  if (raw.hash_algo >= kHashAlgoCount) {
    return RotError{Status::failed, 0,
                    fmt::format("{}: boot_aggregate returned unknown algorithm {}", description_.name, raw.hash_algo)};
  }
  auto bank = static_cast<HashAlgo>(raw.hash_algo);
  auto digest = convert_digest(raw, bank, description_.name);
  if (!digest) return digest.error();
  return BootAggregate{bank, *digest};
}

}  // namespace imarot::rot
