#include "tdreport.h"

#include <fcntl.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include <fmt/format.h>
#include <linux/ioctl.h>

namespace imarot::cc {
namespace {

static_assert(_IOWR('T', 1, TdxReportRequest) == kTdxCmdGetReport0);

constexpr uint8_t kReportTypeTdx = 0x81;
constexpr uint8_t kReportTypeTdxDecimalReading = 81;

}  // namespace

RotResult<TdReport> parse_tdreport(ByteView report) {
  if (report.size() != kTdReportSize) {
    return invalid_error(fmt::format("invalid TDREPORT: {} bytes; expected {}", report.size(), kTdReportSize));
  }
  TdReport out;
  out.type = report[kTdReportTypeOffset];
  if (out.type != kReportTypeTdx && out.type != kReportTypeTdxDecimalReading) {
    return invalid_error(fmt::format("invalid TDREPORT: report type 0x{:02x} at offset {} is not TDX (0x81)",
                                     out.type, kTdReportTypeOffset));
  }
  std::copy_n(report.begin() + kTdReportDataOffset, kTdReportDataSize, out.report_data.begin());
  out.mrtd = Digest(report.subspan(kTdReportMrtdOffset, kTdxRegisterSize));
  for (size_t i = 0; i < kTdxRtmrCount; ++i) {
    out.rtmr[i] = Digest(report.subspan(kTdReportRtmrOffset + i * kTdxRegisterSize, kTdxRegisterSize));
  }
  return out;
}

int CharDeviceIoctl::call(unsigned long request, std::span<uint8_t> argument) {
  int fd = ::open(path_.c_str(), O_RDWR | O_CLOEXEC);
  if (fd < 0) return errno;
  int result;
  do {
    result = ::ioctl(fd, request, argument.data());
  } while (result < 0 && errno == EINTR);
  int err = result < 0 ? errno : 0;
  ::close(fd);
  return err;
}

RotResult<TdReport> request_tdreport(IoctlDevice& device) {
  auto nonce = random_bytes(kTdReportDataSize);
  if (!nonce) return nonce.error();

  TdxReportRequest request{};
  std::memcpy(request.reportdata, nonce->data(), kTdReportDataSize);
  auto* raw = reinterpret_cast<uint8_t*>(&request);
  int err = device.call(kTdxCmdGetReport0, std::span<uint8_t>(raw, sizeof request));
  if (err != 0) return errno_error(err, fmt::format("TDX_CMD_GET_REPORT0 on '{}' failed", device.path()));

  auto report = parse_tdreport(ByteView(request.tdreport, kTdReportSize));
  if (!report) {
    return RotError{Status::failed, 0, fmt::format("'{}' returned an {}", device.path(), report.error().message)};
  }
  if (!std::equal(report->report_data.begin(), report->report_data.end(), nonce->begin())) {
    return failed_error(fmt::format("'{}' returned a TDREPORT whose REPORTDATA (offset {}) is not the nonce sent; "
                                    "the report is stale or belongs to another request",
                                    device.path(), kTdReportDataOffset));
  }
  return std::move(*report);
}

}  // namespace imarot::cc
