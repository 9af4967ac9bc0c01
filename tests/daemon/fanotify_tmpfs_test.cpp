// The fanotify source on private tmpfs mounts: queue overflow, files on a
// detached mount, and the mounted-filesystem listing.
#include <sys/statfs.h>
#include <sys/sysmacros.h>

#include "fanotify_source.h"
#include "fanotify_test_util.h"

namespace imarotd {
namespace {

using namespace test;

constexpr uint64_t kTmpfsMagic = 0x01021994;
constexpr uint64_t kExt4Magic = 0xEF53;

class FanotifyTmpfs : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(::geteuid(), 0u) << kNeedsRoot;
    fs_ = std::make_unique<TestFilesystem>(TestFilesystem::Kind::tmpfs);
    ASSERT_TRUE(fs_->error.empty()) << fs_->error;
  }

  std::unique_ptr<TestFilesystem> fs_;
};

TEST_F(FanotifyTmpfs, FilesystemMarkWorksOnTmpfs) {
  std::string file = fs_->path("plain.txt");
  ASSERT_TRUE(write_text(file, "tmpfs"));
  RecordingSink sink;
  FanotifyOptions options;
  options.mount_points = {fs_->mount_point};
  FanotifySource source(options);
  auto started = source.start(sink);
  ASSERT_TRUE(started) << started.error().message;

  pid_t pid = spawn([&] {
    int fd = ::open(file.c_str(), O_RDONLY);
    return fd >= 0 && ::close(fd) == 0 ? 0 : 1;
  });
  ASSERT_EQ(wait_child(pid), 0);
  FileEvent* event = sink.wait_for(event_of(pid, EventKind::access, Hook::file_check));
  ASSERT_NE(event, nullptr);
  EXPECT_EQ(event->path, file);
  EXPECT_EQ(event->file.fsmagic, kTmpfsMagic);
  EXPECT_EQ(event->file.generation, 0u) << "tmpfs has no FS_IOC_GETVERSION";
}

TEST_F(FanotifyTmpfs, QueueOverflowBecomesLostEvent) {
  // More distinct files than the queue can contain
  // (fs.fanotify.max_queued_events, 16384 by default). An open and its close merge into one queued event.
  std::string limit_text = read_text("/proc/sys/fs/fanotify/max_queued_events");
  size_t queue_limit = limit_text.empty() ? 16384 : std::stoul(limit_text);
  size_t file_count = queue_limit + queue_limit / 2;
  std::string dir = fs_->path("many");
  ASSERT_EQ(::mkdir(dir.c_str(), 0755), 0);
  std::vector<std::string> files;
  for (size_t i = 0; i < file_count; ++i) {
    files.push_back(dir + "/f" + std::to_string(i));
    ASSERT_TRUE(write_text(files.back(), "")) << files.back();
  }
  std::string gate = fs_->path("gate");
  ASSERT_TRUE(write_text(gate, "gate"));

  // The sink drops descriptors, so thousands of events hold none.
  RecordingSink sink(/*hold_completions=*/false, /*keep_fds=*/false);
  sink.block_when([&](const FileEvent& e) { return e.path == gate; });
  // Notification events: with permission events every opener would wait
  // for the held reader, and the queue could not fill.
  FanotifyOptions options;
  options.mount_points = {fs_->mount_point};
  options.notification_events = true;
  FanotifySource source(options);
  auto started = source.start(sink);
  ASSERT_TRUE(started) << started.error().message;

  pid_t pid = spawn([&] {
    int fd = ::open(gate.c_str(), O_RDONLY);
    if (fd < 0) return 1;
    ::close(fd);
    for (const auto& file : files) {
      fd = ::open(file.c_str(), O_RDONLY);
      if (fd < 0) return 2;
      ::close(fd);
    }
    return 0;
  });
  ASSERT_TRUE(sink.wait_until_blocked(10s));
  ASSERT_EQ(wait_child(pid, 60s), 0);
  sink.release();

  FileEvent* lost = sink.wait_for([](const FileEvent& e) { return e.kind == EventKind::lost; }, 60s);
  ASSERT_NE(lost, nullptr) << "no lost event after " << file_count << " events";
  EXPECT_EQ(lost->lost_reason, "fanotify queue overflow");
  EXPECT_GE(lost->lost_count, 1u);
  EXPECT_GE(source.stats().lost.load(), 1u);
  EXPECT_GT(source.stats().events.load(), 0u);
  source.stop();
  EXPECT_LT(sink.matching([&](const FileEvent& e) { return e.pid == pid && e.kind == EventKind::access; }).size(),
            file_count);
}

TEST_F(FanotifyTmpfs, DetachedMountGivesFinalComponent) {
  std::string inner = fs_->path("d/inner");
  ASSERT_EQ(::mkdir(fs_->path("d").c_str(), 0755), 0);
  ASSERT_EQ(::mkdir(inner.c_str(), 0755), 0);
  ASSERT_TRUE(write_text(inner + "/file.conf", "detached"));

  // Permission events keep the task alive while the reader looks up its
  // mount namespace.
  RecordingSink sink;
  FanotifyOptions options;
  options.mount_points = {fs_->mount_point};
  options.measure_before_use = true;
  FanotifySource source(options);
  auto started = source.start(sink);
  ASSERT_TRUE(started) << started.error().message;

  int go[2];
  int ready[2];
  ASSERT_EQ(::pipe(go), 0);
  ASSERT_EQ(::pipe(ready), 0);
  pid_t pid = spawn([&] {
    ::close(go[1]);
    ::close(ready[0]);
    int dir = ::open(inner.c_str(), O_PATH | O_DIRECTORY);
    char byte;
    if (dir < 0 || ::write(ready[1], "r", 1) != 1 || ::read(go[0], &byte, 1) != 1) return 7;
    int fd = ::openat(dir, "file.conf", O_RDONLY);
    return fd >= 0 && ::close(fd) == 0 ? 0 : 1;
  });
  ::close(go[0]);
  ::close(ready[1]);
  // The child opens the directory before the mount is detached.
  char byte;
  ASSERT_EQ(::read(ready[0], &byte, 1), 1);
  ::close(ready[0]);
  ASSERT_EQ(::umount2(fs_->mount_point.c_str(), MNT_DETACH), 0) << std::strerror(errno);
  ASSERT_EQ(::write(go[1], "g", 1), 1);
  ::close(go[1]);
  ASSERT_EQ(wait_child(pid), 0);

  FileEvent* event = sink.wait_for(event_of(pid, EventKind::access, Hook::file_check));
  ASSERT_NE(event, nullptr);
  // d_absolute_path() fails on a detached mount, so kernel IMA records the
  // dentry name.
  EXPECT_EQ(event->path, "file.conf");
  EXPECT_FALSE(event->deleted);
  ASSERT_TRUE(event->fd);
  EXPECT_EQ(read_fd_content(event->fd.get()), "detached");
}

// ---------------------------------------------------------------------------
// Mounted filesystems

TEST_F(FanotifyTmpfs, ListingFindsTestFilesystems) {
  TestFilesystem ext4(TestFilesystem::Kind::ext4);
  ASSERT_TRUE(ext4.error.empty()) << ext4.error;
  auto listed = list_mounted_filesystems();
  ASSERT_TRUE(listed) << listed.error().message;

  const MountedFilesystem* tmpfs_entry = nullptr;
  const MountedFilesystem* ext4_entry = nullptr;
  for (const auto& fs : *listed) {
    if (fs.mount_point == fs_->mount_point) tmpfs_entry = &fs;
    if (fs.mount_point == ext4.mount_point) ext4_entry = &fs;
  }
  ASSERT_NE(tmpfs_entry, nullptr);
  ASSERT_NE(ext4_entry, nullptr);
  EXPECT_EQ(tmpfs_entry->fstype, "tmpfs");
  EXPECT_EQ(tmpfs_entry->fsmagic, kTmpfsMagic);
  EXPECT_TRUE(tmpfs_entry->reachable);
  EXPECT_EQ(ext4_entry->fstype, "ext4");
  EXPECT_EQ(ext4_entry->fsmagic, kExt4Magic);
  EXPECT_TRUE(ext4_entry->reachable);
  EXPECT_EQ(ext4_entry->root, "/");
  struct stat st {};
  ASSERT_EQ(::stat(ext4.mount_point.c_str(), &st), 0);
  EXPECT_EQ(ext4_entry->dev, st.st_dev);

  auto selected = select_mount_points(*listed, [](const MountedFilesystem& fs) { return fs.fsmagic == kExt4Magic; });
  EXPECT_NE(std::find(selected.begin(), selected.end(), ext4.mount_point), selected.end());
  EXPECT_EQ(std::find(selected.begin(), selected.end(), fs_->mount_point), selected.end());
}

TEST_F(FanotifyTmpfs, ListingDecodesEscapedMountPoint) {
  std::string odd = fs_->scratch_dir() + "/with space\tand tab\\";
  ASSERT_EQ(::mkdir(odd.c_str(), 0755), 0);
  ASSERT_EQ(::mount("imarotd-odd", odd.c_str(), "tmpfs", 0, "size=1m"), 0) << std::strerror(errno);
  auto listed = list_mounted_filesystems();
  ::umount2(odd.c_str(), 0);
  ASSERT_TRUE(listed) << listed.error().message;
  auto found = std::find_if(listed->begin(), listed->end(), [&](const auto& fs) { return fs.mount_point == odd; });
  ASSERT_NE(found, listed->end());
  EXPECT_EQ(found->source, "imarotd-odd");
  EXPECT_TRUE(found->reachable);
}

TEST_F(FanotifyTmpfs, HiddenMountAndBindMountAreSelectedOnce) {
  std::string stacked = fs_->scratch_dir() + "/stacked";
  std::string bound = fs_->scratch_dir() + "/bound";
  ASSERT_EQ(::mkdir(stacked.c_str(), 0755), 0);
  ASSERT_EQ(::mkdir(bound.c_str(), 0755), 0);
  ASSERT_EQ(::mount("imarotd-lower", stacked.c_str(), "tmpfs", 0, "size=1m"), 0);
  ASSERT_EQ(::mount("imarotd-upper", stacked.c_str(), "tmpfs", 0, "size=1m"), 0);
  ASSERT_EQ(::mount(fs_->mount_point.c_str(), bound.c_str(), nullptr, MS_BIND, nullptr), 0);
  auto listed = list_mounted_filesystems();
  ::umount2(bound.c_str(), 0);
  ::umount2(stacked.c_str(), 0);
  ::umount2(stacked.c_str(), 0);
  ASSERT_TRUE(listed) << listed.error().message;

  std::vector<const MountedFilesystem*> at_stacked;
  for (const auto& fs : *listed) {
    if (fs.mount_point == stacked) at_stacked.push_back(&fs);
  }
  ASSERT_EQ(at_stacked.size(), 2u);
  EXPECT_EQ(at_stacked[0]->source, "imarotd-lower");
  EXPECT_FALSE(at_stacked[0]->reachable) << "a mount hidden by a later one is not reachable";
  EXPECT_TRUE(at_stacked[1]->reachable);

  auto ours = [&](const MountedFilesystem& fs) {
    return fs.mount_point == stacked || fs.mount_point == bound || fs.mount_point == fs_->mount_point;
  };
  auto selected = select_mount_points(*listed, ours);
  ASSERT_EQ(selected.size(), 2u);
  EXPECT_EQ(selected[0], fs_->mount_point) << "one mount point per filesystem, the first listed";
  EXPECT_EQ(selected[1], stacked);
}

TEST_F(FanotifyTmpfs, InvalidMountinfoNamesFileAndLine) {
  std::string file = fs_->path("mountinfo");
  ASSERT_TRUE(write_text(file, "22 27 0:21 / /proc rw,relatime - proc proc rw\nnot a mountinfo line\n"));
  auto listed = list_mounted_filesystems(file);
  ASSERT_FALSE(listed);
  EXPECT_NE(listed.error().message.find(file + ":2: invalid mountinfo line"), std::string::npos)
      << listed.error().message;
}

TEST_F(FanotifyTmpfs, MountinfoOptionalFieldsAreSkipped) {
  std::string file = fs_->path("mountinfo");
  ASSERT_TRUE(write_text(file,
                         "36 35 98:0 /mnt1 /mnt\\0402 rw,noatime master:1 shared:2 - ext3 /dev/root "
                         "rw,errors=continue\n"));
  auto listed = list_mounted_filesystems(file);
  ASSERT_TRUE(listed) << listed.error().message;
  ASSERT_EQ(listed->size(), 1u);
  const auto& fs = (*listed)[0];
  EXPECT_EQ(fs.mount_id, 36);
  EXPECT_EQ(fs.parent_id, 35);
  EXPECT_EQ(fs.dev, makedev(98, 0));
  EXPECT_EQ(fs.root, "/mnt1");
  EXPECT_EQ(fs.mount_point, "/mnt 2");
  EXPECT_EQ(fs.mount_options, "rw,noatime");
  EXPECT_EQ(fs.fstype, "ext3");
  EXPECT_EQ(fs.source, "/dev/root");
  EXPECT_EQ(fs.super_options, "rw,errors=continue");
  EXPECT_FALSE(fs.reachable);
}

}  // namespace
}  // namespace imarotd
