// rotctl pcrs, registers, rtmrs and boot-aggregate as a user runs them,
// against swtpm, checked against tpm2_pcrread on the same emulator.
#include <gtest/gtest.h>

#include <fmt/format.h>

#include <nlohmann/json.hpp>

#include "rot_test_util.h"

namespace imarot::test {
namespace {

CommandResult rotctl(std::vector<std::string> arguments) {
  arguments.insert(arguments.begin(), ROTCTL_PATH);
  return run_command(arguments, std::chrono::seconds(60));
}

class RotctlRegisters : public ::testing::Test {
 protected:
  static SuiteSwtpm& tpm() {
    static SuiteSwtpm instance;
    return instance;
  }
  static void SetUpTestSuite() {
    tpm().start();
    if (!tpm().swtpm) return;
    // Values in a few PCRs, the boot PCRs among them, so that a value shown
    // under the wrong register or bank cannot pass.
    for (uint32_t pcr : {0u, 3u, 7u, 9u, 10u, 23u}) {
      std::vector<std::pair<HashAlgo, Digest>> digests;
      for (HashAlgo bank : {HashAlgo::sha1, HashAlgo::sha256, HashAlgo::sha384, HashAlgo::sha512}) {
        digests.emplace_back(bank, Digest::filled(digest_size(bank), static_cast<uint8_t>(0x10 + pcr)));
      }
      auto extended = pcrextend(tpm().tools, tpm().swtpm->tcti(), pcr, digests);
      if (!extended) tpm().error = extended.error().message;
    }
  }
  static void TearDownTestSuite() { tpm().stop(); }
  void SetUp() override {
    ASSERT_TRUE(tpm().swtpm) << tpm().error;
    ASSERT_TRUE(tpm().error.empty()) << tpm().error;
  }

  std::vector<std::string> target() const {
    return {"--tcti", tpm().swtpm->tcti(), "--plugin-dir", plugin_dir()};
  }
  CommandResult tpm2_pcrread(const std::string& selection) const {
    return run_command({tpm().tools.tpm2_pcrread, "-T", tpm().swtpm->tcti(), selection});
  }
};

TEST_F(RotctlRegisters, PcrsPrintsWhatTpm2PcrreadPrints) {
  std::vector<std::string> arguments = {"pcrs"};
  for (const std::string& argument : target()) arguments.push_back(argument);
  CommandResult ours = rotctl(arguments);
  ASSERT_EQ(ours.exit_code, 0) << ours.err;

  CommandResult theirs = tpm2_pcrread("sha1:all+sha256:all+sha384:all+sha512:all");
  ASSERT_EQ(theirs.exit_code, 0) << theirs.err;
  EXPECT_EQ(ours.out, theirs.out);
}

TEST_F(RotctlRegisters, PcrsSelectionMatchesTpm2Pcrread) {
  std::vector<std::string> arguments = {"pcrs", "--bank", "sha256", "--bank", "sha1", "--pcr", "0-2,10,23"};
  for (const std::string& argument : target()) arguments.push_back(argument);
  CommandResult ours = rotctl(arguments);
  ASSERT_EQ(ours.exit_code, 0) << ours.err;

  CommandResult theirs = tpm2_pcrread("sha256:0,1,2,10,23+sha1:0,1,2,10,23");
  ASSERT_EQ(theirs.exit_code, 0) << theirs.err;
  EXPECT_EQ(ours.out, theirs.out);
  EXPECT_NE(ours.out.find("    10: 0x"), std::string::npos) << ours.out;
}

TEST_F(RotctlRegisters, PcrsJsonParsesBack) {
  std::vector<std::string> arguments = {"pcrs", "--json", "--bank", "sha1,sha384", "--pcr", "3,10,23"};
  for (const std::string& argument : target()) arguments.push_back(argument);
  CommandResult ours = rotctl(arguments);
  ASSERT_EQ(ours.exit_code, 0) << ours.err;
  nlohmann::json parsed = nlohmann::json::parse(ours.out);

  auto dump = pcrread(tpm().tools, tpm().swtpm->tcti(), "sha1:3,10,23+sha384:3,10,23");
  ASSERT_TRUE(dump) << dump.error().message;
  EXPECT_EQ(parsed["backend"], "tpm2");
  EXPECT_EQ(parsed["register_kind"], "PCR");
  EXPECT_EQ(parsed["register_count"], 24);
  EXPECT_EQ(parsed["default_register"], 10);
  ASSERT_EQ(parsed["banks"].size(), 2u);
  size_t values = 0;
  for (const auto& bank : parsed["banks"]) {
    auto algo = hash_algo_from_name(bank["bank"].get<std::string>());
    ASSERT_TRUE(algo);
    EXPECT_TRUE(bank["allocated"].get<bool>());
    ASSERT_EQ(bank["registers"].size(), 3u);
    for (const auto& [index, hex] : bank["registers"].items()) {
      RegisterId id{static_cast<uint32_t>(std::stoul(index)), *algo};
      EXPECT_EQ(hex.get<std::string>(), dump->values.at(id).hex()) << index;
      ++values;
    }
  }
  EXPECT_EQ(values, 6u);
}

TEST_F(RotctlRegisters, RegistersNamesBackendAndKind) {
  std::vector<std::string> arguments = {"registers", "--pcr", "10", "--bank", "sha1"};
  for (const std::string& argument : target()) arguments.push_back(argument);
  CommandResult ours = rotctl(arguments);
  ASSERT_EQ(ours.exit_code, 0) << ours.err;
  auto dump = pcrread(tpm().tools, tpm().swtpm->tcti(), "sha1:10");
  ASSERT_TRUE(dump) << dump.error().message;
  std::string value = dump->values.at(RegisterId{10, HashAlgo::sha1}).hex();
  for (char& c : value) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  EXPECT_EQ(ours.out, fmt::format("backend: tpm2\nregister_kind: PCR\ndefault_register: 10\nregisters:\n"
                                  "  sha1:\n    10: 0x{}\n",
                                  value));
}

TEST_F(RotctlRegisters, BootAggregateMatchesPcrs) {
  auto dump = pcrread(tpm().tools, tpm().swtpm->tcti(), "sha1:0,1,2,3,4,5,6,7+sha256:0,1,2,3,4,5,6,7,8,9");
  ASSERT_TRUE(dump) << dump.error().message;
  auto expected_for = [&](HashAlgo bank, uint32_t count) {
    Bytes concatenated;
    for (uint32_t pcr = 0; pcr < count; ++pcr) {
      const Digest& value = dump->values.at(RegisterId{pcr, bank});
      concatenated.insert(concatenated.end(), value.view().begin(), value.view().end());
    }
    return hash_bytes(bank, concatenated)->hex();
  };

  std::vector<std::string> arguments = {"boot-aggregate"};
  for (const std::string& argument : target()) arguments.push_back(argument);
  CommandResult sha256 = rotctl(arguments);
  ASSERT_EQ(sha256.exit_code, 0) << sha256.err;
  EXPECT_EQ(sha256.out, "sha256:" + expected_for(HashAlgo::sha256, 10) + "\n");

  arguments.push_back("--ima-hash");
  arguments.push_back("sha1");
  arguments.push_back("--json");
  CommandResult sha1 = rotctl(arguments);
  ASSERT_EQ(sha1.exit_code, 0) << sha1.err;
  nlohmann::json parsed = nlohmann::json::parse(sha1.out);
  EXPECT_EQ(parsed["bank"], "sha1");
  EXPECT_EQ(parsed["ima_hash"], "sha1");
  EXPECT_EQ(parsed["boot_aggregate"], expected_for(HashAlgo::sha1, 8));
}

TEST_F(RotctlRegisters, ConfigFromFile) {
  TempDir dir;
  write_text_file(dir.file("tpm2.json"), nlohmann::json{{"tcti", tpm().swtpm->tcti()}}.dump());
  CommandResult result =
      rotctl({"pcrs", "--config", dir.file("tpm2.json"), "--plugin-dir", plugin_dir(), "--pcr", "10", "--bank", "sha1"});
  ASSERT_EQ(result.exit_code, 0) << result.err;
  EXPECT_TRUE(result.out.starts_with("  sha1:\n    10: 0x")) << result.out;
}

TEST(RotctlErrors, UnreachableTpmExitsThree) {
  TempDir dir;
  CommandResult result = rotctl({"pcrs", "--tcti", "swtpm:path=" + dir.file("none"), "--plugin-dir", plugin_dir()});
  EXPECT_EQ(result.exit_code, 3);
  EXPECT_NE(result.err.find("cannot connect to the TPM through TCTI"), std::string::npos) << result.err;
  EXPECT_TRUE(result.out.empty()) << result.out;
}

TEST(RotctlErrors, MissingBackendExitsTwo) {
  CommandResult result = rotctl({"rtmrs", "--backend", "nosuch", "--plugin-dir", plugin_dir()});
  EXPECT_EQ(result.exit_code, 2);
  EXPECT_NE(result.err.find("no RoT backend named 'nosuch'"), std::string::npos) << result.err;
  EXPECT_NE(result.err.find("available: "), std::string::npos) << result.err;
  EXPECT_NE(result.err.find("tpm2"), std::string::npos) << result.err;
}

TEST(RotctlErrors, BrokenConfigExitsTwo) {
  CommandResult result = rotctl({"pcrs", "--config", "{\"tcti\": ", "--plugin-dir", plugin_dir()});
  EXPECT_EQ(result.exit_code, 2);
  EXPECT_NE(result.err.find("is not valid JSON"), std::string::npos) << result.err;

  result = rotctl({"pcrs", "--config", "{\"tcti\": ", "--tcti", "swtpm:path=/nonexistent", "--plugin-dir",
                   plugin_dir()});
  EXPECT_EQ(result.exit_code, 2);
  EXPECT_NE(result.err.find("--config: invalid JSON"), std::string::npos) << result.err;
}

TEST_F(RotctlRegisters, InvalidRegisterListExitsTwo) {
  const std::pair<std::string, std::string> cases[] = {
      {"5-30", "register 30 does not exist"},
      {"ten", "'ten' is not a register number"},
      {"9-3", "range 9-3 is reversed"},
      {"1,,2", "'' is not a register number"},
  };
  for (const auto& [list, expected] : cases) {
    std::vector<std::string> arguments = {"pcrs", "--pcr", list};
    for (const std::string& argument : target()) arguments.push_back(argument);
    CommandResult result = rotctl(arguments);
    EXPECT_EQ(result.exit_code, 2) << list;
    EXPECT_NE(result.err.find(expected), std::string::npos) << result.err;
  }
}

TEST_F(RotctlRegisters, UnknownBankExitsTwo) {
  std::vector<std::string> arguments = {"pcrs", "--bank", "sha3-256"};
  for (const std::string& argument : target()) arguments.push_back(argument);
  CommandResult result = rotctl(arguments);
  EXPECT_EQ(result.exit_code, 2);
  EXPECT_NE(result.err.find("no sha3-256 PCR bank"), std::string::npos) << result.err;
}

class RotctlTwoBanks : public ::testing::Test {
 protected:
  static SuiteSwtpm& tpm() {
    static SuiteSwtpm instance;
    return instance;
  }
  static void SetUpTestSuite() { tpm().start(SwtpmOptions{.pcr_banks = "sha1,sha256"}); }
  static void TearDownTestSuite() { tpm().stop(); }
  void SetUp() override { ASSERT_TRUE(tpm().swtpm) << tpm().error; }
};

TEST_F(RotctlTwoBanks, UnallocatedBankShownAsSuch) {
  CommandResult text = rotctl({"pcrs", "--tcti", tpm().swtpm->tcti(), "--plugin-dir", plugin_dir(), "--bank",
                               "sha384,sha256", "--pcr", "10"});
  ASSERT_EQ(text.exit_code, 0) << text.err;
  EXPECT_EQ(text.out, "  sha384: unallocated\n  sha256:\n    10: 0x" + std::string(64, '0') + "\n");

  CommandResult json = rotctl({"pcrs", "--tcti", tpm().swtpm->tcti(), "--plugin-dir", plugin_dir(), "--bank",
                               "sha384", "--pcr", "10", "--json"});
  ASSERT_EQ(json.exit_code, 0) << json.err;
  nlohmann::json parsed = nlohmann::json::parse(json.out);
  ASSERT_EQ(parsed["banks"].size(), 1u);
  EXPECT_FALSE(parsed["banks"][0]["allocated"].get<bool>());
  EXPECT_TRUE(parsed["banks"][0]["registers"].empty());
}

TEST_F(RotctlTwoBanks, DefaultBanksAreTheAllocatedOnes) {
  CommandResult text =
      rotctl({"pcrs", "--tcti", tpm().swtpm->tcti(), "--plugin-dir", plugin_dir(), "--pcr", "0"});
  ASSERT_EQ(text.exit_code, 0) << text.err;
  EXPECT_EQ(text.out, "  sha1:\n    0 : 0x" + std::string(40, '0') + "\n  sha256:\n    0 : 0x" + std::string(64, '0') +
                          "\n");
}

}  // namespace
}  // namespace imarot::test
