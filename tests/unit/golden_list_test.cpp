// The kernel's own lists (Linux 6.1, swtpm with sha1/sha256/sha384/sha512
// banks) must round-trip byte for byte and replay to the captured PCRs.
#include <gtest/gtest.h>

#include "imarot/measurement_list.h"
#include "imarot/replay.h"
#include "test_util.h"

namespace imarot {
namespace {

using test::golden_path;
using test::read_file;
using test::read_text;

class GoldenList : public ::testing::Test {
 protected:
  void SetUp() override {
    binary_ = read_file(golden_path("binary_runtime_measurements"));
    ASSERT_FALSE(binary_.empty());
    list_ = parse_binary_list(binary_);
    ASSERT_FALSE(list_.error) << format_parse_error(*list_.error);
    auto pcrs = parse_register_values(read_text(golden_path("pcrs.txt")), "pcrs.txt", std::nullopt);
    ASSERT_TRUE(pcrs) << pcrs.error().message;
    pcrs_ = *pcrs;
  }

  Bytes binary_;
  ParsedList list_;
  RegisterValues pcrs_;
};

TEST_F(GoldenList, ParsesEveryEntry) {
  EXPECT_EQ(list_.entries.size(), 20u);
  EXPECT_EQ(list_.entries.front().tmpl->name, "ima-sig");
}

TEST_F(GoldenList, BinaryRoundTripIsByteIdentical) { EXPECT_EQ(serialize_binary(list_.entries), binary_); }

TEST_F(GoldenList, AsciiIsByteIdentical) {
  EXPECT_EQ(serialize_ascii(list_.entries), read_text(golden_path("ascii_runtime_measurements")));
}

TEST_F(GoldenList, TemplateDigestsMatchTemplateData) {
  for (size_t i = 0; i < list_.entries.size(); ++i) {
    const Entry& entry = list_.entries[i];
    auto digest = template_digest(entry, HashAlgo::sha1);
    ASSERT_TRUE(digest);
    EXPECT_EQ(digest->hex(), entry.stored_digest().hex()) << "entry " << i + 1;
  }
}

TEST_F(GoldenList, ReplayMatchesSha1AndSha256) {
  const std::vector<HashAlgo> banks = {HashAlgo::sha1, HashAlgo::sha256};
  auto replayed = replay_list(list_.entries, banks);
  ASSERT_TRUE(replayed);
  for (HashAlgo bank : banks) {
    RegisterId pcr10{10, bank};
    ASSERT_EQ(replayed->count(pcr10), 1u);
    EXPECT_EQ(replayed->at(pcr10).hex(), pcrs_.at(pcr10).hex()) << hash_name(bank);
  }
}

// The captured kernel could not allocate sha384 and sha512 at boot ("ima:
// Can not allocate sha384" on its console), so it extended those banks with
// the SHA-1 template digest padded with zeros.
TEST_F(GoldenList, ReplayPaddedSha1ForSha384AndSha512) {
  for (HashAlgo bank : {HashAlgo::sha384, HashAlgo::sha512}) {
    Digest value = Digest::zeros(digest_size(bank));
    for (const Entry& entry : list_.entries) {
      auto digest = bank_extend_digest(entry, bank, BankDigest::padded_sha1);
      ASSERT_TRUE(digest);
      value = *extend_value(bank, value, *digest);
    }
    EXPECT_EQ(value.hex(), pcrs_.at(RegisterId{10, bank}).hex()) << hash_name(bank);
  }
}

TEST_F(GoldenList, VerifyPassesWithViolations) {
  VerifyReport report = verify_list(list_, pcrs_, {});
  for (const auto& failure : report.failures) ADD_FAILURE() << failure.message;
  EXPECT_TRUE(report.ok());
  EXPECT_EQ(report.violations, 2u);
  ASSERT_EQ(report.registers.size(), 4u);
  for (const auto& check : report.registers) {
    bool padded = check.id.bank == HashAlgo::sha384 || check.id.bank == HashAlgo::sha512;
    EXPECT_EQ(check.mode, padded ? BankDigest::padded_sha1 : BankDigest::own) << hash_name(check.id.bank);
  }
}

TEST_F(GoldenList, BootAggregateFromPcrs) {
  std::vector<Digest> pcrs;
  for (uint32_t i = 0; i < 10; ++i) pcrs.push_back(pcrs_.at(RegisterId{i, HashAlgo::sha256}));
  auto aggregate = compute_boot_aggregate(HashAlgo::sha256, pcrs);
  ASSERT_TRUE(aggregate);
  auto fields = decode_fields(list_.entries.front());
  ASSERT_TRUE(fields);
  EXPECT_EQ(fields->name, "boot_aggregate");
  EXPECT_EQ(fields->digest_algo_name, "sha256");
  EXPECT_EQ(aggregate->hex(), to_hex(fields->file_digest));
}

TEST_F(GoldenList, RebuiltTemplateDataIsIdentical) {
  for (size_t i = 0; i < list_.entries.size(); ++i) {
    const Entry& entry = list_.entries[i];
    auto fields = decode_fields(entry);
    ASSERT_TRUE(fields);
    TemplateInput input;
    input.digest_algo = *fields->digest_algo;
    input.digest = Digest(ByteView(fields->file_digest));
    input.name = fields->name;
    input.ima_xattr = fields->signature;
    input.buffer = fields->buffer;
    input.violation = entry.is_violation();
    auto rebuilt = make_entry(entry.pcr, *entry.tmpl, input);
    ASSERT_TRUE(rebuilt);
    EXPECT_EQ(rebuilt->data, entry.data) << "entry " << i + 1;
    EXPECT_EQ(rebuilt->stored_digest().hex(), entry.stored_digest().hex()) << "entry " << i + 1;
  }
}

}  // namespace
}  // namespace imarot
