// Checks the daemon runs on its configuration before it starts, and the
// helpers behind their messages. No root: mount tables are files here.
#include <gtest/gtest.h>

#include <limits.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <cerrno>
#include <chrono>

#include "config.h"
#include "daemon.h"
#include "log_rate_limit.h"
#include "securityfs.h"
#include "test_util.h"
#include "text_file.h"

namespace imarotd {
namespace {

using imarot::test::TempDir;
using imarot::test::write_file;

std::string real_path(const std::string& path) {
  char resolved[PATH_MAX];
  return ::realpath(path.c_str(), resolved) != nullptr ? std::string(resolved) : path;
}

TEST(TextFile, ReadsContent) {
  TempDir dir;
  write_file(dir.file("a"), "measure func=FILE_CHECK\n");
  auto text = read_text_file(dir.file("a"));
  ASSERT_TRUE(text) << text.error().message;
  EXPECT_EQ(*text, "measure func=FILE_CHECK\n");
}

TEST(TextFile, DirectoryIsEisdir) {
  TempDir dir;
  auto text = read_text_file(dir.path());
  ASSERT_FALSE(text);
  EXPECT_EQ(text.error().code, EISDIR);
  EXPECT_EQ(text.error().message, "Is a directory");
}

TEST(TextFile, MissingIsEnoent) {
  TempDir dir;
  auto text = read_text_file(dir.file("missing"));
  ASSERT_FALSE(text);
  EXPECT_EQ(text.error().code, ENOENT);
  EXPECT_EQ(text.error().message, "No such file or directory");
}

TEST(ConfiguredPolicy, DirectoryIsLocatedError) {
  TempDir dir;
  DaemonConfig config;
  config.source_path = dir.file("imarotd.json");
  config.policy = dir.path();
  auto policy = load_configured_policy(config);
  ASSERT_FALSE(policy);
  EXPECT_EQ(policy.error().message.rfind(dir.path() + ": is a directory, expected a policy file", 0), 0u)
      << policy.error().message;
  EXPECT_NE(policy.error().message.find(config.source_path), std::string::npos) << policy.error().message;
}

TEST(ConfiguredPolicy, MissingFileGivesReason) {
  TempDir dir;
  DaemonConfig config;
  config.source_path = dir.file("imarotd.json");
  config.policy = dir.file("missing.policy");
  auto policy = load_configured_policy(config);
  ASSERT_FALSE(policy);
  EXPECT_EQ(policy.error().message, "cannot read the policy file '" + config.policy + "' named in " +
                                        config.source_path + ": No such file or directory");
}

TEST(ConfiguredPolicy, UnreadableFileGivesReason) {
  if (::geteuid() == 0) GTEST_SKIP() << "root reads a file with mode 000";
  TempDir dir;
  DaemonConfig config;
  config.source_path = dir.file("imarotd.json");
  config.policy = dir.file("imarotd.policy");
  write_file(config.policy, "measure func=FILE_CHECK\n");
  ::chmod(config.policy.c_str(), 0);
  auto policy = load_configured_policy(config);
  ASSERT_FALSE(policy);
  EXPECT_NE(policy.error().message.find(": Permission denied"), std::string::npos) << policy.error().message;
}

TEST(ConfigFile, DirectoryIsRejected) {
  TempDir dir;
  auto config = load_config(dir.path(), "/plugins");
  ASSERT_FALSE(config);
  EXPECT_EQ(config.error().message, dir.path() + ": is a directory, expected a configuration file");
  EXPECT_EQ(config.error().code, EISDIR);
}

TEST(ConfigFile, MissingGivesReason) {
  TempDir dir;
  auto config = load_config(dir.file("none.json"), "/plugins");
  ASSERT_FALSE(config);
  EXPECT_EQ(config.error().message,
            "cannot read the configuration file '" + dir.file("none.json") + "': No such file or directory");
  EXPECT_EQ(config.error().code, ENOENT);
}

// A mount table in which "/" and the test's directory are mount points.
class CheckFilesystems : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = real_path(dir_.path());
    ::mkdir((root_ + "/sub").c_str(), 0755);
    write_file(dir_.file("mountinfo"),
               "1 0 8:1 / / rw,relatime - ext4 /dev/sda1 rw\n"
               "2 1 0:40 / " + root_ + " rw,relatime - tmpfs tmpfs rw\n");
    config_.source_path = "imarotd.json";
  }

  imarot::Result<void> check(const std::string& path) {
    config_.filesystems = {path};
    return check_filesystems(config_, dir_.file("mountinfo"));
  }

  TempDir dir_;
  std::string root_;
  DaemonConfig config_;
};

TEST_F(CheckFilesystems, MountPointAccepted) {
  auto checked = check(root_);
  EXPECT_TRUE(checked) << checked.error().message;
}

TEST_F(CheckFilesystems, RootAccepted) {
  auto checked = check("/");
  EXPECT_TRUE(checked) << checked.error().message;
}

TEST_F(CheckFilesystems, EmptyListAccepted) {
  config_.filesystems.clear();
  EXPECT_TRUE(check_filesystems(config_, dir_.file("missing-mountinfo")));
}

TEST_F(CheckFilesystems, DirectoryNamesItsMountPoint) {
  auto checked = check(root_ + "/sub");
  ASSERT_FALSE(checked);
  EXPECT_EQ(checked.error().message, "imarotd.json: filesystems[0]: '" + root_ +
                                         "/sub' is not a mount point; fanotify watches whole "
                                         "filesystems, so give the mount point ('" + root_ + "') instead");
}

TEST_F(CheckFilesystems, DirectoryOnRootNamesRoot) {
  // The directory of the test is a mount point only in the table above, so
  // its parent is on "/" there.
  std::string parent = root_.substr(0, root_.rfind('/'));
  auto checked = check(parent);
  ASSERT_FALSE(checked);
  EXPECT_NE(checked.error().message.find("so give the mount point ('/') instead"), std::string::npos)
      << checked.error().message;
}

TEST_F(CheckFilesystems, PrefixIsNotContainment) {
  // root_ + "x" starts with root_ but is not below it.
  std::string sibling = root_ + "x";
  ::mkdir(sibling.c_str(), 0755);
  auto checked = check(sibling);
  ::rmdir(sibling.c_str());
  ASSERT_FALSE(checked);
  EXPECT_NE(checked.error().message.find("so give the mount point ('/') instead"), std::string::npos)
      << checked.error().message;
}

TEST_F(CheckFilesystems, SymlinkIsResolved) {
  ASSERT_EQ(::symlink(root_.c_str(), dir_.file("to-root").c_str()), 0);
  ASSERT_EQ(::symlink((root_ + "/sub").c_str(), dir_.file("to-sub").c_str()), 0);
  auto accepted = check(dir_.file("to-root"));
  EXPECT_TRUE(accepted) << accepted.error().message;
  auto rejected = check(dir_.file("to-sub"));
  ASSERT_FALSE(rejected);
  EXPECT_NE(rejected.error().message.find("(resolved to '" + root_ + "/sub') is not a mount point"),
            std::string::npos)
      << rejected.error().message;
}

TEST_F(CheckFilesystems, MissingPathGivesReason) {
  auto checked = check(root_ + "/missing");
  ASSERT_FALSE(checked);
  EXPECT_EQ(checked.error().message, "imarotd.json: filesystems[0]: '" + root_ +
                                         "/missing' cannot be used: No such file or directory; give the mount "
                                         "point of a filesystem to measure");
}

TEST(LogRateLimit, LogsBurstThenCounts) {
  LogRateLimit limit(3, std::chrono::seconds(60));
  auto start = LogRateLimit::Clock::time_point() + std::chrono::hours(1);
  for (int i = 0; i < 3; ++i) {
    auto decision = limit.admit(start + std::chrono::seconds(i));
    EXPECT_TRUE(decision.log) << i;
    EXPECT_EQ(decision.suppressed, 0u) << i;
  }
  for (int i = 3; i < 17; ++i) EXPECT_FALSE(limit.admit(start + std::chrono::seconds(i)).log) << i;
  EXPECT_EQ(limit.take_suppressed(start + std::chrono::seconds(30)), 0u);
}

TEST(LogRateLimit, NextIntervalReportsCount) {
  LogRateLimit limit(2, std::chrono::seconds(60));
  auto start = LogRateLimit::Clock::time_point() + std::chrono::hours(1);
  for (int i = 0; i < 7; ++i) limit.admit(start + std::chrono::seconds(i));
  auto decision = limit.admit(start + std::chrono::seconds(60));
  EXPECT_TRUE(decision.log);
  EXPECT_EQ(decision.suppressed, 5u);
  EXPECT_TRUE(limit.admit(start + std::chrono::seconds(61)).log);
  EXPECT_FALSE(limit.admit(start + std::chrono::seconds(62)).log);
}

TEST(LogRateLimit, TimerTakesCountAfterInterval) {
  LogRateLimit limit(1, std::chrono::seconds(60));
  auto start = LogRateLimit::Clock::time_point() + std::chrono::hours(1);
  for (int i = 0; i < 4; ++i) limit.admit(start);
  EXPECT_EQ(limit.take_suppressed(start + std::chrono::seconds(59)), 0u);
  EXPECT_EQ(limit.take_suppressed(start + std::chrono::seconds(60)), 3u);
  EXPECT_EQ(limit.take_suppressed(start + std::chrono::seconds(61)), 0u);
}

TEST(LogRateLimit, FlushTakesCountEarly) {
  LogRateLimit limit(1, std::chrono::seconds(60));
  auto start = LogRateLimit::Clock::time_point() + std::chrono::hours(1);
  limit.admit(start);
  limit.admit(start);
  EXPECT_EQ(limit.take_suppressed(start, /*flush=*/true), 1u);
}

TEST(LsmList, NotSecurityfsSaysSo) {
  TempDir dir;
  auto listed = read_lsm_list(dir.file("lsm"));
  ASSERT_FALSE(listed);
  EXPECT_EQ(listed.error().message, dir.file("lsm") + " is not readable: securityfs is not mounted at " +
                                        dir.path() + " (mount -t securityfs securityfs " + dir.path() + ")");
}

TEST(LsmList, MissingDirectoryGivesErrno) {
  auto listed = read_lsm_list("/nonexistent/imarotd/lsm");
  ASSERT_FALSE(listed);
  EXPECT_EQ(listed.error().message, "/nonexistent/imarotd/lsm is not readable: No such file or directory");
}

TEST(LsmList, ReadsList) {
  TempDir dir;
  write_file(dir.file("lsm"), "lockdown,capability,bpf");
  auto listed = read_lsm_list(dir.file("lsm"));
  ASSERT_TRUE(listed) << listed.error().message;
  EXPECT_EQ(*listed, "lockdown,capability,bpf");
}

}  // namespace
}  // namespace imarotd
