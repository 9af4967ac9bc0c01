// rotctl on list files: output formats, exit codes and messages.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "imarot/measurement_list.h"
#include "imarot/replay.h"
#include "test_util.h"

namespace imarot {
namespace {

using test::CommandResult;
using test::golden_path;
using test::read_file;
using test::read_text;
using test::run_command;
using test::TempDir;
using test::write_file;

const std::string kRotctl = ROTCTL_PATH;

TEST(RotctlLog, AsciiMatchesKernelFile) {
  CommandResult result = run_command({kRotctl, "log", "--input", golden_path("binary_runtime_measurements")});
  EXPECT_EQ(result.exit_code, 0) << result.err;
  EXPECT_EQ(result.out, read_text(golden_path("ascii_runtime_measurements")));
}

TEST(RotctlLog, BinaryRoundTrip) {
  CommandResult result =
      run_command({kRotctl, "log", "--format", "binary", "--input", golden_path("binary_runtime_measurements")});
  EXPECT_EQ(result.exit_code, 0) << result.err;
  EXPECT_EQ(result.out, read_text(golden_path("binary_runtime_measurements")));
}

TEST(RotctlLog, StandardInput) {
  CommandResult result = run_command({kRotctl, "log", "-i", "-"}, golden_path("binary_runtime_measurements"));
  EXPECT_EQ(result.exit_code, 0) << result.err;
  EXPECT_EQ(result.out, read_text(golden_path("ascii_runtime_measurements")));
}

TEST(RotctlLog, JsonParsesBack) {
  CommandResult result =
      run_command({kRotctl, "log", "--format", "json", "--input", golden_path("binary_runtime_measurements")});
  ASSERT_EQ(result.exit_code, 0) << result.err;
  auto entries = nlohmann::json::parse(result.out);
  ASSERT_EQ(entries.size(), 20u);
  EXPECT_EQ(entries[0]["name"], "boot_aggregate");
  EXPECT_EQ(entries[0]["template"], "ima-sig");
  EXPECT_EQ(entries[0]["digest_algorithm"], "sha256");
  EXPECT_EQ(entries[2]["name"], "/data/bin/hello");
  EXPECT_EQ(entries[2]["digest"], "3d9f2889d6782537624a4e1a10e68a2ddd53e0ee8bac02676f27308f42ec6bf6");
  EXPECT_EQ(entries[19]["violation"], true);
  EXPECT_EQ(entries[19]["template_digest"], std::string(40, '0'));
}

TEST(RotctlLog, FromSkipsEntries) {
  CommandResult result =
      run_command({kRotctl, "log", "--from", "20", "--input", golden_path("binary_runtime_measurements")});
  EXPECT_EQ(result.exit_code, 0) << result.err;
  EXPECT_TRUE(result.out.ends_with("/data/etc/tomtou.conf \n")) << result.out;
  EXPECT_EQ(std::count(result.out.begin(), result.out.end(), '\n'), 1);
}

TEST(RotctlLog, TruncatedFilePrintsPrefixAndFails) {
  TempDir dir;
  Bytes golden = read_file(golden_path("binary_runtime_measurements"));
  write_file(dir.file("cut"), golden.data(), 300);
  CommandResult result = run_command({kRotctl, "log", "--input", dir.file("cut")});
  EXPECT_EQ(result.exit_code, 2);
  EXPECT_NE(result.err.find("entry 3 (byte offset "), std::string::npos) << result.err;
  EXPECT_NE(result.err.find("truncated"), std::string::npos) << result.err;
  EXPECT_NE(result.out.find("boot_aggregate"), std::string::npos);
}

TEST(RotctlLog, MissingFileIsUsageError) {
  CommandResult result = run_command({kRotctl, "log", "--input", "/nonexistent/list"});
  EXPECT_EQ(result.exit_code, 2);
  EXPECT_NE(result.err.find("cannot open '/nonexistent/list'"), std::string::npos) << result.err;
}

TEST(RotctlVerify, GoldenMatches) {
  CommandResult result = run_command({kRotctl, "verify", "--input", golden_path("binary_runtime_measurements"),
                                      "--pcrs", golden_path("pcrs.txt")});
  EXPECT_EQ(result.exit_code, 0) << result.out << result.err;
  EXPECT_NE(result.out.find("OK: 20 entries (2 violations)"), std::string::npos) << result.out;
}

TEST(RotctlVerify, EvmctlFormatWithBank) {
  TempDir dir;
  auto values = parse_register_values(read_text(golden_path("pcrs.txt")), "pcrs.txt", std::nullopt);
  ASSERT_TRUE(values);
  write_file(dir.file("sha256"), format_evmctl_pcrs(*values, HashAlgo::sha256));
  CommandResult result = run_command({kRotctl, "verify", "--json", "--input",
                                      golden_path("binary_runtime_measurements"), "--pcrs",
                                      "sha256," + dir.file("sha256"), "--pcr", "10"});
  ASSERT_EQ(result.exit_code, 0) << result.out << result.err;
  auto report = nlohmann::json::parse(result.out);
  EXPECT_EQ(report["ok"], true);
  ASSERT_EQ(report["registers"].size(), 1u);
  EXPECT_EQ(report["registers"][0]["bank"], "sha256");
}

TEST(RotctlVerify, TamperedListNamesEntry) {
  TempDir dir;
  Bytes golden = read_file(golden_path("binary_runtime_measurements"));
  ParsedList list = parse_binary_list(golden);
  // Flip one bit of /data/bin/hello's file digest (entry 3).
  Bytes tampered = golden;
  tampered[list.offsets[2] + 60] ^= 0x01;
  write_file(dir.file("list"), tampered.data(), tampered.size());
  CommandResult result =
      run_command({kRotctl, "verify", "--input", dir.file("list"), "--pcrs", golden_path("pcrs.txt")});
  EXPECT_EQ(result.exit_code, 1);
  EXPECT_NE(result.out.find("first failing entry is 3"), std::string::npos) << result.out;
  EXPECT_NE(result.out.find("entry 3 ('/data/bin/hello')"), std::string::npos) << result.out;
}

TEST(RotctlVerify, WrongRegisterValueFails) {
  TempDir dir;
  std::string pcrs = read_text(golden_path("pcrs.txt"));
  pcrs.replace(pcrs.find("sha256:10:DA"), 12, "sha256:10:DB");
  write_file(dir.file("pcrs"), pcrs);
  CommandResult result = run_command(
      {kRotctl, "verify", "--input", golden_path("binary_runtime_measurements"), "--pcrs", dir.file("pcrs")});
  EXPECT_EQ(result.exit_code, 1);
  EXPECT_NE(result.out.find("register 10 sha256  MISMATCH"), std::string::npos) << result.out;
}

TEST(RotctlVerify, BadReferenceIsUsageError) {
  TempDir dir;
  write_file(dir.file("pcrs"), "PCR-10: 1234\n");
  CommandResult result = run_command({kRotctl, "verify", "--input", golden_path("binary_runtime_measurements"),
                                      "--pcrs", "sha1," + dir.file("pcrs")});
  EXPECT_EQ(result.exit_code, 2);
  EXPECT_NE(result.err.find(dir.file("pcrs") + ":1:"), std::string::npos) << result.err;
}

TEST(RotctlVerify, UnknownBankIsUsageError) {
  CommandResult result = run_command({kRotctl, "verify", "--input", golden_path("binary_runtime_measurements"),
                                      "--pcrs", golden_path("pcrs.txt"), "--bank", "sha999"});
  EXPECT_EQ(result.exit_code, 2);
  EXPECT_NE(result.err.find("--bank: unknown hash algorithm 'sha999'"), std::string::npos) << result.err;
}

TEST(Rotctl, MissingOptionIsUsageError) {
  CommandResult result = run_command({kRotctl, "verify", "--input", golden_path("binary_runtime_measurements")});
  EXPECT_EQ(result.exit_code, 2);
  EXPECT_NE(result.err.find("--pcrs"), std::string::npos) << result.err;
}

}  // namespace
}  // namespace imarot
