// The kernel IMA conflict check, against securityfs trees built in a
// temporary directory with measurement lists in the kernel's binary format.
#include <gtest/gtest.h>

#include <fmt/format.h>

#include <sys/stat.h>

#include <filesystem>

#include "imarot/rot.h"
#include "rot_test_util.h"

namespace imarot::test {
namespace {

using rot::Description;

Description shared_tpm() {
  Description description;
  description.name = "tpm2";
  description.register_kind = "PCR";
  description.register_count = 24;
  description.default_register = 10;
  description.banks = {rot::Bank{HashAlgo::sha256, 32, 0x000B}};
  description.kernel_shared = true;
  return description;
}

class KernelIma : public ::testing::Test {
 protected:
  // Writes a binary list of `count` entries for each PCR in `pcrs` to
  // <root>/<relative>/binary_runtime_measurements.
  void write_list(const std::string& relative, const std::vector<uint32_t>& pcrs, size_t count) {
    std::string dir = root_.path() + "/" + relative;
    std::filesystem::create_directories(dir);
    std::vector<Entry> entries;
    for (uint32_t pcr : pcrs) {
      for (Entry& entry : make_entries(pcr, count, entries.size())) entries.push_back(std::move(entry));
    }
    Bytes data = serialize_binary(entries);
    write_text_file(dir + "/binary_runtime_measurements", std::string(data.begin(), data.end()));
  }

  TempDir root_;
};

TEST_F(KernelIma, AbsentWhenNoImaDirectory) {
  auto found = rot::find_kernel_ima(root_.path());
  ASSERT_TRUE(found) << found.error().message;
  EXPECT_FALSE(found->has_value());
  EXPECT_TRUE(rot::check_kernel_ima_conflict(root_.path(), "tpm2", shared_tpm(), 10));
}

TEST_F(KernelIma, FindsRegistersOfTheList) {
  write_list("ima", {10, 11}, 3);
  auto found = rot::find_kernel_ima(root_.path());
  ASSERT_TRUE(found) << found.error().message;
  ASSERT_TRUE(found->has_value());
  EXPECT_EQ((*found)->entries, 6u);
  EXPECT_EQ((*found)->registers, (std::vector<uint32_t>{10, 11}));
  EXPECT_EQ((*found)->path, root_.path() + "/ima/binary_runtime_measurements");
}

TEST_F(KernelIma, SameRegisterRejectedWithAdvice) {
  write_list("ima", {10}, 4);
  auto checked = rot::check_kernel_ima_conflict(root_.path(), "vtpm", shared_tpm(), 10);
  ASSERT_FALSE(checked);
  EXPECT_EQ(checked.error().status, rot::Status::invalid);
  const std::string& message = checked.error().message;
  EXPECT_NE(message.find("backend 'vtpm'"), std::string::npos) << message;
  EXPECT_NE(message.find("kernel IMA is active"), std::string::npos) << message;
  EXPECT_NE(message.find("extends PCR 10"), std::string::npos) << message;
  EXPECT_NE(message.find("4 entries"), std::string::npos) << message;
  EXPECT_NE(message.find("\"register\": N"), std::string::npos) << message;
}

TEST_F(KernelIma, OtherRegisterAccepted) {
  write_list("ima", {10}, 4);
  EXPECT_TRUE(rot::check_kernel_ima_conflict(root_.path(), "tpm2", shared_tpm(), 11));
}

TEST_F(KernelIma, UnsharedBackendAccepted) {
  write_list("ima", {10}, 4);
  Description description = shared_tpm();
  description.kernel_shared = false;
  EXPECT_TRUE(rot::check_kernel_ima_conflict(root_.path(), "swtpm", description, 10));
}

TEST_F(KernelIma, EmptyListAccepted) {
  write_list("ima", {}, 0);
  auto found = rot::find_kernel_ima(root_.path());
  ASSERT_TRUE(found) << found.error().message;
  ASSERT_TRUE(found->has_value());
  EXPECT_EQ((*found)->entries, 0u);
  EXPECT_TRUE(rot::check_kernel_ima_conflict(root_.path(), "tpm2", shared_tpm(), 10));
}

TEST_F(KernelIma, IntegrityPathChecked) {
  write_list("integrity/ima", {10}, 2);
  auto checked = rot::check_kernel_ima_conflict(root_.path(), "tpm2", shared_tpm(), 10);
  ASSERT_FALSE(checked);
  EXPECT_NE(checked.error().message.find("integrity/ima/binary_runtime_measurements"), std::string::npos)
      << checked.error().message;
}

TEST_F(KernelIma, UnreadableListRejected) {
  std::filesystem::create_directories(root_.path() + "/ima");
  auto checked = rot::check_kernel_ima_conflict(root_.path(), "tpm2", shared_tpm(), 10);
  ASSERT_FALSE(checked);
  EXPECT_NE(checked.error().message.find("cannot be checked"), std::string::npos) << checked.error().message;
  EXPECT_NE(checked.error().message.find("binary_runtime_measurements"), std::string::npos) << checked.error().message;
}

TEST_F(KernelIma, MalformedListRejected) {
  std::filesystem::create_directories(root_.path() + "/ima");
  // A record header cut short after its PCR field.
  write_text_file(root_.path() + "/ima/binary_runtime_measurements", std::string("\x0a\x00\x00\x00\x01", 5));
  auto checked = rot::check_kernel_ima_conflict(root_.path(), "tpm2", shared_tpm(), 10);
  ASSERT_FALSE(checked);
  EXPECT_NE(checked.error().message.find("does not parse"), std::string::npos) << checked.error().message;
}

}  // namespace
}  // namespace imarot::test
