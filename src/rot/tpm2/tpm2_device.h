// A TPM 2.0 reached through tpm2-tss ESAPI: PCR bank discovery, extend of all
// banks in one TPM2_PCR_Extend, chunked PCR reads and boot_aggregate.
#pragma once

#include <tss2/tss2_esys.h>

#include <bitset>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "imarot/rot.h"
#include "tpm2_config.h"

namespace imarot::tpm2 {

// A PCR bank the TPM implements; `pcrs` is empty when it is not allocated.
struct PcrBank {
  TPM2_ALG_ID alg = 0;
  std::optional<HashAlgo> algo;  // nullopt for an algorithm imarot does not know
  std::bitset<TPM2_MAX_PCRS> pcrs;
};

class Device {
 public:
  // Connects through the configured TCTI and discovers the PCR banks.
  static rot::RotResult<std::unique_ptr<Device>> open(Config config);

  Device(const Device&) = delete;
  Device& operator=(const Device&) = delete;
  ~Device();

  // The allocated banks, in the order TPM2_GetCapability lists them.
  const std::vector<rot::Bank>& banks() const { return banks_; }
  uint32_t pcr_count() const { return pcr_count_; }
  const Config& config() const { return config_; }
  const std::string& tcti() const { return tcti_string_; }

  rot::RotResult<void> check_pcr(uint32_t pcr) const;

  // Extends `pcr` with digests[i] in banks()[i], all in one TPM2_PCR_Extend.
  // Status::unavailable after a connection failure means the TPM may or may
  // not have applied it; the next call reconnects.
  rot::RotResult<void> extend(uint32_t pcr, std::span<const Digest> digests);

  // Reads `pcrs` of one bank. A TPM2_PCR_Read returns at most eight digests,
  // so larger selections take several commands. nullopt when the TPM
  // implements the bank but has no PCRs allocated in it.
  rot::RotResult<std::optional<std::vector<Digest>>> read(HashAlgo bank, std::span<const uint32_t> pcrs);

  // boot_aggregate as kernel IMA computes it for `ima_hash`.
  rot::RotResult<rot::BootAggregate> boot_aggregate(HashAlgo ima_hash);

 private:
  explicit Device(Config config);

  rot::RotResult<void> connect();
  void disconnect();
  rot::RotResult<void> discover();
  rot::RotResult<std::optional<std::vector<Digest>>> read_once(const PcrBank& bank, std::span<const uint32_t> pcrs,
                                                               bool& connection_lost);
  rot::RotError tss_error(TSS2_RC rc, std::string_view operation);

  Config config_;
  std::string tcti_string_;
  TSS2_TCTI_CONTEXT* tcti_ = nullptr;
  ESYS_CONTEXT* esys_ = nullptr;
  std::vector<PcrBank> implemented_;
  std::vector<rot::Bank> banks_;
  uint32_t pcr_count_ = 24;
};

}  // namespace imarot::tpm2
