// Sources of CCA-style attestation tokens: VirtCCA's /dev/tsi ioctl and the
// configfs-tsm report interface Arm CCA guests use (Linux 6.7 and later).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "cc_errors.h"
#include "tdreport.h"

namespace imarot::cc {

class TokenSource {
 public:
  virtual ~TokenSource() = default;
  // The device or directory the tokens come from, for messages.
  virtual std::string where() const = 0;
  // Requests a token that carries `challenge` (64 bytes).
  virtual RotResult<Bytes> request(ByteView challenge) = 0;
};

// struct virtcca_cvm_token of openEuler's
// arch/arm64/include/uapi/asm/virtcca_cvm_tsi.h on LP64, where unsigned long
// is 8 bytes.
inline constexpr size_t kTsiChallengeSize = 64;
inline constexpr size_t kTsiMaxTokenSize = 8192;
struct TsiTokenRequest {
  uint8_t challenge[kTsiChallengeSize];
  uint8_t token[kTsiMaxTokenSize];
  uint64_t token_size;
};
static_assert(sizeof(TsiTokenRequest) == 8264);
static_assert(offsetof(TsiTokenRequest, token_size) == 8256);

// TMM_GET_ATTESTATION_TOKEN: _IOWR('T', 1, struct virtcca_cvm_token).
inline constexpr unsigned long kTmmGetAttestationToken = 0xE0485401ul;

// Tokens from VirtCCA's TSI device (/dev/tsi).
class TsiTokenSource : public TokenSource {
 public:
  explicit TsiTokenSource(std::unique_ptr<IoctlDevice> device) : device_(std::move(device)) {}
  std::string where() const override { return device_->path(); }
  RotResult<Bytes> request(ByteView challenge) override;

 private:
  std::unique_ptr<IoctlDevice> device_;
};

// Tokens from a configfs-tsm report: a directory made under `report_root`
// (normally /sys/kernel/config/tsm/report), the challenge written to its
// inblob, the token read from its outblob, and the directory removed again.
// The report's provider must be one of `providers`, and its generation must
// not change while the token is read, which would mean another process wrote
// the same report.
class ConfigfsTsmSource : public TokenSource {
 public:
  ConfigfsTsmSource(std::string report_root, std::vector<std::string> providers)
      : report_root_(std::move(report_root)), providers_(std::move(providers)) {}
  std::string where() const override { return report_root_; }
  RotResult<Bytes> request(ByteView challenge) override;

 private:
  std::string report_root_;
  std::vector<std::string> providers_;
};

}  // namespace imarot::cc
