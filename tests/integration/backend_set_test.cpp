// BackendSet against swtpm: several TPMs at once, configuration checks, and
// a TPM that goes away and comes back while entries keep arriving.
#include <gtest/gtest.h>

#include <fmt/format.h>

#include <atomic>
#include <filesystem>
#include <iostream>
#include <optional>
#include <thread>

#include <nlohmann/json.hpp>

#include "imarot/rot_backend_set.h"
#include "rot_test_util.h"

namespace imarot::test {
namespace {

using rot::BackendSet;
using rot::BackendSetOptions;
using rot::BackendSpec;
using rot::BackendState;
using rot::BackendStatus;

const std::vector<HashAlgo> kAllBanks = {HashAlgo::sha1, HashAlgo::sha256, HashAlgo::sha384, HashAlgo::sha512};
const std::vector<HashAlgo> kTwoBanks = {HashAlgo::sha1, HashAlgo::sha256};

BackendSpec tpm2_spec(const Swtpm& swtpm, std::string id, std::optional<uint32_t> reg = std::nullopt) {
  return BackendSpec{"tpm2", std::move(id), reg, tpm2_config(swtpm)};
}

// The value `entries` give a register of `bank` that starts at zero; the
// entries' own PCR field does not matter.
Digest replayed(const std::vector<Entry>& entries, HashAlgo bank) {
  Replay replay({bank});
  for (const Entry& entry : entries) {
    Entry copy = entry;
    copy.pcr = 0;
    EXPECT_TRUE(replay.extend(copy));
  }
  auto it = replay.values().find(RegisterId{0, bank});
  return it == replay.values().end() ? Digest::zeros(digest_size(bank)) : it->second;
}

void expect_register_holds(const SuiteSwtpm& tpm, uint32_t pcr, const std::vector<HashAlgo>& banks,
                           const std::vector<Entry>& entries) {
  auto dump = pcrread(tpm.tools, tpm.swtpm->tcti(), pcr_selection(banks, {pcr}));
  ASSERT_TRUE(dump) << dump.error().message;
  for (HashAlgo bank : banks) {
    EXPECT_EQ(dump->values.at(RegisterId{pcr, bank}).hex(), replayed(entries, bank).hex())
        << hash_name(bank) << " PCR " << pcr;
  }
}

class BackendSetTest : public ::testing::Test {
 protected:
  void SetUp() override {
    tpm_.start();
    ASSERT_TRUE(tpm_.swtpm) << tpm_.error;
    options_.securityfs_root = securityfs_.path();
    options_.plugin_dir = plugin_dir();
    options_.initial_backoff = std::chrono::milliseconds(20);
    options_.max_backoff = std::chrono::milliseconds(200);
  }

  SuiteSwtpm tpm_;
  TempDir securityfs_;
  BackendSetOptions options_;
};

TEST_F(BackendSetTest, TwoTpmsGetEveryEntryInOrder) {
  SuiteSwtpm second;
  second.start(SwtpmOptions{.pcr_banks = "sha1,sha256"});
  ASSERT_TRUE(second.swtpm) << second.error;

  std::vector<Entry> entries = make_entries(10, 30);
  {
    auto set = BackendSet::open({tpm2_spec(*tpm_.swtpm, "vtpm-a", 12), tpm2_spec(*second.swtpm, "vtpm-b")}, options_);
    ASSERT_TRUE(set) << set.error().message;
    for (size_t i = 0; i < entries.size(); ++i) EXPECT_EQ(set->submit(entries[i]), i);
    ASSERT_TRUE(set->drain(std::chrono::seconds(30)));

    std::vector<BackendStatus> status = set->status();
    ASSERT_EQ(status.size(), 2u);
    EXPECT_EQ(status[0].id, "vtpm-a");
    EXPECT_EQ(status[0].register_index, 12u);
    EXPECT_EQ(status[1].id, "vtpm-b");
    EXPECT_EQ(status[1].register_index, 10u);  // the backend's default
    for (const BackendStatus& backend : status) {
      EXPECT_EQ(backend.state, BackendState::ok) << backend.id << ": " << backend.last_error;
      EXPECT_EQ(backend.last_extended, 29u) << backend.id;
      EXPECT_EQ(backend.pending, 0u) << backend.id;
      EXPECT_EQ(backend.extends, 30u) << backend.id;
      EXPECT_EQ(backend.failures, 0u) << backend.id;
    }
  }
  expect_register_holds(tpm_, 12, kAllBanks, entries);
  expect_register_holds(second, 10, kTwoBanks, entries);
}

TEST_F(BackendSetTest, StartsFromCurrentRegisterValue) {
  // Something extended the PCR before the set opened; entries go on top.
  std::vector<std::pair<HashAlgo, Digest>> earlier;
  for (HashAlgo bank : kAllBanks) earlier.emplace_back(bank, Digest::filled(digest_size(bank), 0x5a));
  ASSERT_TRUE(pcrextend(tpm_.tools, tpm_.swtpm->tcti(), 13, earlier));

  std::vector<Entry> entries = make_entries(13, 5);
  {
    auto set = BackendSet::open({tpm2_spec(*tpm_.swtpm, "tpm2", 13)}, options_);
    ASSERT_TRUE(set) << set.error().message;
    for (const Entry& entry : entries) set->submit(entry);
    ASSERT_TRUE(set->drain(std::chrono::seconds(30)));
  }
  auto dump = pcrread(tpm_.tools, tpm_.swtpm->tcti(), "sha256:13");
  ASSERT_TRUE(dump) << dump.error().message;
  Digest expected = *extend_value(HashAlgo::sha256, Digest::zeros(32), Digest::filled(32, 0x5a));
  for (const Entry& entry : entries) {
    expected = *extend_value(HashAlgo::sha256, expected, *extend_digest(entry, HashAlgo::sha256));
  }
  EXPECT_EQ(dump->values.at(RegisterId{13, HashAlgo::sha256}).hex(), expected.hex());
}

TEST_F(BackendSetTest, DrtmPcrRejectedAtOpen) {
  auto set = BackendSet::open({tpm2_spec(*tpm_.swtpm, "tpm2", 18)}, options_);
  ASSERT_FALSE(set);
  EXPECT_EQ(set.error().status, rot::Status::read_only);
  EXPECT_NE(set.error().message.find("backend 'tpm2': PCR 18 cannot be used"), std::string::npos)
      << set.error().message;
  EXPECT_NE(set.error().message.find("locality 0"), std::string::npos) << set.error().message;
}

TEST_F(BackendSetTest, DuplicateIdRejected) {
  auto set = BackendSet::open({tpm2_spec(*tpm_.swtpm, "same", 11), tpm2_spec(*tpm_.swtpm, "same", 12)}, options_);
  ASSERT_FALSE(set);
  EXPECT_NE(set.error().message.find("backend id 'same' is used twice"), std::string::npos) << set.error().message;
}

TEST_F(BackendSetTest, KernelImaRegisterRejectedAtOpen) {
  std::filesystem::create_directories(securityfs_.path() + "/ima");
  Bytes kernel_list = serialize_binary(make_entries(10, 3));
  write_text_file(securityfs_.path() + "/ima/binary_runtime_measurements",
                  std::string(kernel_list.begin(), kernel_list.end()));
  std::string shared = nlohmann::json{{"tcti", tpm_.swtpm->tcti()}, {"kernel_tpm", true}}.dump();

  auto conflict = BackendSet::open({BackendSpec{"tpm2", "tpm2", std::nullopt, shared}}, options_);
  ASSERT_FALSE(conflict);
  EXPECT_NE(conflict.error().message.find("kernel IMA is active"), std::string::npos) << conflict.error().message;
  EXPECT_NE(conflict.error().message.find("PCR 10"), std::string::npos) << conflict.error().message;

  auto other_pcr = BackendSet::open({BackendSpec{"tpm2", "tpm2", 11, shared}}, options_);
  EXPECT_TRUE(other_pcr) << other_pcr.error().message;
}

TEST_F(BackendSetTest, AddAfterSubmitRejected) {
  SuiteSwtpm second;
  second.start();
  ASSERT_TRUE(second.swtpm) << second.error;
  auto set = BackendSet::open({tpm2_spec(*tpm_.swtpm, "first", 11)}, options_);
  ASSERT_TRUE(set) << set.error().message;
  set->submit(make_entries(11, 1).front());

  auto late = rot::RotBackend::load("tpm2", tpm2_config(*second.swtpm), plugin_dir());
  ASSERT_TRUE(late) << late.error().message;
  auto added = set->add("late", std::move(*late), std::nullopt);
  ASSERT_FALSE(added);
  EXPECT_NE(added.error().message.find("backend 'late' cannot be added after entries were submitted"),
            std::string::npos)
      << added.error().message;
}

// swtpm is killed between two batches and restarted from its saved state:
// the second batch waits in the queue and is extended exactly once.
TEST_F(BackendSetTest, OutageKeepsEntriesQueued) {
  std::vector<Entry> entries = make_entries(10, 20);
  {
    auto set = BackendSet::open({tpm2_spec(*tpm_.swtpm, "tpm2")}, options_);
    ASSERT_TRUE(set) << set.error().message;
    for (size_t i = 0; i < 10; ++i) set->submit(entries[i]);
    ASSERT_TRUE(set->drain(std::chrono::seconds(30)));
    ASSERT_TRUE(tpm_.swtpm->store_volatile_state());
    tpm_.swtpm->kill();

    for (size_t i = 10; i < 20; ++i) set->submit(entries[i]);
    set->pump();
    BackendStatus down = set->status().front();
    EXPECT_EQ(down.state, BackendState::degraded);
    EXPECT_EQ(down.last_extended, 9u);
    EXPECT_EQ(down.pending, 10u);
    EXPECT_TRUE(down.next_retry.has_value());
    EXPECT_NE(down.last_error.find("extending list entry 10 failed"), std::string::npos) << down.last_error;
    EXPECT_FALSE(set->drain(std::chrono::milliseconds(300)));
    EXPECT_EQ(set->status().front().pending, 10u);

    ASSERT_TRUE(tpm_.swtpm->restart());
    ASSERT_TRUE(set->drain(std::chrono::seconds(30))) << set->status().front().last_error;
    BackendStatus up = set->status().front();
    EXPECT_EQ(up.state, BackendState::ok);
    EXPECT_EQ(up.last_extended, 19u);
    EXPECT_EQ(up.pending, 0u);
    EXPECT_EQ(up.extends, 20u);
    EXPECT_EQ(up.rollbacks, 0u);
    EXPECT_EQ(up.applied_in_doubt, 0u);
    EXPECT_GE(up.failures, 2u);
  }
  expect_register_holds(tpm_, 10, kAllBanks, entries);
}

// The saved state is older than the last extends: after the restart the
// register is three entries in, and the seven lost ones go in again.
TEST_F(BackendSetTest, LostExtendsAreExtendedAgain) {
  // Read back before every extend, so the restart is found however fast it
  // was.
  options_.verify_after_idle = std::chrono::milliseconds(0);
  std::vector<Entry> entries = make_entries(10, 10);
  {
    auto set = BackendSet::open({tpm2_spec(*tpm_.swtpm, "tpm2")}, options_);
    ASSERT_TRUE(set) << set.error().message;
    for (size_t i = 0; i < 3; ++i) set->submit(entries[i]);
    ASSERT_TRUE(set->drain(std::chrono::seconds(30)));
    ASSERT_TRUE(tpm_.swtpm->store_volatile_state());
    for (size_t i = 3; i < 10; ++i) set->submit(entries[i]);
    ASSERT_TRUE(set->drain(std::chrono::seconds(30)));

    tpm_.swtpm->kill();
    ASSERT_TRUE(tpm_.swtpm->restart());
    // swtpm's TCTI connects per command, so nothing failed: the read-back
    // before the next extend is what finds the older state.
    std::vector<Entry> more = make_entries(10, 1, 10);
    entries.push_back(more.front());
    set->submit(more.front());
    ASSERT_TRUE(set->drain(std::chrono::seconds(30))) << set->status().front().last_error;

    BackendStatus status = set->status().front();
    EXPECT_EQ(status.state, BackendState::ok);
    EXPECT_EQ(status.last_extended, 10u);
    EXPECT_EQ(status.rollbacks, 1u);
    EXPECT_EQ(status.extends, 11u + 7u);
  }
  expect_register_holds(tpm_, 10, kAllBanks, entries);
}

TEST_F(BackendSetTest, RollbackBeyondHistoryRefused) {
  options_.history = 3;
  options_.verify_after_idle = std::chrono::milliseconds(0);
  std::vector<Entry> entries = make_entries(10, 10);
  auto set = BackendSet::open({tpm2_spec(*tpm_.swtpm, "tpm2")}, options_);
  ASSERT_TRUE(set) << set.error().message;
  for (size_t i = 0; i < 3; ++i) set->submit(entries[i]);
  ASSERT_TRUE(set->drain(std::chrono::seconds(30)));
  ASSERT_TRUE(tpm_.swtpm->store_volatile_state());
  for (size_t i = 3; i < 9; ++i) set->submit(entries[i]);
  ASSERT_TRUE(set->drain(std::chrono::seconds(30)));

  tpm_.swtpm->kill();
  ASSERT_TRUE(tpm_.swtpm->restart());
  set->submit(entries[9]);
  ASSERT_TRUE(set->drain(std::chrono::seconds(30)));

  BackendStatus status = set->status().front();
  EXPECT_EQ(status.state, BackendState::refused);
  EXPECT_EQ(status.last_extended, 8u);
  EXPECT_EQ(status.pending, 1u);
  EXPECT_NE(status.last_error.find("matches no state of the last 3 list entries"), std::string::npos)
      << status.last_error;
}

TEST_F(BackendSetTest, ForeignExtendRefused) {
  // A long first backoff leaves time to tamper with the restarted TPM
  // before the set reads it back.
  options_.initial_backoff = std::chrono::milliseconds(1500);
  options_.max_backoff = std::chrono::milliseconds(3000);
  std::vector<Entry> entries = make_entries(10, 3);
  auto set = BackendSet::open({tpm2_spec(*tpm_.swtpm, "tpm2")}, options_);
  ASSERT_TRUE(set) << set.error().message;
  set->submit(entries[0]);
  set->submit(entries[1]);
  ASSERT_TRUE(set->drain(std::chrono::seconds(30)));
  ASSERT_TRUE(tpm_.swtpm->store_volatile_state());
  tpm_.swtpm->kill();
  set->submit(entries[2]);
  set->pump();
  ASSERT_EQ(set->status().front().state, BackendState::degraded);

  ASSERT_TRUE(tpm_.swtpm->restart());
  std::vector<std::pair<HashAlgo, Digest>> foreign;
  for (HashAlgo bank : kAllBanks) foreign.emplace_back(bank, Digest::filled(digest_size(bank), 0x66));
  ASSERT_TRUE(pcrextend(tpm_.tools, tpm_.swtpm->tcti(), 10, foreign));
  ASSERT_GT(*set->next_retry(), BackendSet::Clock::now()) << "the retry ran before the foreign extend";

  ASSERT_TRUE(set->drain(std::chrono::seconds(30)));
  BackendStatus status = set->status().front();
  EXPECT_EQ(status.state, BackendState::refused);
  EXPECT_EQ(status.last_extended, 1u);
  EXPECT_EQ(status.pending, 1u);
  EXPECT_NE(status.last_error.find("matches no state"), std::string::npos) << status.last_error;
}

// rotctl reads all PCRs, several TPM2_PCR_Read commands each, while the set
// keeps extending PCR 10 of the same swtpm.
TEST_F(BackendSetTest, RotctlReadsWhileExtending) {
  auto set = BackendSet::open({tpm2_spec(*tpm_.swtpm, "tpm2")}, options_);
  ASSERT_TRUE(set) << set.error().message;
  std::vector<Entry> entries = make_entries(10, 400);
  std::atomic<bool> done{false};
  std::thread writer([&] {
    for (const Entry& entry : entries) {
      set->submit(entry);
      set->pump();
      std::this_thread::sleep_for(std::chrono::microseconds(500));
    }
    EXPECT_TRUE(set->drain(std::chrono::seconds(30)));
    done = true;
  });

  int reads = 0;
  while (!done) {
    CommandResult result = run_command({ROTCTL_PATH, "pcrs", "--tcti", tpm_.swtpm->tcti(), "--plugin-dir",
                                        plugin_dir(), "--json"});
    EXPECT_EQ(result.exit_code, 0) << result.err;
    nlohmann::json parsed = nlohmann::json::parse(result.out, nullptr, /*allow_exceptions=*/false);
    EXPECT_FALSE(parsed.is_discarded()) << result.out;
    if (parsed.is_discarded()) break;
    EXPECT_EQ(parsed["banks"].size(), kAllBanks.size());
    ++reads;
  }
  writer.join();
  EXPECT_GE(reads, 1);
  BackendStatus status = set->status().front();
  EXPECT_EQ(status.state, BackendState::ok) << status.last_error;
  EXPECT_EQ(status.last_extended, entries.size() - 1);
  EXPECT_EQ(status.failures, 0u);
  *set = BackendSet(options_);
  expect_register_holds(tpm_, 10, kAllBanks, entries);
}

// Entries arrive steadily while swtpm is killed and restarted: nothing is
// lost, nothing counts twice in the register, and the list verifies
// against the PCRs afterwards, boot_aggregate included.
TEST_F(BackendSetTest, KilledMidRunLosesNothing) {
  const size_t count = 300;
  auto set = BackendSet::open({tpm2_spec(*tpm_.swtpm, "tpm2")}, options_);
  ASSERT_TRUE(set) << set.error().message;
  auto aggregate = set->backend(0).boot_aggregate(HashAlgo::sha256);
  ASSERT_TRUE(aggregate) << aggregate.error().message;
  std::vector<Entry> entries = {boot_aggregate_entry(10, *aggregate)};
  for (Entry& entry : make_entries(10, count - 1, 1)) entries.push_back(std::move(entry));

  std::atomic<uint64_t> extended{0};
  std::atomic<bool> drained{false};
  std::thread writer([&] {
    for (const Entry& entry : entries) {
      set->submit(entry);
      set->pump();
      auto last = set->status().front().last_extended;
      extended = last ? *last + 1 : 0;
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    drained = set->drain(std::chrono::seconds(60));
  });

  while (extended < count / 4) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  auto stored = tpm_.swtpm->store_volatile_state();
  tpm_.swtpm->kill();
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  auto restarted = tpm_.swtpm->restart();
  writer.join();
  ASSERT_TRUE(stored) << stored.error().message;
  ASSERT_TRUE(restarted) << restarted.error().message;
  ASSERT_TRUE(drained) << set->status().front().last_error;

  BackendStatus status = set->status().front();
  EXPECT_EQ(status.state, BackendState::ok);
  EXPECT_EQ(status.last_extended, count - 1);
  EXPECT_EQ(status.pending, 0u);
  EXPECT_GE(status.failures, 1u);
  RecordProperty("extends", std::to_string(status.extends));
  RecordProperty("rollbacks", std::to_string(status.rollbacks));
  RecordProperty("applied_in_doubt", std::to_string(status.applied_in_doubt));
  std::cout << fmt::format("outage: {} extend calls for {} entries, {} rollbacks, {} applied in doubt, {} failures\n",
                           status.extends, count, status.rollbacks, status.applied_in_doubt, status.failures);
  *set = BackendSet(options_);  // closes the backend before tpm2-tools reads the PCRs

  std::vector<uint32_t> pcrs = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
  auto dump = pcrread(tpm_.tools, tpm_.swtpm->tcti(), pcr_selection(kAllBanks, pcrs));
  ASSERT_TRUE(dump) << dump.error().message;
  auto replay = replay_list(entries, kAllBanks);
  ASSERT_TRUE(replay);
  for (HashAlgo bank : kAllBanks) {
    EXPECT_EQ(dump->values.at(RegisterId{10, bank}).hex(), replay->at(RegisterId{10, bank}).hex()) << hash_name(bank);
  }

  ParsedList list = parse_binary_list(serialize_binary(entries));
  ASSERT_FALSE(list.error);
  VerifyReport report = verify_list(list, dump->values, {});
  for (const auto& failure : report.failures) ADD_FAILURE() << failure.message;
  EXPECT_TRUE(report.ok());
  EXPECT_EQ(report.entries, count);
  EXPECT_EQ(report.registers.size(), kAllBanks.size());
  for (const auto& warning : report.warnings) {
    EXPECT_EQ(warning.message.find("boot_aggregate not checked"), std::string::npos) << warning.message;
  }
}

}  // namespace
}  // namespace imarot::test
