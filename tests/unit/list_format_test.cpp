// Byte-level checks of templates, records and replay against values worked
// out by hand from the kernel's format rules (python hashlib and openssl
// gave the same digests).
#include <gtest/gtest.h>

#include "imarot/measurement_list.h"
#include "imarot/replay.h"
#include "test_util.h"

namespace imarot {
namespace {

using test::digest_from_hex;

const char* kEmptySha256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
const char* kEmptySha1 = "da39a3ee5e6b4b0d3255bfef95601890afd80709";

TemplateInput true_input() {
  TemplateInput input;
  input.digest_algo = HashAlgo::sha256;
  input.digest = digest_from_hex(kEmptySha256);
  input.name = "/usr/bin/true";
  return input;
}

Entry boot_aggregate_without_tpm() {
  TemplateInput input;
  input.digest_algo = HashAlgo::sha256;
  input.digest = Digest::zeros(32);
  input.name = "boot_aggregate";
  return *make_entry(10, *find_builtin_template("ima-ng"), input);
}

TEST(TemplateData, ImaNgLayout) {
  Entry entry = *make_entry(10, *find_builtin_template("ima-ng"), true_input());
  EXPECT_EQ(to_hex(entry.data),
            "28000000736861323536" "3a00" + std::string(kEmptySha256) + "0e0000002f7573722f62696e2f7472756500");
  EXPECT_EQ(entry.stored_digest().hex(), "c2a86c2d5d68767d97b7641c8cc73dff5f45bd76");
  EXPECT_EQ(template_digest(entry, HashAlgo::sha256)->hex(),
            "63a6f4911f3be978c7aa27b18edb32db3b35132be46da5511e72ba821e0fb0cc");
}

TEST(BinaryRecord, ImaNgIs100Bytes) {
  Entry entry = *make_entry(10, *find_builtin_template("ima-ng"), true_input());
  Bytes record;
  append_binary_record(record, entry);
  ASSERT_EQ(record.size(), 100u);
  EXPECT_EQ(to_hex(ByteView(record).first(42)),
            "0a000000c2a86c2d5d68767d97b7641c8cc73dff5f45bd7606000000696d612d6e673e00000028000000");
}

TEST(AsciiLine, ImaNg) {
  Entry entry = *make_entry(10, *find_builtin_template("ima-ng"), true_input());
  std::string line;
  append_ascii_line(line, entry);
  EXPECT_EQ(line, "10 c2a86c2d5d68767d97b7641c8cc73dff5f45bd76 ima-ng sha256:" + std::string(kEmptySha256) +
                      " /usr/bin/true\n");
}

TEST(AsciiLine, ImaSigWithoutSignatureEndsInSpace) {
  Entry entry = *make_entry(10, *find_builtin_template("ima-sig"), true_input());
  EXPECT_EQ(entry.stored_digest().hex(), "cdcca53af2dfee4a12c4c08db5158995eb6a6fa0");
  std::string line;
  append_ascii_line(line, entry);
  EXPECT_TRUE(line.ends_with(" /usr/bin/true \n")) << line;
}

TEST(AsciiLine, PcrIsRightAlignedInTwoColumns) {
  Entry entry = *make_entry(4, *find_builtin_template("ima-ng"), true_input());
  std::string line;
  append_ascii_line(line, entry);
  EXPECT_EQ(line.substr(0, 3), " 4 ");
}

TEST(BootAggregate, NoTpmDigests) {
  Entry entry = boot_aggregate_without_tpm();
  EXPECT_EQ(entry.stored_digest().hex(), "0adefe762c149c7cec19da62f0da1297fcfbffff");
  EXPECT_EQ(template_digest(entry, HashAlgo::sha256)->hex(),
            "36f1cd67a730bc4137870c4d00dbc7430b51b1ebdaa130744297cf65339078a0");
}

TEST(Replay, BootAggregateThenTrue) {
  std::vector<Entry> entries = {boot_aggregate_without_tpm(),
                                *make_entry(10, *find_builtin_template("ima-ng"), true_input())};
  const std::vector<HashAlgo> banks = {HashAlgo::sha1, HashAlgo::sha256};
  auto values = replay_list(entries, banks);
  ASSERT_TRUE(values);
  EXPECT_EQ(values->at(RegisterId{10, HashAlgo::sha1}).hex(), "0d3509dfee2f2471b322143cd71d664cbe6db26e");
  EXPECT_EQ(values->at(RegisterId{10, HashAlgo::sha256}).hex(),
            "b94d69e54df62c6311bebf59b11be21e31c888f65d8b659d7fc0fe125fafb4a5");
}

TEST(LegacyIma, DigestsAndRecord) {
  TemplateInput input;
  input.digest_algo = HashAlgo::sha1;
  input.digest = digest_from_hex(kEmptySha1);
  input.name = "/usr/bin/true";
  Entry entry = *make_entry(10, *find_builtin_template("ima"), input);
  EXPECT_EQ(entry.stored_digest().hex(), "cefeeb75ceb41a96d859fa102943c362c5a59106");
  EXPECT_EQ(template_digest(entry, HashAlgo::sha256)->hex(),
            "14a6e79a991bad030b8dc1d56e9a3479975996348301605bf17b7846e6f033db");

  Bytes record;
  append_binary_record(record, entry);
  EXPECT_EQ(to_hex(record), "0a000000cefeeb75ceb41a96d859fa102943c362c5a5910603000000696d61" + std::string(kEmptySha1) +
                                "0d0000002f7573722f62696e2f74727565");
  ParsedList parsed = parse_binary_list(record);
  ASSERT_FALSE(parsed.error);
  ASSERT_EQ(parsed.entries.size(), 1u);
  EXPECT_EQ(parsed.entries[0].data, entry.data);
}

TEST(LegacyIma, LongNameFallsBackToFinalComponent) {
  TemplateInput input;
  input.digest_algo = HashAlgo::sha1;
  input.digest = digest_from_hex(kEmptySha1);
  input.name = "/" + std::string(300, 'a') + "/final name";
  input.final_component = "final name";
  Entry legacy = *make_entry(10, *find_builtin_template("ima"), input);
  EXPECT_EQ(decode_fields(legacy)->name, "final_name");
  Entry ng = *make_entry(10, *find_builtin_template("ima-ng"), input);
  EXPECT_EQ(decode_fields(ng)->name, "/" + std::string(300, 'a') + "/final_name");
}

TEST(LegacyIma, Sha256FileGetsSha1Digest) {
  TemplateInput input = true_input();
  input.legacy_digest = digest_from_hex(kEmptySha1);
  Entry entry = *make_entry(10, *find_builtin_template("ima"), input);
  EXPECT_EQ(entry.stored_digest().hex(), "cefeeb75ceb41a96d859fa102943c362c5a59106");
}

TEST(Violation, ZeroDigestsAndFfExtend) {
  TemplateInput input = true_input();
  input.violation = true;
  input.ima_xattr = {0x03, 0x02, 0x04};  // a signature that a violation must not carry
  Entry entry = *make_entry(10, *find_builtin_template("ima-sig"), input);
  EXPECT_TRUE(entry.is_violation());
  std::string line;
  append_ascii_line(line, entry);
  EXPECT_EQ(line, "10 " + std::string(40, '0') + " ima-sig sha256:" + std::string(64, '0') + " /usr/bin/true \n");
  EXPECT_EQ(extend_digest(entry, HashAlgo::sha384)->hex(), std::string(96, 'f'));
  EXPECT_EQ(template_digest(entry, HashAlgo::sha256)->hex(), std::string(64, '0'));
}

TEST(Violation, LegacyDigestIsTwentyZeroBytes) {
  TemplateInput input = true_input();
  input.violation = true;
  Entry entry = *make_entry(10, *find_builtin_template("ima"), input);
  EXPECT_EQ(to_hex(decode_fields(entry)->file_digest), std::string(40, '0'));
}

TEST(DigestField, SizesPerAlgorithm) {
  const std::pair<HashAlgo, size_t> cases[] = {{HashAlgo::sha1, 26},   {HashAlgo::sha256, 40}, {HashAlgo::sha384, 56},
                                               {HashAlgo::sha512, 72}, {HashAlgo::md5, 21},    {HashAlgo::sm3, 37}};
  for (auto [algo, field_length] : cases) {
    TemplateInput input;
    input.digest_algo = algo;
    input.digest = Digest::zeros(digest_size(algo));
    input.name = "x";
    Entry entry = *make_entry(10, *find_builtin_template("ima-ng"), input);
    EXPECT_EQ(entry.data[0], field_length) << hash_name(algo);
  }
}

TEST(DigestField, NgV2Prefix) {
  TemplateInput input = true_input();
  input.digest_type = "verity";
  Entry entry = *make_entry(10, *find_builtin_template("ima-ngv2"), input);
  EXPECT_EQ(entry.data[0], 47);  // "verity:sha256:" NUL + 32
  std::string line;
  append_ascii_line(line, entry);
  EXPECT_NE(line.find(" verity:sha256:e3b0c442"), std::string::npos) << line;
}

TEST(CustomTemplate, FormatNameAndIntegers) {
  auto tmpl = resolve_template("d-ng|n-ng|iuid|igid|imode");
  ASSERT_TRUE(tmpl);
  TemplateInput input = true_input();
  input.uid = 1000;
  input.gid = 100;
  input.mode = 0100755;
  Entry entry = *make_entry(10, **tmpl, input);
  std::string line;
  append_ascii_line(line, entry);
  EXPECT_NE(line.find(" d-ng|n-ng|iuid|igid|imode sha256:"), std::string::npos) << line;
  EXPECT_TRUE(line.ends_with(" /usr/bin/true 1000 100 33261\n")) << line;

  Bytes binary = serialize_binary({entry});
  ParsedList parsed = parse_binary_list(binary);
  ASSERT_FALSE(parsed.error);
  EXPECT_EQ(parsed.entries[0].tmpl, *tmpl);
}

TEST(CustomTemplate, UnknownFieldRejected) {
  auto tmpl = resolve_template("d-ng|n-ng|bogus");
  ASSERT_FALSE(tmpl);
  EXPECT_NE(tmpl.error().message.find("'bogus'"), std::string::npos);
}

TEST(ImaBuf, AsciiShowsBufferHex) {
  TemplateInput input;
  input.digest_algo = HashAlgo::sha256;
  input.buffer = {'6', '.', '1'};
  input.digest = *hash_bytes(HashAlgo::sha256, input.buffer);
  input.name = "kernel_version";
  Entry entry = *make_entry(10, *find_builtin_template("ima-buf"), input);
  std::string line;
  append_ascii_line(line, entry);
  EXPECT_TRUE(line.ends_with(" kernel_version 362e31\n")) << line;
}

}  // namespace
}  // namespace imarot
