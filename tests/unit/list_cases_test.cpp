// Cases seen in the field: odd names, odd signatures, TPMs without SHA-1,
// hostile list files and tampered lists.
#include <gtest/gtest.h>

#include "imarot/measurement_list.h"
#include "imarot/replay.h"
#include "test_util.h"

namespace imarot {
namespace {

using test::golden_path;
using test::read_file;
using test::read_text;

Entry file_entry(const std::string& name, const std::string& content, const char* tmpl = "ima-sig",
                 Bytes ima_xattr = {}) {
  TemplateInput input;
  input.digest_algo = HashAlgo::sha256;
  input.digest = *hash_bytes(HashAlgo::sha256, ByteView(reinterpret_cast<const uint8_t*>(content.data()),
                                                        content.size()));
  input.name = name;
  input.ima_xattr = std::move(ima_xattr);
  return *make_entry(10, *find_builtin_template(tmpl), input);
}

RegisterValues reference_for(const std::vector<Entry>& entries, std::vector<HashAlgo> banks) {
  return *replay_list(entries, banks);
}

TEST(Verify, EmptyListFails) {
  RegisterValues reference = reference_for({file_entry("/bin/a", "a")}, {HashAlgo::sha256});
  VerifyReport report = verify_list(ParsedList{}, reference, {});
  EXPECT_FALSE(report.ok());
  ASSERT_EQ(report.failures.size(), 1u);
  EXPECT_NE(report.failures[0].message.find("the list has no entries, so nothing was verified"), std::string::npos)
      << report.failures[0].message;
  EXPECT_NE(report.failures[0].message.find("register 10, the kernel's default IMA register, is not zero in bank "
                                            "sha256"),
            std::string::npos)
      << report.failures[0].message;
  EXPECT_TRUE(report.registers.empty());
}

TEST(Verify, EmptyListFailsAgainstZeroRegisters) {
  RegisterValues zeros = {{RegisterId{10, HashAlgo::sha256}, Digest::zeros(32)}};
  VerifyReport report = verify_list(ParsedList{}, zeros, {});
  EXPECT_FALSE(report.ok());
  ASSERT_EQ(report.failures.size(), 1u);
  EXPECT_EQ(report.failures[0].message.find("register 10"), std::string::npos) << report.failures[0].message;
}

TEST(Verify, UnextendedDefaultRegisterIsReported) {
  // The list extends register 11 only; the reference's register 10 is not
  // zero, so entries extended into it are not in the list.
  TemplateInput input;
  input.digest = *hash_bytes(HashAlgo::sha256, Bytes(8, 0x22));
  input.name = "/bin/b";
  std::vector<Entry> entries = {*make_entry(11, *find_builtin_template("ima-ng"), input)};
  RegisterValues reference = reference_for(entries, {HashAlgo::sha256});
  reference[RegisterId{10, HashAlgo::sha256}] = Digest::filled(32, 0x10);

  VerifyReport report = verify_list(parse_binary_list(serialize_binary(entries)), reference, {});
  EXPECT_TRUE(report.ok());
  ASSERT_EQ(report.registers.size(), 1u);
  EXPECT_EQ(report.registers[0].id.index, 11u);
  ASSERT_EQ(report.warnings.size(), 1u);
  EXPECT_EQ(report.warnings[0].message.rfind("register 10, the kernel's default IMA register", 0), 0u)
      << report.warnings[0].message;

  VerifyOptions only_11;
  only_11.pcr = 11;
  EXPECT_TRUE(verify_list(parse_binary_list(serialize_binary(entries)), reference, only_11).warnings.empty());
}

TEST(Names, SpaceAndUnderscoreCollide) {
  Entry spaced = file_entry("/opt/my prog", "one");
  Entry underscored = file_entry("/opt/my_prog", "two");
  EXPECT_EQ(decode_fields(spaced)->name, "/opt/my_prog");
  EXPECT_EQ(decode_fields(underscored)->name, "/opt/my_prog");
  EXPECT_NE(spaced.stored_digest().hex(), underscored.stored_digest().hex());

  std::vector<Entry> entries = {spaced, underscored};
  ParsedList list = parse_binary_list(serialize_binary(entries));
  ASSERT_FALSE(list.error);
  VerifyReport report = verify_list(list, reference_for(entries, {HashAlgo::sha256}), {});
  EXPECT_TRUE(report.ok());
}

TEST(Names, NewlineAndBackslashStayRaw) {
  Entry entry = file_entry("/etc/new\nline\\x", "content");
  std::string line;
  append_ascii_line(line, entry);
  EXPECT_NE(line.find(" /etc/new\nline\\x \n"), std::string::npos) << line;

  Bytes binary = serialize_binary({entry});
  ParsedList list = parse_binary_list(binary);
  ASSERT_FALSE(list.error);
  EXPECT_EQ(serialize_binary(list.entries), binary);
  EXPECT_EQ(decode_fields(list.entries[0])->name, "/etc/new\nline\\x");
}

TEST(Signature, MalformedIsCarriedByteForByte) {
  // A v2 signature header whose sig_size is in the wrong byte order.
  Bytes xattr = {0x03, 0x02, 0x04, 0x11, 0x22, 0x33, 0x44, 0x04, 0x00, 0xaa, 0xbb, 0xcc, 0xdd};
  Entry entry = file_entry("/etc/odd.conf", "x", "ima-sig", xattr);
  EXPECT_EQ(decode_fields(entry)->signature, xattr);

  std::vector<Entry> entries = {entry};
  ParsedList list = parse_binary_list(serialize_binary(entries));
  VerifyReport report = verify_list(list, reference_for(entries, {HashAlgo::sha256}), {});
  EXPECT_TRUE(report.ok());
  ASSERT_EQ(report.warnings.size(), 1u);
  EXPECT_NE(report.warnings[0].message.find("signature does not parse"), std::string::npos);
}

TEST(Signature, HashXattrGivesEmptySigField) {
  // IMA_XATTR_DIGEST_NG (0x04) is a hash, not a signature.
  Bytes xattr = {0x04, 0x04};
  xattr.resize(34, 0x5a);
  Entry entry = file_entry("/etc/hashed.conf", "x", "ima-sig", xattr);
  EXPECT_TRUE(decode_fields(entry)->signature.empty());
  std::string line;
  append_ascii_line(line, entry);
  EXPECT_TRUE(line.ends_with(" /etc/hashed.conf \n")) << line;
}

TEST(Signature, EvmPortableSignatureFillsSig) {
  TemplateInput input;
  input.digest = Digest::zeros(32);
  input.name = "/x";
  input.evm_xattr = {0x05, 0x02, 0x01};
  Entry entry = *make_entry(10, *find_builtin_template("ima-sig"), input);
  EXPECT_EQ(decode_fields(entry)->signature, input.evm_xattr);
}

TEST(Banks, NoSha1BankChoosesImaHashBank) {
  const std::vector<HashAlgo> sha256_sha384 = {HashAlgo::sha256, HashAlgo::sha384};
  EXPECT_EQ(boot_aggregate_bank(HashAlgo::sha256, sha256_sha384), HashAlgo::sha256);
  EXPECT_EQ(boot_aggregate_bank(HashAlgo::sha384, sha256_sha384), HashAlgo::sha384);
  EXPECT_EQ(boot_aggregate_bank(HashAlgo::sha512, sha256_sha384), HashAlgo::sha256);
  const std::vector<HashAlgo> sha384_only = {HashAlgo::sha384};
  EXPECT_EQ(boot_aggregate_bank(HashAlgo::sha256, sha384_only), std::nullopt);
  EXPECT_EQ(boot_aggregate_pcr_count(HashAlgo::sha1), 8u);
  EXPECT_EQ(boot_aggregate_pcr_count(HashAlgo::sha384), 10u);
}

TEST(Banks, SameSizeBanksAreReplayedByAlgorithm) {
  if (!hash_supported(HashAlgo::sm3)) GTEST_SKIP() << "this OpenSSL build has no SM3";
  std::vector<Entry> entries = {file_entry("/bin/a", "a"), file_entry("/bin/b", "b")};
  auto values = replay_list(entries, std::vector<HashAlgo>{HashAlgo::sha256, HashAlgo::sm3});
  ASSERT_TRUE(values);
  EXPECT_NE(values->at(RegisterId{10, HashAlgo::sha256}).hex(), values->at(RegisterId{10, HashAlgo::sm3}).hex());

  // A 32-byte sm3 value given as the sha256 bank must not verify.
  RegisterValues swapped;
  swapped.emplace(RegisterId{10, HashAlgo::sha256}, values->at(RegisterId{10, HashAlgo::sm3}));
  ParsedList list = parse_binary_list(serialize_binary(entries));
  EXPECT_FALSE(verify_list(list, swapped, {}).ok());
}

TEST(RegisterValues, BothLineForms) {
  auto values = parse_register_values("# comment\nPCR-10: 00 11" + std::string(36, '2') + "\nsha256:10:" +
                                          std::string(64, 'A') + "\n",
                                      "ref.txt", HashAlgo::sha1);
  ASSERT_TRUE(values) << values.error().message;
  EXPECT_EQ(values->at(RegisterId{10, HashAlgo::sha1}).hex(), "0011" + std::string(36, '2'));
  EXPECT_EQ(values->at(RegisterId{10, HashAlgo::sha256}).hex(), std::string(64, 'a'));
}

TEST(RegisterValues, ErrorsNameFileAndLine) {
  auto wrong_size = parse_register_values("sha256:10:00\n", "ref.txt", std::nullopt);
  ASSERT_FALSE(wrong_size);
  EXPECT_NE(wrong_size.error().message.find("ref.txt:1:"), std::string::npos) << wrong_size.error().message;
  auto no_bank = parse_register_values("\nPCR-10: " + std::string(40, '0'), "ref.txt", std::nullopt);
  ASSERT_FALSE(no_bank);
  EXPECT_NE(no_bank.error().message.find("ref.txt:2:"), std::string::npos) << no_bank.error().message;
  auto unknown = parse_register_values("sha999:10:00\n", "ref.txt", std::nullopt);
  ASSERT_FALSE(unknown);
  EXPECT_NE(unknown.error().message.find("unknown bank 'sha999'"), std::string::npos);
}

TEST(Parser, EveryTruncationIsReported) {
  Bytes golden = read_file(golden_path("binary_runtime_measurements"));
  ParsedList full = parse_binary_list(golden);
  ASSERT_FALSE(full.error);
  for (size_t cut = 1; cut < golden.size(); ++cut) {
    ParsedList list = parse_binary_list(ByteView(golden).first(cut));
    bool at_boundary = std::find(full.offsets.begin(), full.offsets.end(), cut) != full.offsets.end();
    if (at_boundary) {
      EXPECT_FALSE(list.error) << "cut at " << cut;
      continue;
    }
    ASSERT_TRUE(list.error) << "cut at " << cut;
    // The failing record is the one the cut falls into.
    size_t expected_index = static_cast<size_t>(
        std::upper_bound(full.offsets.begin(), full.offsets.end(), cut) - full.offsets.begin() - 1);
    EXPECT_EQ(list.error->entry_index, expected_index) << "cut at " << cut;
    EXPECT_EQ(list.error->offset, full.offsets[expected_index]) << "cut at " << cut;
    EXPECT_NE(list.error->message.find("truncated"), std::string::npos) << list.error->message;
  }
}

TEST(Parser, AbsurdLengthsAreRejected) {
  Entry entry = file_entry("/x", "x", "ima-ng");
  Bytes record = serialize_binary({entry});
  // Template data length field sits after pcr(4) + digest(20) + len(4) + "ima-ng".
  Bytes huge = record;
  huge[34] = huge[35] = huge[36] = huge[37] = 0xff;
  ParsedList list = parse_binary_list(huge);
  ASSERT_TRUE(list.error);
  EXPECT_NE(list.error->message.find("exceeds the limit"), std::string::npos) << list.error->message;

  Bytes name_length = record;
  name_length[24] = 0x00;
  name_length[25] = 0x10;
  list = parse_binary_list(name_length);
  ASSERT_TRUE(list.error);
  EXPECT_NE(list.error->message.find("template name length 4096"), std::string::npos) << list.error->message;
}

TEST(Parser, UnknownTemplateAndMalformedFields) {
  Entry entry = file_entry("/x", "x", "ima-ng");
  Bytes record = serialize_binary({entry});
  Bytes unknown = record;
  unknown[28 + 4] = 'x';  // "ima-ng" -> "ima-xg"
  ParsedList list = parse_binary_list(unknown);
  ASSERT_TRUE(list.error);
  EXPECT_NE(list.error->message.find("unknown template 'ima-xg'"), std::string::npos) << list.error->message;

  Bytes bad_algo = record;
  bad_algo[42] = 'x';  // "sha256:" -> "xha256:"
  list = parse_binary_list(bad_algo);
  ASSERT_TRUE(list.error);
  EXPECT_NE(list.error->message.find("unknown hash algorithm 'xha256'"), std::string::npos) << list.error->message;

  Bytes no_nul = record;
  no_nul.back() = 'x';
  list = parse_binary_list(no_nul);
  ASSERT_TRUE(list.error);
  EXPECT_NE(list.error->message.find("not NUL-terminated"), std::string::npos) << list.error->message;
  EXPECT_EQ(format_parse_error(*list.error).substr(0, 25), "entry 1 (byte offset 0): ");
}

// Flips every bit of the kernel's list, one at a time. Each copy must fail
// to parse or fail verification, and the failure must name the entry that
// contains the flipped bit. The one exception is the name of a violation
// entry: the kernel hashes nothing for a violation, so no verifier can
// notice a changed name there.
TEST(Tamper, EveryFlippedBitIsCaughtAtItsEntry) {
  Bytes golden = read_file(golden_path("binary_runtime_measurements"));
  auto reference = parse_register_values(read_text(golden_path("pcrs.txt")), "pcrs.txt", std::nullopt);
  ASSERT_TRUE(reference);
  ParsedList original = parse_binary_list(golden);
  ASSERT_FALSE(original.error);
  VerifyOptions options;
  options.banks = std::set<HashAlgo>{HashAlgo::sha1, HashAlgo::sha256};

  size_t undetected = 0;
  size_t uncovered_name_bits = 0;
  for (size_t byte = 0; byte < golden.size(); ++byte) {
    size_t entry = static_cast<size_t>(
        std::upper_bound(original.offsets.begin(), original.offsets.end(), byte) - original.offsets.begin() - 1);
    bool in_violation_name = false;
    if (original.entries[entry].is_violation()) {
      std::string name = decode_fields(original.entries[entry])->name;
      size_t record_end = entry + 1 < original.offsets.size() ? original.offsets[entry + 1] : golden.size();
      // n-ng is the last field of these ima-sig violations but for sig,
      // whose length is 4 zero bytes after the name's NUL.
      size_t name_start = record_end - 4 - 1 - name.size();
      in_violation_name = byte >= name_start && byte < name_start + name.size();
    }
    for (int bit = 0; bit < 8; ++bit) {
      Bytes copy = golden;
      copy[byte] ^= static_cast<uint8_t>(1 << bit);
      ParsedList list = parse_binary_list(copy);
      if (list.error) {
        EXPECT_EQ(list.error->entry_index, entry) << "byte " << byte << " bit " << bit << ": "
                                                  << list.error->message;
        continue;
      }
      VerifyReport report = verify_list(list, *reference, options);
      if (report.ok()) {
        if (in_violation_name) {
          ++uncovered_name_bits;
        } else {
          ++undetected;
          ADD_FAILURE() << "flip at byte " << byte << " bit " << bit << " verified";
        }
        continue;
      }
      bool names_entry = std::any_of(report.failures.begin(), report.failures.end(),
                                     [&](const VerifyFinding& f) { return f.entry_index == entry; });
      EXPECT_TRUE(names_entry) << "byte " << byte << " bit " << bit << ": first failure "
                               << report.failures.front().message;
    }
  }
  EXPECT_EQ(undetected, 0u);
  // "/data/etc/writer.conf" and "/data/etc/tomtou.conf", minus flips that
  // make a NUL byte, which the parser rejects.
  EXPECT_GT(uncovered_name_bits, 0u);
}

}  // namespace
}  // namespace imarot
