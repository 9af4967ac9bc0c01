// Intel TDX TDREPORT: reading MRTD and RTMR0-3 through the TDX_CMD_GET_REPORT0
// ioctl on /dev/tdx_guest, the only read path on kernels before 6.16, which
// have no tsm-mr files and no user-space extend.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "cc_errors.h"

namespace imarot::cc {

// Layout of TDREPORT_STRUCT as Linux's TDX guest driver reads it.
inline constexpr size_t kTdReportSize = 1024;
inline constexpr size_t kTdReportDataSize = 64;
inline constexpr size_t kTdxRegisterSize = 48;  // SHA-384
inline constexpr size_t kTdReportTypeOffset = 0;
inline constexpr size_t kTdReportDataOffset = 128;
inline constexpr size_t kTdReportMrtdOffset = 528;
inline constexpr size_t kTdReportRtmrOffset = 720;  // RTMR n starts at 720 + 48 * n
inline constexpr size_t kTdxRtmrCount = 4;

// struct tdx_report_req of include/uapi/linux/tdx-guest.h.
struct TdxReportRequest {
  uint8_t reportdata[kTdReportDataSize];
  uint8_t tdreport[kTdReportSize];
};
static_assert(sizeof(TdxReportRequest) == 1088);

// _IOWR('T', 1, struct tdx_report_req).
inline constexpr unsigned long kTdxCmdGetReport0 = 0xC4405401ul;

struct TdReport {
  uint8_t type = 0;  // first byte of REPORTTYPE
  std::array<uint8_t, kTdReportDataSize> report_data{};
  Digest mrtd;
  std::array<Digest, kTdxRtmrCount> rtmr;
};

// Parses a TDREPORT from `report`, which must be exactly kTdReportSize
// bytes. The report type must be TDX: REPORTTYPE.TYPE 0x81 (Linux's header
// comment writes "81 - TDX" without a base, so 81 decimal, 0x51, is accepted
// as well). The error names the fault and its offset.
RotResult<TdReport> parse_tdreport(ByteView report);

// The one ioctl call of a character device, behind an interface so that
// tests can fill the buffer themselves.
class IoctlDevice {
 public:
  virtual ~IoctlDevice() = default;
  virtual const std::string& path() const = 0;
  // Issues `request` with `argument` as its in-out buffer; returns 0, or the
  // errno value of a failed open or ioctl.
  virtual int call(unsigned long request, std::span<uint8_t> argument) = 0;
};

// A character device opened read-write for each call.
class CharDeviceIoctl : public IoctlDevice {
 public:
  explicit CharDeviceIoctl(std::string path) : path_(std::move(path)) {}
  const std::string& path() const override { return path_; }
  int call(unsigned long request, std::span<uint8_t> argument) override;

 private:
  std::string path_;
};

// Requests a TDREPORT with a random REPORTDATA, parses it, and checks that the
// report carries that REPORTDATA, so a stale or foreign buffer is rejected.
RotResult<TdReport> request_tdreport(IoctlDevice& device);

}  // namespace imarot::cc
