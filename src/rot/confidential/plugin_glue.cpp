#include "plugin_glue.h"

#include "imarot/rot_plugin_errors.h"

#include <cstdio>
#include <cstring>
#include <exception>
#include <new>

#include <fmt/format.h>

namespace imarot::cc {
namespace {

int report(const RotError& error, imarot_rot_error* out) { return rot::report_plugin_error(error, out); }

int report_exception(imarot_rot_error* out) { return rot::report_plugin_exception(out); }

Backend& backend_of(void* handle) { return *static_cast<Backend*>(handle); }

void copy_text(char* out, size_t capacity, const std::string& text) { std::snprintf(out, capacity, "%s", text.c_str()); }

void fill_digest(const Digest& digest, HashAlgo algo, imarot_rot_digest* out) {
  *out = imarot_rot_digest{};
  out->hash_algo = static_cast<uint8_t>(algo);
  out->size = static_cast<uint16_t>(digest.size());
  std::memcpy(out->bytes, digest.data(), digest.size());
}

RotResult<void> check_bank(const Backend& backend, uint8_t hash_algo) {
  HashAlgo algo = backend.layout().algo;
  if (hash_algo != static_cast<uint8_t>(algo)) {
    std::string requested = hash_algo < kHashAlgoCount ? std::string(hash_name(static_cast<HashAlgo>(hash_algo)))
                                                        : fmt::format("number {}", hash_algo);
    return invalid_error(fmt::format("{} has only the {} bank, not {}", backend.layout().plugin, hash_name(algo),
                                     requested));
  }
  return Ok{};
}

}  // namespace

int plugin_init(PluginKind kind, const char* json_config, void** handle, imarot_rot_error* error) {
  try {
    if (json_config == nullptr || handle == nullptr) return report(invalid_error("null argument"), error);
    auto backend = open_plugin(kind, json_config);
    if (!backend) return report(backend.error(), error);
    *handle = backend->release();
    return IMAROT_ROT_OK;
  } catch (...) {
    return report_exception(error);
  }
}

int plugin_check_config(PluginKind kind, const char* json_config, imarot_rot_error* error) {
  try {
    if (json_config == nullptr) return report(invalid_error("null argument"), error);
    auto checked = check_plugin_config(kind, json_config);
    return checked ? IMAROT_ROT_OK : report(checked.error(), error);
  } catch (...) {
    return report_exception(error);
  }
}

int plugin_describe(void* handle, imarot_rot_description* out, imarot_rot_error* error) {
  try {
    const BackendLayout& layout = backend_of(handle).layout();
    *out = imarot_rot_description{};
    copy_text(out->name, sizeof out->name, layout.plugin);
    copy_text(out->register_kind, sizeof out->register_kind, layout.register_kind);
    out->register_count = static_cast<uint32_t>(layout.registers.size());
    out->default_register = layout.default_register;
    out->flags = layout.read_only ? IMAROT_ROT_FLAG_READ_ONLY : 0;
    out->bank_count = 1;
    out->banks[0].hash_algo = static_cast<uint8_t>(layout.algo);
    out->banks[0].digest_size = static_cast<uint16_t>(digest_size(layout.algo));
    out->banks[0].tpm_alg_id = 0;
    copy_text(out->read_only_reason, sizeof out->read_only_reason, layout.read_only_reason);
    return IMAROT_ROT_OK;
  } catch (...) {
    return report_exception(error);
  }
}

int plugin_describe_register(void* handle, uint32_t reg, imarot_rot_register_info* out, imarot_rot_error* error) {
  try {
    const BackendLayout& layout = backend_of(handle).layout();
    if (reg >= layout.registers.size()) {
      return report(invalid_error(fmt::format("{} has no register {}", layout.plugin, reg)), error);
    }
    const RegisterSpec& spec = layout.registers[reg];
    *out = imarot_rot_register_info{};
    copy_text(out->name, sizeof out->name, spec.name);
    copy_text(out->alias, sizeof out->alias, spec.alias);
    out->flags = spec.read_only ? IMAROT_ROT_REGISTER_READ_ONLY : 0;
    copy_text(out->read_only_reason, sizeof out->read_only_reason, spec.read_only_reason);
    return IMAROT_ROT_OK;
  } catch (...) {
    return report_exception(error);
  }
}

int plugin_check_register(void* handle, uint32_t reg, imarot_rot_error* error) {
  try {
    auto checked = backend_of(handle).check_register(reg);
    return checked ? IMAROT_ROT_OK : report(checked.error(), error);
  } catch (...) {
    return report_exception(error);
  }
}

int plugin_extend(void* handle, uint32_t reg, const imarot_rot_digest* digests, size_t count,
                  imarot_rot_error* error) {
  try {
    Backend& backend = backend_of(handle);
    if (count != 1) {
      return report(invalid_error(fmt::format("{} digests given; {} has one bank ({})", count,
                                              backend.layout().plugin, hash_name(backend.layout().algo))),
                    error);
    }
    if (auto bank = check_bank(backend, digests[0].hash_algo); !bank) return report(bank.error(), error);
    if (digests[0].size > IMAROT_ROT_MAX_DIGEST) {
      return report(invalid_error(fmt::format("digest size {} exceeds {}", digests[0].size, IMAROT_ROT_MAX_DIGEST)),
                    error);
    }
    auto extended = backend.extend(reg, Digest(ByteView(digests[0].bytes, digests[0].size)));
    return extended ? IMAROT_ROT_OK : report(extended.error(), error);
  } catch (...) {
    return report_exception(error);
  }
}

int plugin_read_registers(void* handle, uint8_t hash_algo, const uint32_t* regs, size_t count,
                          imarot_rot_digest* out, imarot_rot_error* error) {
  try {
    Backend& backend = backend_of(handle);
    if (auto bank = check_bank(backend, hash_algo); !bank) return report(bank.error(), error);
    auto values = backend.read(std::span<const uint32_t>(regs, count));
    if (!values) return report(values.error(), error);
    for (size_t i = 0; i < count; ++i) fill_digest((*values)[i], backend.layout().algo, &out[i]);
    return IMAROT_ROT_OK;
  } catch (...) {
    return report_exception(error);
  }
}

int plugin_read(void* handle, uint32_t reg, uint8_t hash_algo, imarot_rot_digest* out, imarot_rot_error* error) {
  return plugin_read_registers(handle, hash_algo, &reg, 1, out, error);
}

int plugin_boot_aggregate(void* handle, uint8_t, imarot_rot_digest* out, imarot_rot_error* error) {
  try {
    // The rules of Intel's TDX patches and openEuler's VirtCCA code ignore
    // ima_hash: TDX always yields SHA-384, a realm its own algorithm.
    auto aggregate = backend_of(handle).boot_aggregate();
    if (!aggregate) return report(aggregate.error(), error);
    fill_digest(aggregate->digest, aggregate->bank, out);
    return IMAROT_ROT_OK;
  } catch (...) {
    return report_exception(error);
  }
}

void plugin_close(void* handle) { delete static_cast<Backend*>(handle); }

}  // namespace imarot::cc
