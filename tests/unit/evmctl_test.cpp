// evmctl (ima-evm-utils) must accept the lists imarotd writes, and reject
// them once a register value is wrong.
#include <gtest/gtest.h>

#include "imarot/measurement_list.h"
#include "imarot/replay.h"
#include "test_util.h"

namespace imarot {
namespace {

using test::CommandResult;
using test::golden_path;
using test::read_text;
using test::run_command;
using test::TempDir;
using test::write_file;

std::vector<Entry> sample_list() {
  std::vector<Entry> entries;
  TemplateInput boot;
  boot.digest = *hash_bytes(HashAlgo::sha256, Bytes(320, 0x11));
  boot.name = "boot_aggregate";
  entries.push_back(*make_entry(10, *find_builtin_template("ima-ng"), boot));

  for (int i = 0; i < 50; ++i) {
    TemplateInput input;
    std::string content = "file " + std::to_string(i);
    input.digest = *hash_bytes(HashAlgo::sha256, ByteView(reinterpret_cast<const uint8_t*>(content.data()),
                                                          content.size()));
    input.name = "/usr/lib/x/file " + std::to_string(i) + (i % 7 == 0 ? "\nnewline" : "");
    if (i % 5 == 0) input.ima_xattr = {0x03, 0x02, 0x04, 0xde, 0xad, 0xbe, 0xef, 0x00, 0x02, 0x01, 0x02};
    input.violation = i % 11 == 10;
    entries.push_back(*make_entry(10, *find_builtin_template(i % 2 == 0 ? "ima-sig" : "ima-ng"), input));
  }
  return entries;
}

CommandResult run_evmctl(const TempDir& dir, const std::vector<Entry>& entries, const RegisterValues& values) {
  Bytes binary = serialize_binary(entries);
  write_file(dir.file("list"), binary.data(), binary.size());
  write_file(dir.file("sha1"), format_evmctl_pcrs(values, HashAlgo::sha1));
  write_file(dir.file("sha256"), format_evmctl_pcrs(values, HashAlgo::sha256));
  return run_command({"evmctl", "ima_measurement", "--ignore-violations", "--pcrs", "sha1," + dir.file("sha1"),
                      "--pcrs", "sha256," + dir.file("sha256"), dir.file("list")});
}

TEST(Evmctl, AcceptsListsWeWrite) {
  TempDir dir;
  std::vector<Entry> entries = sample_list();
  auto values = replay_list(entries, std::vector<HashAlgo>{HashAlgo::sha1, HashAlgo::sha256});
  ASSERT_TRUE(values);
  CommandResult result = run_evmctl(dir, entries, *values);
  ASSERT_NE(result.exit_code, 127) << "evmctl is not installed: run scripts/install-deps.sh";
  EXPECT_EQ(result.exit_code, 0) << result.out << result.err;
}

TEST(Evmctl, RejectsWrongRegister) {
  TempDir dir;
  std::vector<Entry> entries = sample_list();
  auto values = replay_list(entries, std::vector<HashAlgo>{HashAlgo::sha1, HashAlgo::sha256});
  ASSERT_TRUE(values);
  Digest& pcr = values->at(RegisterId{10, HashAlgo::sha256});
  pcr.data()[0] ^= 1;
  CommandResult result = run_evmctl(dir, entries, *values);
  EXPECT_NE(result.exit_code, 0) << result.out << result.err;
}

TEST(Evmctl, AcceptsGoldenList) {
  TempDir dir;
  auto values = parse_register_values(read_text(golden_path("pcrs.txt")), "pcrs.txt", std::nullopt);
  ASSERT_TRUE(values);
  write_file(dir.file("sha256"), format_evmctl_pcrs(*values, HashAlgo::sha256));
  CommandResult result = run_command({"evmctl", "ima_measurement", "--ignore-violations", "--pcrs",
                                      "sha256," + dir.file("sha256"), golden_path("binary_runtime_measurements")});
  EXPECT_EQ(result.exit_code, 0) << result.out << result.err;
}

}  // namespace
}  // namespace imarot
