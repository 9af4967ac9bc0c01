// TDREPORT parsing from byte buffers laid out as Linux's TDX guest driver
// reads them, and the read-only TDX backend of kernels before 6.16, with the
// TDX_CMD_GET_REPORT0 ioctl served by a test double.
#include <gtest/gtest.h>

#include <cerrno>
#include <cstring>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "cc_backend.h"
#include "rot_test_util.h"
#include "tdreport.h"

namespace imarot::test {
namespace {

using cc::kTdReportSize;
using rot::Status;

struct TdxValues {
  Digest mrtd = Digest::filled(48, 0xa1);
  std::array<Digest, 4> rtmr = {Digest::filled(48, 0xb0), Digest::zeros(48), Digest::filled(48, 0xb2),
                                Digest::filled(48, 0xb3)};
};

// A TDREPORT as the TDX module writes it, with only the fields the backend
// reads filled and recognizable bytes elsewhere.
Bytes make_report(const TdxValues& values, ByteView report_data, uint8_t type = 0x81) {
  Bytes report(kTdReportSize, 0xee);
  report[0] = type;
  std::memcpy(report.data() + 128, report_data.data(), 64);
  std::memcpy(report.data() + 528, values.mrtd.data(), 48);
  for (size_t i = 0; i < 4; ++i) std::memcpy(report.data() + 720 + 48 * i, values.rtmr[i].data(), 48);
  return report;
}

// Serves TDX_CMD_GET_REPORT0 as the TDX guest driver does: the REPORTDATA of
// the request goes into the report.
class FakeTdxGuest : public cc::IoctlDevice {
 public:
  TdxValues values;
  int fail_with = 0;        // errno to return instead of a report
  bool echo_nonce = true;   // false: a report with another REPORTDATA
  uint8_t type = 0x81;
  int calls = 0;

  const std::string& path() const override { return path_; }
  int call(unsigned long request, std::span<uint8_t> argument) override {
    ++calls;
    if (request != cc::kTdxCmdGetReport0) return ENOTTY;
    if (argument.size() != sizeof(cc::TdxReportRequest)) return EINVAL;
    if (fail_with != 0) return fail_with;
    Bytes nonce(argument.begin(), argument.begin() + 64);
    if (!echo_nonce) nonce.assign(64, 0);
    Bytes report = make_report(values, nonce, type);
    std::memcpy(argument.data() + 64, report.data(), report.size());
    return 0;
  }

 private:
  std::string path_ = "/dev/tdx_guest (test)";
};

TEST(TdReport, ParsesRegistersAtTheirOffsets) {
  TdxValues values;
  Bytes report_data(64, 0x3d);
  auto report = cc::parse_tdreport(make_report(values, report_data));
  ASSERT_TRUE(report) << report.error().message;
  EXPECT_EQ(report->type, 0x81);
  EXPECT_EQ(report->mrtd, values.mrtd);
  for (size_t i = 0; i < 4; ++i) EXPECT_EQ(report->rtmr[i], values.rtmr[i]) << "RTMR" << i;
  EXPECT_TRUE(std::equal(report->report_data.begin(), report->report_data.end(), report_data.begin()));
}

TEST(TdReport, TruncatedReportRejected) {
  Bytes report = make_report(TdxValues{}, Bytes(64, 0));
  report.pop_back();
  auto parsed = cc::parse_tdreport(report);
  ASSERT_FALSE(parsed);
  EXPECT_EQ(parsed.error().status, Status::invalid);
  EXPECT_NE(parsed.error().message.find("1023 bytes; expected 1024"), std::string::npos) << parsed.error().message;
}

TEST(TdReport, OversizedReportRejected) {
  Bytes report = make_report(TdxValues{}, Bytes(64, 0));
  report.push_back(0);
  auto parsed = cc::parse_tdreport(report);
  ASSERT_FALSE(parsed);
  EXPECT_NE(parsed.error().message.find("1025 bytes"), std::string::npos) << parsed.error().message;
}

TEST(TdReport, NonTdxTypeRejected) {
  auto parsed = cc::parse_tdreport(make_report(TdxValues{}, Bytes(64, 0), 0x00));
  ASSERT_FALSE(parsed);
  EXPECT_NE(parsed.error().message.find("report type 0x00 at offset 0 is not TDX"), std::string::npos)
      << parsed.error().message;
}

TEST(TdReport, EmptyBufferRejected) {
  auto parsed = cc::parse_tdreport(ByteView());
  ASSERT_FALSE(parsed);
  EXPECT_NE(parsed.error().message.find("0 bytes"), std::string::npos) << parsed.error().message;
}

TEST(TdReportRequest, NonceMustComeBack) {
  FakeTdxGuest guest;
  auto report = cc::request_tdreport(guest);
  ASSERT_TRUE(report) << report.error().message;
  EXPECT_EQ(report->rtmr[2], guest.values.rtmr[2]);

  guest.echo_nonce = false;
  auto stale = cc::request_tdreport(guest);
  ASSERT_FALSE(stale);
  EXPECT_NE(stale.error().message.find("REPORTDATA (offset 128) is not the nonce sent"), std::string::npos)
      << stale.error().message;
}

TEST(TdReportRequest, IoctlErrorNamed) {
  FakeTdxGuest guest;
  guest.fail_with = EIO;
  auto report = cc::request_tdreport(guest);
  ASSERT_FALSE(report);
  EXPECT_EQ(report.error().native_code, EIO);
  EXPECT_NE(report.error().message.find("TDX_CMD_GET_REPORT0 on '/dev/tdx_guest (test)' failed"), std::string::npos)
      << report.error().message;
}

TEST(TdReportRequest, MalformedReportFromDeviceRejected) {
  FakeTdxGuest guest;
  guest.type = 0x00;
  auto report = cc::request_tdreport(guest);
  ASSERT_FALSE(report);
  EXPECT_NE(report.error().message.find("returned an invalid TDREPORT"), std::string::npos) << report.error().message;
}

TEST(TdReportBackend, ReadOnlyWithReason) {
  auto guest = std::make_unique<FakeTdxGuest>();
  FakeTdxGuest* device = guest.get();
  auto backend = cc::open_tdreport("tdx", std::move(guest), "no tsm-mr directory in this test");
  ASSERT_TRUE(backend) << backend.error().message;
  const cc::BackendLayout& layout = (*backend)->layout();
  EXPECT_TRUE(layout.read_only);
  EXPECT_EQ(layout.read_only_reason, "no tsm-mr directory in this test");
  EXPECT_EQ(layout.default_register, 2u);

  auto checked = (*backend)->check_register(2);
  ASSERT_FALSE(checked);
  EXPECT_EQ(checked.error().status, Status::read_only);
  int calls_before = device->calls;
  auto extended = (*backend)->extend(2, Digest::filled(48, 0x01));
  ASSERT_FALSE(extended);
  EXPECT_EQ(extended.error().status, Status::read_only);
  EXPECT_EQ(device->calls, calls_before);
}

TEST(TdReportBackend, ReadsRtmrsAndMrtdFromOneReport) {
  auto guest = std::make_unique<FakeTdxGuest>();
  TdxValues values = guest->values;
  FakeTdxGuest* device = guest.get();
  auto backend = cc::open_tdreport("tdx", std::move(guest), "read-only");
  ASSERT_TRUE(backend) << backend.error().message;

  int calls_before = device->calls;
  std::vector<uint32_t> regs = {4, 0, 1, 2, 3};
  auto read = (*backend)->read(regs);
  ASSERT_TRUE(read) << read.error().message;
  EXPECT_EQ(device->calls, calls_before + 1);
  EXPECT_EQ((*read)[0], values.mrtd);
  for (size_t i = 0; i < 4; ++i) EXPECT_EQ((*read)[i + 1], values.rtmr[i]);

  // A value extended between two reads shows up in the next report.
  device->values.rtmr[2] = Digest::filled(48, 0x77);
  std::vector<uint32_t> rtmr2 = {2};
  auto again = (*backend)->read(rtmr2);
  ASSERT_TRUE(again);
  EXPECT_EQ(again->front(), Digest::filled(48, 0x77));
}

TEST(TdReportBackend, BootAggregateSkipsZeroRtmr) {
  auto guest = std::make_unique<FakeTdxGuest>();
  TdxValues values = guest->values;
  auto backend = cc::open_tdreport("tdx", std::move(guest), "read-only");
  ASSERT_TRUE(backend) << backend.error().message;
  auto aggregate = (*backend)->boot_aggregate();
  ASSERT_TRUE(aggregate) << aggregate.error().message;

  Bytes input;
  for (const Digest* value : {&values.mrtd, &values.rtmr[0], &values.rtmr[2]}) {
    input.insert(input.end(), value->view().begin(), value->view().end());
  }
  EXPECT_EQ(aggregate->bank, HashAlgo::sha384);
  EXPECT_EQ(aggregate->digest, *hash_bytes(HashAlgo::sha384, input));
}

TEST(TdReportBackend, BootAggregateOfAllZerosHashesNothing) {
  auto guest = std::make_unique<FakeTdxGuest>();
  guest->values.mrtd = Digest::zeros(48);
  for (Digest& rtmr : guest->values.rtmr) rtmr = Digest::zeros(48);
  auto backend = cc::open_tdreport("tdx", std::move(guest), "read-only");
  ASSERT_TRUE(backend);
  auto aggregate = (*backend)->boot_aggregate();
  ASSERT_TRUE(aggregate);
  EXPECT_EQ(aggregate->digest, *hash_bytes(HashAlgo::sha384, ByteView()));
}

TEST(TdReportBackend, OpenFailsWhenDeviceFails) {
  auto guest = std::make_unique<FakeTdxGuest>();
  guest->fail_with = ENODEV;
  auto backend = cc::open_tdreport("tdx", std::move(guest), "read-only");
  ASSERT_FALSE(backend);
  EXPECT_EQ(backend.error().status, Status::unavailable);
}

// The real ioctl path, on a file that is not the TDX device: the kernel
// returns ENOTTY, and the plugin reports it with the device path.
TEST(TdxPluginTdReport, RegularFileIsNotTheDevice) {
  TempDir dir;
  std::string device = dir.file("tdx_guest");
  write_text_file(device, "");
  auto backend = rot::RotBackend::load(
      "tdx", nlohmann::json{{"path", dir.file("measurements")}, {"device", device}}.dump(), plugin_dir());
  ASSERT_FALSE(backend);
  EXPECT_EQ(backend.error().native_code, ENOTTY);
  EXPECT_NE(backend.error().message.find(fmt::format("TDX_CMD_GET_REPORT0 on '{}' failed", device)),
            std::string::npos)
      << backend.error().message;
}

TEST(TdxPluginTdReport, MissingDeviceUnavailable) {
  TempDir dir;
  auto backend = rot::RotBackend::load(
      "tdx", nlohmann::json{{"interface", "tdreport"}, {"device", dir.file("tdx_guest")}}.dump(), plugin_dir());
  ASSERT_FALSE(backend);
  EXPECT_EQ(backend.error().status, Status::unavailable);
  EXPECT_EQ(backend.error().native_code, ENOENT);
}

}  // namespace
}  // namespace imarot::test
