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

TEST(RotctlLog, FromPastEndIsUsageError) {
  std::string list = golden_path("binary_runtime_measurements");
  CommandResult beyond = run_command({kRotctl, "log", "--from", "1000", "--input", list});
  EXPECT_EQ(beyond.exit_code, 2);
  EXPECT_EQ(beyond.out, "");
  EXPECT_NE(beyond.err.find("--from 1000: the list has 20 entries"), std::string::npos) << beyond.err;

  // The entry after the last one is still allowed and prints nothing, as
  // through the daemon.
  CommandResult after_last = run_command({kRotctl, "log", "--from", "21", "--input", list});
  EXPECT_EQ(after_last.exit_code, 0) << after_last.err;
  EXPECT_EQ(after_last.out, "");
}

TEST(RotctlLog, FromPastEndOfOneEntry) {
  TempDir dir;
  Bytes golden = read_file(golden_path("binary_runtime_measurements"));
  ParsedList list = parse_binary_list(golden);
  ASSERT_GE(list.offsets.size(), 2u);
  write_file(dir.file("one"), golden.data(), list.offsets[1]);
  CommandResult result = run_command({kRotctl, "log", "--from", "3", "--input", dir.file("one")});
  EXPECT_EQ(result.exit_code, 2);
  EXPECT_NE(result.err.find("--from 3: the list has 1 entry\n"), std::string::npos) << result.err;
}

TEST(RotctlLog, HelpShowsFormatDefault) {
  CommandResult result = run_command({kRotctl, "log", "--help"});
  ASSERT_EQ(result.exit_code, 0) << result.err;
  size_t format = result.out.find("--format");
  ASSERT_NE(format, std::string::npos) << result.out;
  std::string line = result.out.substr(format, result.out.find('\n', format) - format);
  EXPECT_NE(line.find("=ascii"), std::string::npos) << line;
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

TEST(RotctlVerify, EmptyListFails) {
  TempDir dir;
  write_file(dir.file("empty.bin"), "");
  CommandResult result = run_command({kRotctl, "verify", "--input", dir.file("empty.bin"), "--pcrs",
                                      golden_path("pcrs.txt")});
  EXPECT_EQ(result.exit_code, 1) << result.out << result.err;
  EXPECT_EQ(result.out.find("OK:"), std::string::npos) << result.out;
  EXPECT_NE(result.out.find("failed: the list has no entries, so nothing was verified"), std::string::npos)
      << result.out;
  EXPECT_NE(result.out.find("register 10, the kernel's default IMA register, is not zero"), std::string::npos)
      << result.out;
  EXPECT_TRUE(result.out.ends_with("FAILED\n")) << result.out;

  CommandResult json = run_command({kRotctl, "verify", "--json", "--input", dir.file("empty.bin"), "--pcrs",
                                    golden_path("pcrs.txt")});
  EXPECT_EQ(json.exit_code, 1) << json.err;
  auto report = nlohmann::json::parse(json.out);
  EXPECT_EQ(report["ok"], false);
  EXPECT_EQ(report["entries"], 0);
  EXPECT_EQ(report["registers"].size(), 0u);
  EXPECT_EQ(report["failures"].size(), 1u);
}

TEST(RotctlVerify, EmptyListFailsForOneRegister) {
  TempDir dir;
  write_file(dir.file("empty.bin"), "");
  CommandResult result = run_command({kRotctl, "verify", "--input", dir.file("empty.bin"), "--pcrs",
                                      golden_path("pcrs.txt"), "--pcr", "10"});
  EXPECT_EQ(result.exit_code, 1) << result.out << result.err;
  EXPECT_NE(result.out.find("the list has no entries"), std::string::npos) << result.out;
}

TEST(RotctlVerify, OneEntryIsSingular) {
  TempDir dir;
  TemplateInput input;
  input.digest = *hash_bytes(HashAlgo::sha256, Bytes(4, 0x01));
  input.name = "/usr/bin/one";
  std::vector<Entry> entries = {*make_entry(10, *find_builtin_template("ima-ng"), input)};
  Bytes binary = serialize_binary(entries);
  write_file(dir.file("list"), binary.data(), binary.size());
  auto values = replay_list(entries, std::vector<HashAlgo>{HashAlgo::sha256});
  ASSERT_TRUE(values);
  write_file(dir.file("pcrs"), format_evmctl_pcrs(*values, HashAlgo::sha256));

  CommandResult result = run_command(
      {kRotctl, "verify", "--input", dir.file("list"), "--pcrs", "sha256," + dir.file("pcrs"), "--pcr", "10"});
  EXPECT_EQ(result.exit_code, 0) << result.out << result.err;
  EXPECT_NE(result.out.find("OK: 1 entry (0 violations) verified against 1 register\n"), std::string::npos)
      << result.out;
}

TEST(RotctlRegisters, MissingPluginDirIsNamed) {
  TempDir dir;
  std::string missing = dir.file("no-plugins");
  CommandResult result = run_command({kRotctl, "pcrs", "--plugin-dir", missing});
  EXPECT_EQ(result.exit_code, 2);
  EXPECT_NE(result.err.find("--plugin-dir '" + missing + "' does not exist"), std::string::npos) << result.err;
  EXPECT_NE(result.err.find("with --plugin-dir DIR or IMAROTD_PLUGIN_DIR"), std::string::npos) << result.err;
  EXPECT_EQ(result.err.find("plugin directory setting"), std::string::npos) << result.err;

  write_file(dir.file("file"), "not a directory");
  CommandResult file = run_command({kRotctl, "registers", "--plugin-dir", dir.file("file")});
  EXPECT_EQ(file.exit_code, 2);
  EXPECT_NE(file.err.find("--plugin-dir '" + dir.file("file") + "' is not a directory"), std::string::npos)
      << file.err;
}

TEST(Rotctl, BusHelpUsesNeutralExample) {
  for (const std::string command : {"status", "log", "pcrs", "rtmrs", "registers", "boot-aggregate", "verify"}) {
    CommandResult result = run_command({kRotctl, command, "--help"});
    ASSERT_EQ(result.exit_code, 0) << command << ": " << result.err;
    EXPECT_NE(result.out.find("unix:path=/run/user/1000/bus"), std::string::npos) << command << ": " << result.out;
    EXPECT_EQ(result.out.find("imarot-test"), std::string::npos) << command << ": " << result.out;
  }
}

TEST(Rotctl, MissingOptionIsUsageError) {
  CommandResult result = run_command({kRotctl, "verify", "--input", golden_path("binary_runtime_measurements")});
  EXPECT_EQ(result.exit_code, 2);
  EXPECT_NE(result.err.find("--pcrs"), std::string::npos) << result.err;
}

}  // namespace
}  // namespace imarot
