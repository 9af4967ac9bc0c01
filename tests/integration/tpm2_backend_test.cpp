// The tpm2 plugin against swtpm: what it extends and reads must agree with
// tpm2-tools on the same emulator and with the replay of the list.
//
// swtpm serves one client connection at a time. tpm2-tss's swtpm TCTI
// connects for each command, so an open backend does not block tpm2-tools;
// the tests close it first anyway, as a daemon holding a TPM device would.
#include <gtest/gtest.h>

#include <fmt/format.h>

#include <tss2/tss2_common.h>
#include <tss2/tss2_tpm2_types.h>

#include <nlohmann/json.hpp>

#include "imarot/rot.h"
#include "rot_test_util.h"
#include "tpm2_rc.h"

namespace imarot::test {
namespace {

using rot::RotBackend;
using rot::Status;

const std::vector<HashAlgo> kSwtpmDefaultBanks = {HashAlgo::sha1, HashAlgo::sha256, HashAlgo::sha384,
                                                  HashAlgo::sha512};

std::vector<uint32_t> all_pcrs() {
  std::vector<uint32_t> pcrs(24);
  for (uint32_t i = 0; i < 24; ++i) pcrs[i] = i;
  return pcrs;
}

std::unique_ptr<RotBackend> open_tpm2(const std::string& config) {
  auto backend = RotBackend::load("tpm2", config, plugin_dir());
  EXPECT_TRUE(backend) << backend.error().message;
  return backend ? std::move(*backend) : nullptr;
}

// Checks `pcr` of every bank, as tpm2_pcrread shows it, against the replay
// of `entries`.
void expect_pcr_equals_replay(const SuiteSwtpm& tpm, uint32_t pcr, const std::vector<HashAlgo>& banks,
                              const std::vector<Entry>& entries) {
  auto replayed = replay_list(entries, banks);
  ASSERT_TRUE(replayed) << replayed.error().message;
  auto dump = pcrread(tpm.tools, tpm.swtpm->tcti(), pcr_selection(banks, {pcr}));
  ASSERT_TRUE(dump) << dump.error().message;
  for (HashAlgo bank : banks) {
    RegisterId id{pcr, bank};
    ASSERT_EQ(dump->values.count(id), 1u) << "tpm2_pcrread shows no PCR " << pcr << " in " << hash_name(bank);
    EXPECT_EQ(dump->values.at(id).hex(), replayed->at(id).hex()) << hash_name(bank);
  }
}

class Tpm2Backend : public ::testing::Test {
 protected:
  static SuiteSwtpm& tpm() {
    static SuiteSwtpm instance;
    return instance;
  }
  static void SetUpTestSuite() { tpm().start(); }
  static void TearDownTestSuite() { tpm().stop(); }
  void SetUp() override { ASSERT_TRUE(tpm().swtpm) << tpm().error; }
};

TEST_F(Tpm2Backend, DescribesSwtpmBanks) {
  auto backend = open_tpm2(tpm2_config(*tpm().swtpm));
  ASSERT_TRUE(backend);
  const rot::Description& description = backend->description();
  EXPECT_EQ(description.name, "tpm2");
  EXPECT_EQ(description.register_kind, "PCR");
  EXPECT_EQ(description.register_count, 24u);
  EXPECT_EQ(description.default_register, 10u);
  EXPECT_FALSE(description.read_only);
  EXPECT_FALSE(description.kernel_shared);
  EXPECT_EQ(description.bank_algos(), kSwtpmDefaultBanks);
  for (const rot::Bank& bank : description.banks) {
    EXPECT_EQ(bank.digest_size, digest_size(bank.algo));
    EXPECT_EQ(bank.tpm_alg_id, hash_info(bank.algo).tpm_alg_id);
  }
}

TEST_F(Tpm2Backend, ExtendsMatchReplayInEveryBank) {
  const uint32_t pcr = 11;
  std::vector<Entry> entries = make_entries(pcr, 50);
  ASSERT_TRUE(std::any_of(entries.begin(), entries.end(), [](const Entry& e) { return e.is_violation(); }));
  {
    auto backend = open_tpm2(tpm2_config(*tpm().swtpm));
    ASSERT_TRUE(backend);
    for (const Entry& entry : entries) {
      auto extended = backend->extend(pcr, entry);
      ASSERT_TRUE(extended) << extended.error().message;
    }
  }
  expect_pcr_equals_replay(tpm(), pcr, kSwtpmDefaultBanks, entries);
}

TEST_F(Tpm2Backend, ReadsEveryPcrAcrossSeveralCommands) {
  // Distinct values in several PCRs, so a misplaced digest shows.
  for (uint32_t pcr : {1u, 8u, 9u, 12u, 16u, 23u}) {
    std::vector<std::pair<HashAlgo, Digest>> digests;
    for (HashAlgo bank : kSwtpmDefaultBanks) digests.emplace_back(bank, Digest::filled(digest_size(bank), uint8_t(pcr)));
    auto extended = pcrextend(tpm().tools, tpm().swtpm->tcti(), pcr, digests);
    ASSERT_TRUE(extended) << extended.error().message;
  }
  auto dump = pcrread(tpm().tools, tpm().swtpm->tcti(), pcr_selection(kSwtpmDefaultBanks, all_pcrs()));
  ASSERT_TRUE(dump) << dump.error().message;

  auto backend = open_tpm2(tpm2_config(*tpm().swtpm));
  ASSERT_TRUE(backend);
  for (HashAlgo bank : kSwtpmDefaultBanks) {
    auto read = backend->read_bank(bank, all_pcrs());
    ASSERT_TRUE(read) << read.error().message;
    ASSERT_TRUE(read->allocated);
    ASSERT_EQ(read->values.size(), 24u);
    for (uint32_t pcr = 0; pcr < 24; ++pcr) {
      EXPECT_EQ(read->values[pcr].hex(), dump->values.at(RegisterId{pcr, bank}).hex())
          << hash_name(bank) << " PCR " << pcr;
    }
    auto single = backend->read(12, bank);
    ASSERT_TRUE(single) << single.error().message;
    ASSERT_TRUE(single->has_value());
    EXPECT_EQ((*single)->hex(), dump->values.at(RegisterId{12, bank}).hex());
  }

  // An unordered selection with a repeat comes back in the order asked.
  const uint32_t scattered[] = {23, 1, 12, 1};
  auto read = backend->read_bank(HashAlgo::sha256, scattered);
  ASSERT_TRUE(read) << read.error().message;
  ASSERT_EQ(read->values.size(), 4u);
  for (size_t i = 0; i < 4; ++i) {
    EXPECT_EQ(read->values[i].hex(), dump->values.at(RegisterId{scattered[i], HashAlgo::sha256}).hex());
  }
}

TEST_F(Tpm2Backend, BootAggregateAsKernelIma) {
  for (uint32_t pcr = 0; pcr < 10; ++pcr) {
    std::vector<std::pair<HashAlgo, Digest>> digests;
    for (HashAlgo bank : kSwtpmDefaultBanks) {
      digests.emplace_back(bank, Digest::filled(digest_size(bank), static_cast<uint8_t>(0x40 + pcr)));
    }
    auto extended = pcrextend(tpm().tools, tpm().swtpm->tcti(), pcr, digests);
    ASSERT_TRUE(extended) << extended.error().message;
  }
  std::vector<uint32_t> boot_pcrs = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9};
  auto dump = pcrread(tpm().tools, tpm().swtpm->tcti(), pcr_selection(kSwtpmDefaultBanks, boot_pcrs));
  ASSERT_TRUE(dump) << dump.error().message;

  // The bank of ima_hash when allocated, else sha256; sha1 covers PCR 0-7,
  // every other bank PCR 0-9.
  struct Case {
    HashAlgo ima_hash;
    HashAlgo bank;
    uint32_t pcr_count;
  };
  const Case cases[] = {{HashAlgo::sha256, HashAlgo::sha256, 10},
                        {HashAlgo::sha1, HashAlgo::sha1, 8},
                        {HashAlgo::sha384, HashAlgo::sha384, 10},
                        {HashAlgo::sha512, HashAlgo::sha512, 10},
                        {HashAlgo::sm3, HashAlgo::sha256, 10},
                        {HashAlgo::md5, HashAlgo::sha256, 10}};

  auto backend = open_tpm2(tpm2_config(*tpm().swtpm));
  ASSERT_TRUE(backend);
  for (const Case& c : cases) {
    auto aggregate = backend->boot_aggregate(c.ima_hash);
    ASSERT_TRUE(aggregate) << aggregate.error().message;
    EXPECT_EQ(aggregate->bank, c.bank) << "ima_hash " << hash_name(c.ima_hash);

    Bytes concatenated;
    for (uint32_t pcr = 0; pcr < c.pcr_count; ++pcr) {
      const Digest& value = dump->values.at(RegisterId{pcr, c.bank});
      concatenated.insert(concatenated.end(), value.view().begin(), value.view().end());
    }
    auto expected = hash_bytes(c.bank, concatenated);
    ASSERT_TRUE(expected);
    EXPECT_EQ(aggregate->digest.hex(), expected->hex()) << "ima_hash " << hash_name(c.ima_hash);
  }
}

// The computation the plugin applies to the PCRs it reads, on PCR values
// captured from Linux 6.1 with a swtpm: it must give the digest the kernel
// recorded in its first entry.
TEST(Tpm2BootAggregate, MatchesKernelOnCapturedPcrs) {
  const std::string dir = std::string(IMAROT_TEST_DATA_DIR) + "/kernel-ima-sha256/";
  auto pcrs = parse_register_values(read_text_file(dir + "pcrs.txt"), "pcrs.txt", std::nullopt);
  ASSERT_TRUE(pcrs) << pcrs.error().message;
  std::string list_text = read_text_file(dir + "binary_runtime_measurements");
  ParsedList list = parse_binary_list(Bytes(list_text.begin(), list_text.end()));
  ASSERT_FALSE(list.entries.empty());
  auto first = decode_fields(list.entries.front());
  ASSERT_TRUE(first) << first.error().message;
  ASSERT_EQ(first->name, "boot_aggregate");

  std::vector<HashAlgo> banks;
  for (const auto& [id, value] : *pcrs) {
    if (std::find(banks.begin(), banks.end(), id.bank) == banks.end()) banks.push_back(id.bank);
  }
  auto bank = boot_aggregate_bank(HashAlgo::sha256, banks);
  ASSERT_EQ(bank, HashAlgo::sha256);
  std::vector<Digest> values;
  for (uint32_t pcr = 0; pcr < boot_aggregate_pcr_count(*bank); ++pcr) values.push_back(pcrs->at(RegisterId{pcr, *bank}));
  auto aggregate = compute_boot_aggregate(*bank, values);
  ASSERT_TRUE(aggregate) << aggregate.error().message;
  EXPECT_EQ(aggregate->hex(), to_hex(first->file_digest));
}

TEST_F(Tpm2Backend, DrtmPcrsRejectedWithReason) {
  auto backend = open_tpm2(tpm2_config(*tpm().swtpm));
  ASSERT_TRUE(backend);
  for (uint32_t pcr = 17; pcr <= 22; ++pcr) {
    auto checked = backend->check_register(pcr);
    ASSERT_FALSE(checked) << "PCR " << pcr;
    EXPECT_EQ(checked.error().status, Status::read_only);
    EXPECT_NE(checked.error().message.find(fmt::format("PCR {} cannot be extended at locality 0", pcr)),
              std::string::npos)
        << checked.error().message;
  }
  auto extended = backend->extend(17, make_entries(17, 1).front());
  ASSERT_FALSE(extended);
  EXPECT_EQ(extended.error().status, Status::read_only);

  auto beyond = backend->check_register(24);
  ASSERT_FALSE(beyond);
  EXPECT_EQ(beyond.error().status, Status::invalid);
  EXPECT_NE(beyond.error().message.find("PCRs 0 to 23"), std::string::npos) << beyond.error().message;

  for (uint32_t pcr : {0u, 10u, 14u, 16u, 23u}) EXPECT_TRUE(backend->check_register(pcr)) << "PCR " << pcr;
}

TEST_F(Tpm2Backend, DrtmPcrsReadable) {
  auto backend = open_tpm2(tpm2_config(*tpm().swtpm));
  ASSERT_TRUE(backend);
  auto value = backend->read(17, HashAlgo::sha256);
  ASSERT_TRUE(value) << value.error().message;
  ASSERT_TRUE(value->has_value());
  // Until a dynamic launch, PCRs 17 to 22 hold all ones after TPM2_Startup.
  EXPECT_EQ(**value, Digest::filled(32, 0xff));
}

TEST_F(Tpm2Backend, BankTheTpmLacksIsInvalid) {
  auto backend = open_tpm2(tpm2_config(*tpm().swtpm));
  ASSERT_TRUE(backend);
  auto read = backend->read(10, HashAlgo::sm3);
  ASSERT_FALSE(read);
  EXPECT_EQ(read.error().status, Status::invalid);
  EXPECT_NE(read.error().message.find("no sm3 PCR bank"), std::string::npos) << read.error().message;
  EXPECT_NE(read.error().message.find("sha1, sha256, sha384, sha512"), std::string::npos) << read.error().message;
}

TEST_F(Tpm2Backend, ExtendDigestsChecksShape) {
  auto backend = open_tpm2(tpm2_config(*tpm().swtpm));
  ASSERT_TRUE(backend);
  std::vector<Digest> too_few = {Digest::zeros(20)};
  auto extended = backend->extend_digests(13, too_few);
  ASSERT_FALSE(extended);
  EXPECT_EQ(extended.error().status, Status::invalid);

  std::vector<Digest> wrong_size = {Digest::zeros(20), Digest::zeros(20), Digest::zeros(48), Digest::zeros(64)};
  extended = backend->extend_digests(13, wrong_size);
  ASSERT_FALSE(extended);
  EXPECT_NE(extended.error().message.find("sha256 digest is 20 bytes; expected 32"), std::string::npos)
      << extended.error().message;
}

TEST_F(Tpm2Backend, KernelTpmFlagFollowsConfig) {
  auto simulator = open_tpm2(tpm2_config(*tpm().swtpm));
  ASSERT_TRUE(simulator);
  EXPECT_FALSE(simulator->description().kernel_shared);
  simulator.reset();

  auto marked = open_tpm2(nlohmann::json{{"tcti", tpm().swtpm->tcti()}, {"kernel_tpm", true}}.dump());
  ASSERT_TRUE(marked);
  EXPECT_TRUE(marked->description().kernel_shared);
}

TEST(Tpm2Unreachable, MissingSocketIsUnavailable) {
  ::setenv("TSS2_LOG", "all+none", 0);
  TempDir dir;
  std::string tcti = fmt::format("swtpm:path={}", dir.file("no-socket"));
  auto backend = RotBackend::load("tpm2", nlohmann::json{{"tcti", tcti}}.dump(), plugin_dir());
  ASSERT_FALSE(backend);
  EXPECT_EQ(backend.error().status, Status::unavailable);
  EXPECT_NE(backend.error().message.find(fmt::format("TCTI '{}'", tcti)), std::string::npos)
      << backend.error().message;
}

TEST(Tpm2Unreachable, MissingDeviceIsUnavailable) {
  TempDir dir;
  std::string device = dir.file("tpm0");
  auto backend = RotBackend::load("tpm2", nlohmann::json{{"tcti", "device:" + device}}.dump(), plugin_dir());
  ASSERT_FALSE(backend);
  EXPECT_EQ(backend.error().status, Status::unavailable);
  EXPECT_NE(backend.error().message.find(fmt::format("cannot open TPM device '{}': No such file", device)),
            std::string::npos)
      << backend.error().message;
}

TEST(Tpm2ResponseCodes, ClassifiedForRetryAndRefusal) {
  using tpm2::classify_rc;
  EXPECT_EQ(classify_rc(TPM2_RC_RETRY).status, Status::retry);
  EXPECT_EQ(classify_rc(TPM2_RC_YIELDED).status, Status::retry);
  EXPECT_EQ(classify_rc(TPM2_RC_TESTING).status, Status::retry);
  EXPECT_FALSE(classify_rc(TPM2_RC_RETRY).transport);
  // The same codes relayed by a resource manager.
  EXPECT_EQ(classify_rc(TSS2_RESMGR_TPM_RC_LAYER | TPM2_RC_RETRY).status, Status::retry);

  EXPECT_EQ(classify_rc(TPM2_RC_LOCALITY).status, Status::read_only);
  EXPECT_EQ(classify_rc(TPM2_RC_FAILURE).status, Status::failed);
  EXPECT_EQ(classify_rc(TPM2_RC_INITIALIZE).status, Status::unavailable);
  EXPECT_EQ(classify_rc(TPM2_RC_VALUE | TPM2_RC_P | TPM2_RC_1).status, Status::invalid);

  auto io = classify_rc(TSS2_TCTI_RC_IO_ERROR);
  EXPECT_EQ(io.status, Status::unavailable);
  EXPECT_TRUE(io.transport);
  EXPECT_TRUE(classify_rc(TSS2_TCTI_RC_NO_CONNECTION).transport);
  EXPECT_EQ(classify_rc(TSS2_ESYS_RC_TRY_AGAIN).status, Status::retry);

  EXPECT_NE(tpm2::describe_rc(TPM2_RC_LOCALITY).find("bad locality (TSS2_RC 0x907)"), std::string::npos)
      << tpm2::describe_rc(TPM2_RC_LOCALITY);
}

// A TPM with only sha1 and sha256 allocated. Its sha384 and sha512 banks
// are implemented but have no PCRs allocated.
class Tpm2TwoBanks : public ::testing::Test {
 protected:
  static SuiteSwtpm& tpm() {
    static SuiteSwtpm instance;
    return instance;
  }
  static void SetUpTestSuite() { tpm().start(SwtpmOptions{.pcr_banks = "sha1,sha256"}); }
  static void TearDownTestSuite() { tpm().stop(); }
  void SetUp() override { ASSERT_TRUE(tpm().swtpm) << tpm().error; }
};

TEST_F(Tpm2TwoBanks, DescribesAllocatedBanksOnly) {
  auto backend = open_tpm2(tpm2_config(*tpm().swtpm));
  ASSERT_TRUE(backend);
  EXPECT_EQ(backend->description().bank_algos(), (std::vector<HashAlgo>{HashAlgo::sha1, HashAlgo::sha256}));
}

TEST_F(Tpm2TwoBanks, UnallocatedBankNeverReadsAsZeros) {
  {
    auto backend = open_tpm2(tpm2_config(*tpm().swtpm));
    ASSERT_TRUE(backend);
    auto single = backend->read(10, HashAlgo::sha384);
    ASSERT_TRUE(single) << single.error().message;
    EXPECT_FALSE(single->has_value());

    auto bank = backend->read_bank(HashAlgo::sha512, all_pcrs());
    ASSERT_TRUE(bank) << bank.error().message;
    EXPECT_FALSE(bank->allocated);
    EXPECT_TRUE(bank->values.empty());
    EXPECT_TRUE(bank->registers.empty());
  }
  // tpm2_pcrread prints the same: the bank line with no values under it.
  auto dump = pcrread(tpm().tools, tpm().swtpm->tcti(), "sha384:10+sha256:10");
  ASSERT_TRUE(dump) << dump.error().message;
  EXPECT_EQ(dump->empty_banks, (std::set<HashAlgo>{HashAlgo::sha384}));
}

TEST_F(Tpm2TwoBanks, ExtendCoversAllocatedBanks) {
  const uint32_t pcr = 10;
  std::vector<Entry> entries = make_entries(pcr, 20);
  {
    auto backend = open_tpm2(tpm2_config(*tpm().swtpm));
    ASSERT_TRUE(backend);
    for (const Entry& entry : entries) ASSERT_TRUE(backend->extend(pcr, entry));
  }
  expect_pcr_equals_replay(tpm(), pcr, {HashAlgo::sha1, HashAlgo::sha256}, entries);
}

TEST_F(Tpm2TwoBanks, BootAggregateFallsBackToSha256) {
  auto backend = open_tpm2(tpm2_config(*tpm().swtpm));
  ASSERT_TRUE(backend);
  auto aggregate = backend->boot_aggregate(HashAlgo::sha384);
  ASSERT_TRUE(aggregate) << aggregate.error().message;
  EXPECT_EQ(aggregate->bank, HashAlgo::sha256);
  // A fresh TPM has PCR 0-9 at zero.
  auto expected = hash_bytes(HashAlgo::sha256, Bytes(10 * 32, 0));
  ASSERT_TRUE(expected);
  EXPECT_EQ(aggregate->digest.hex(), expected->hex());
}

// The swtpm TCTI over TCP on 127.0.0.1 instead of a unix socket.
class Tpm2OverTcp : public ::testing::Test {
 protected:
  static SuiteSwtpm& tpm() {
    static SuiteSwtpm instance;
    return instance;
  }
  static void SetUpTestSuite() { tpm().start(SwtpmOptions{.pcr_banks = "", .tcp = true}); }
  static void TearDownTestSuite() { tpm().stop(); }
  void SetUp() override { ASSERT_TRUE(tpm().swtpm) << tpm().error; }
};

TEST_F(Tpm2OverTcp, ExtendsMatchReplay) {
  ASSERT_TRUE(tpm().swtpm->tcti().starts_with("swtpm:host=127.0.0.1,port="));
  const uint32_t pcr = 14;
  std::vector<Entry> entries = make_entries(pcr, 12);
  {
    auto backend = open_tpm2(tpm2_config(*tpm().swtpm));
    ASSERT_TRUE(backend);
    for (const Entry& entry : entries) ASSERT_TRUE(backend->extend(pcr, entry));
  }
  expect_pcr_equals_replay(tpm(), pcr, kSwtpmDefaultBanks, entries);
}

}  // namespace
}  // namespace imarot::test
