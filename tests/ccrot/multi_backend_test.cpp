// Two roots of trust at once: a swtpm TPM and an emulated TDX guest (ccrot-fs)
// are extended from one list through one BackendSet. Both registers must
// verify against that list.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "ccrot_mount.h"
#include "imarot/rot_backend_set.h"
#include "rot_test_util.h"

namespace imarot::test {
namespace {

class TpmAndTdx : public ::testing::Test {
 protected:
  static SuiteSwtpm& tpm() {
    static SuiteSwtpm instance;
    return instance;
  }
  static void SetUpTestSuite() { tpm().start(SwtpmOptions{"sha1,sha256", false}); }
  static void TearDownTestSuite() { tpm().stop(); }
  void SetUp() override { ASSERT_TRUE(tpm().swtpm) << tpm().error; }
};

TEST_F(TpmAndTdx, OneListBothRegistersVerify) {
  auto mount = CcrotMount::tsm_mr({"mrtd:sha384=ro", "rtmr0:sha384=rw", "rtmr1:sha384=rw", "rtmr2:sha384=rw",
                                  "rtmr3:sha384=rw"});
  ASSERT_TRUE(mount) << mount.error().message;

  rot::BackendSetOptions options;
  options.plugin_dir = plugin_dir();
  std::vector<rot::BackendSpec> specs = {
      {"tpm2", "vtpm", std::nullopt, tpm2_config(*tpm().swtpm)},
      {"tdx", "rtmr", std::nullopt, nlohmann::json{{"path", (*mount)->path()}}.dump()},
  };
  auto set = rot::BackendSet::open(specs, options);
  ASSERT_TRUE(set) << set.error().message;

  // Both registers start from their current values; the list is replayed
  // from those.
  auto pcr_start = set->backend(0).read(10, HashAlgo::sha256);
  ASSERT_TRUE(pcr_start) << pcr_start.error().message;
  ASSERT_TRUE(pcr_start->has_value());
  auto rtmr_start = set->backend(1).read(2, HashAlgo::sha384);
  ASSERT_TRUE(rtmr_start) << rtmr_start.error().message;
  ASSERT_TRUE(rtmr_start->has_value());
  ASSERT_TRUE((*rtmr_start)->is_zero());

  std::vector<Entry> entries = make_entries(10, 40);
  for (const Entry& entry : entries) set->submit(entry);
  ASSERT_TRUE(set->drain(std::chrono::seconds(60)));
  for (const rot::BackendStatus& status : set->status()) {
    EXPECT_EQ(status.state, rot::BackendState::ok) << status.id << ": " << status.last_error;
    EXPECT_EQ(status.extends, entries.size()) << status.id;
  }

  auto pcr = set->backend(0).read(10, HashAlgo::sha256);
  auto rtmr = set->backend(1).read(2, HashAlgo::sha384);
  ASSERT_TRUE(pcr) << pcr.error().message;
  ASSERT_TRUE(pcr->has_value());
  ASSERT_TRUE(rtmr) << rtmr.error().message;
  ASSERT_TRUE(rtmr->has_value());

  Digest expected_pcr = **pcr_start;
  for (const Entry& entry : entries) {
    expected_pcr = *extend_value(HashAlgo::sha256, expected_pcr, *extend_digest(entry, HashAlgo::sha256));
  }
  EXPECT_EQ(**pcr, expected_pcr);

  // The list names register 10; on TDX the same entries went into RTMR2, so
  // the RTMR value is checked as the sha384 bank of register 10.
  ParsedList list = parse_binary_list(serialize_binary(entries));
  ASSERT_FALSE(list.error);
  RegisterValues reference = {{RegisterId{10, HashAlgo::sha384}, **rtmr}};
  if ((*pcr_start)->is_zero()) reference[RegisterId{10, HashAlgo::sha256}] = **pcr;
  VerifyReport report = verify_list(list, reference, VerifyOptions{});
  EXPECT_TRUE(report.ok()) << (report.failures.empty() ? "" : report.failures.front().message);
  EXPECT_EQ(report.registers.size(), reference.size());
}

}  // namespace
}  // namespace imarot::test
