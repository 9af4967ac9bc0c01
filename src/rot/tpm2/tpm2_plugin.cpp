// imarot-rot-tpm2.so: the TPM 2.0 backend behind the RoT plugin C ABI.
// Every entry point catches C++ exceptions so that none crosses the ABI.
#include <array>
#include <cstdio>
#include <cstring>
#include <exception>
#include <memory>
#include <new>

#include <fmt/format.h>

#include "imarot/rot_plugin_errors.h"
#include "imarot/rot_plugin.h"
#include "tpm2_config.h"
#include "tpm2_device.h"

namespace imarot::tpm2 {
namespace {

using rot::RotError;
using rot::Status;

constexpr uint32_t kImaPcr = 10;

struct Handle {
  std::unique_ptr<Device> device;
};

int report(const RotError& error, imarot_rot_error* out) { return rot::report_plugin_error(error, out); }

int report_exception(imarot_rot_error* out) { return rot::report_plugin_exception(out); }

Device& device_of(void* handle) { return *static_cast<Handle*>(handle)->device; }

// The kernel hash algorithm number of a request, checked.
std::optional<HashAlgo> algo_of(uint8_t hash_algo) {
  if (hash_algo >= kHashAlgoCount) return std::nullopt;
  return static_cast<HashAlgo>(hash_algo);
}

RotError unknown_algo(uint8_t hash_algo) {
  return RotError{Status::invalid, 0, fmt::format("unknown kernel hash algorithm number {}", hash_algo)};
}

void fill_digest(const Digest& digest, HashAlgo algo, imarot_rot_digest* out) {
  *out = imarot_rot_digest{};
  out->hash_algo = static_cast<uint8_t>(algo);
  out->size = static_cast<uint16_t>(digest.size());
  std::memcpy(out->bytes, digest.data(), digest.size());
}

int tpm2_init(const char* json_config, void** handle, imarot_rot_error* error) {
  try {
    if (json_config == nullptr || handle == nullptr) return report(RotError{Status::invalid, 0, "null argument"}, error);
    auto config = parse_config(json_config);
    if (!config) return report(config.error(), error);
    auto device = Device::open(std::move(*config));
    if (!device) return report(device.error(), error);
    *handle = new Handle{std::move(*device)};
    return IMAROT_ROT_OK;
  } catch (...) {
    return report_exception(error);
  }
}

int tpm2_check_config(const char* json_config, imarot_rot_error* error) {
  try {
    if (json_config == nullptr) return report(RotError{Status::invalid, 0, "null argument"}, error);
    auto config = parse_config(json_config);
    return config ? IMAROT_ROT_OK : report(config.error(), error);
  } catch (...) {
    return report_exception(error);
  }
}

int tpm2_describe(void* handle, imarot_rot_description* out, imarot_rot_error* error) {
  try {
    const Device& device = device_of(handle);
    *out = imarot_rot_description{};
    std::snprintf(out->name, sizeof out->name, "%s", "tpm2");
    std::snprintf(out->register_kind, sizeof out->register_kind, "%s", "PCR");
    out->register_count = device.pcr_count();
    out->default_register = kImaPcr;
    out->flags = device.config().kernel_tpm ? IMAROT_ROT_FLAG_KERNEL_SHARED : 0;
    out->bank_count = static_cast<uint32_t>(std::min<size_t>(device.banks().size(), IMAROT_ROT_MAX_BANKS));
    for (uint32_t i = 0; i < out->bank_count; ++i) {
      const rot::Bank& bank = device.banks()[i];
      out->banks[i].hash_algo = static_cast<uint8_t>(bank.algo);
      out->banks[i].digest_size = static_cast<uint16_t>(bank.digest_size);
      out->banks[i].tpm_alg_id = bank.tpm_alg_id;
    }
    return IMAROT_ROT_OK;
  } catch (...) {
    return report_exception(error);
  }
}

int tpm2_check_register(void* handle, uint32_t reg, imarot_rot_error* error) {
  try {
    auto checked = device_of(handle).check_pcr(reg);
    return checked ? IMAROT_ROT_OK : report(checked.error(), error);
  } catch (...) {
    return report_exception(error);
  }
}

int tpm2_extend(void* handle, uint32_t reg, const imarot_rot_digest* digests, size_t count, imarot_rot_error* error) {
  try {
    Device& device = device_of(handle);
    const auto& banks = device.banks();
    if (count != banks.size()) {
      return report(RotError{Status::invalid, 0,
                             fmt::format("{} digests given for the TPM's {} allocated banks", count, banks.size())},
                    error);
    }
    std::array<Digest, IMAROT_ROT_MAX_BANKS> values;
    for (size_t i = 0; i < count; ++i) {
      if (digests[i].hash_algo != static_cast<uint8_t>(banks[i].algo) || digests[i].size != banks[i].digest_size) {
        return report(RotError{Status::invalid, 0,
                               fmt::format("digest {} is algorithm {} with {} bytes; bank {} expects {} with {}", i,
                                           digests[i].hash_algo, digests[i].size, i, hash_name(banks[i].algo),
                                           banks[i].digest_size)},
                      error);
      }
      values[i] = Digest(ByteView(digests[i].bytes, digests[i].size));
    }
    auto extended = device.extend(reg, std::span<const Digest>(values.data(), count));
    return extended ? IMAROT_ROT_OK : report(extended.error(), error);
  } catch (...) {
    return report_exception(error);
  }
}

int tpm2_read_registers(void* handle, uint8_t hash_algo, const uint32_t* regs, size_t count, imarot_rot_digest* out,
                        imarot_rot_error* error) {
  try {
    auto algo = algo_of(hash_algo);
    if (!algo) return report(unknown_algo(hash_algo), error);
    auto values = device_of(handle).read(*algo, std::span<const uint32_t>(regs, count));
    if (!values) return report(values.error(), error);
    if (!values->has_value()) {
      return report(RotError{Status::unallocated, 0,
                             fmt::format("the TPM has no PCRs allocated in its {} bank", hash_name(*algo))},
                    error);
    }
    for (size_t i = 0; i < count; ++i) fill_digest((**values)[i], *algo, &out[i]);
    return IMAROT_ROT_OK;
  } catch (...) {
    return report_exception(error);
  }
}

int tpm2_read(void* handle, uint32_t reg, uint8_t hash_algo, imarot_rot_digest* out, imarot_rot_error* error) {
  return tpm2_read_registers(handle, hash_algo, &reg, 1, out, error);
}

int tpm2_boot_aggregate(void* handle, uint8_t ima_hash, imarot_rot_digest* out, imarot_rot_error* error) {
  try {
    auto algo = algo_of(ima_hash);
    if (!algo) return report(unknown_algo(ima_hash), error);
    auto aggregate = device_of(handle).boot_aggregate(*algo);
    if (!aggregate) return report(aggregate.error(), error);
    fill_digest(aggregate->digest, aggregate->bank, out);
    return IMAROT_ROT_OK;
  } catch (...) {
    return report_exception(error);
  }
}

void tpm2_close(void* handle) { delete static_cast<Handle*>(handle); }

constexpr imarot_rot_ops kOps = {
    .abi_version = IMAROT_ROT_ABI_VERSION,
    .struct_size = sizeof(imarot_rot_ops),
    .name = "tpm2",
    .init = tpm2_init,
    .describe = tpm2_describe,
    .check_register = tpm2_check_register,
    .extend = tpm2_extend,
    .read = tpm2_read,
    .boot_aggregate = tpm2_boot_aggregate,
    .close = tpm2_close,
    .read_registers = tpm2_read_registers,
    // PCRs are known by their numbers; rotctl prints them as tpm2_pcrread does.
    .describe_register = nullptr,
    .check_config = tpm2_check_config,
};

}  // namespace
}  // namespace imarot::tpm2

extern "C" IMAROT_ROT_EXPORT const imarot_rot_ops* imarot_rot_plugin(void) { return &imarot::tpm2::kOps; }
