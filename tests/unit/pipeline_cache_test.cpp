// Pipeline::complete_cached(): accesses completed from the file's identity
// alone, before a source reads the task. The probe must be refused whenever
// the full event could end differently.
#include <gtest/gtest.h>

#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <fcntl.h>

#include <filesystem>

#include "log_store.h"
#include "pipeline.h"
#include "test_util.h"

namespace imarotd {
namespace {

using imarot::test::TempDir;
using imarot::test::write_file;

class NullTarget : public CommitTarget {
 public:
  void extend(const std::vector<imarot::Entry>& entries, uint64_t first_index) override {
    (void)entries, (void)first_index;
  }
};

class PipelineCache : public ::testing::Test {
 protected:
  void start(const std::string& policy_text) {
    auto store = LogStore::open(dir_.file("state"), "boot");
    ASSERT_TRUE(store) << store.error().message;
    log_ = std::move(*store);
    auto policy = imarot::load_policy(policy_text, "test");
    ASSERT_TRUE(policy) << policy.error().message;
    PipelineOptions options;
    options.hash_threads = 1;
    pipeline_ = std::make_unique<Pipeline>(options, std::make_shared<imarot::Policy>(*policy), *log_, target_);
    pipeline_->start();
  }

  void TearDown() override {
    if (pipeline_) pipeline_->stop();
  }

  std::string make_file(const std::string& name, const std::string& content) {
    std::string path = dir_.file(name);
    write_file(path, content);
    return path;
  }

  static FileIdentity identity_of(const std::string& path) {
    struct stat st {};
    EXPECT_EQ(::stat(path.c_str(), &st), 0);
    FileIdentity file;
    file.dev = st.st_dev;
    file.ino = st.st_ino;
    file.mode = st.st_mode;
    file.owner = st.st_uid;
    file.group = st.st_gid;
    file.change_counter = static_cast<uint64_t>(st.st_ctim.tv_sec) * 1000000000u + st.st_ctim.tv_nsec;
    return file;
  }

  FileEvent event_for(const std::string& path, Hook hook, uint32_t mask, EventKind kind = EventKind::access) {
    FileEvent event;
    event.kind = kind;
    event.hook = hook;
    event.mask = mask;
    event.path = path;
    event.write_access = (mask & kMayWrite) != 0;
    event.file = identity_of(path);
    if (kind == EventKind::access) event.fd = UniqueFd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    return event;
  }

  // The probe a source sends for an exec open of `path`.
  static CachedAccessProbe exec_probe(const std::string& path) {
    CachedAccessProbe probe;
    probe.file = identity_of(path);
    probe.mask = kMayExec;
    probe.hooks = {Hook::bprm_check, Hook::mmap_check};
    probe.hook_count = 2;
    return probe;
  }

  // The probe a source sends for an open for reading of `path`.
  static CachedAccessProbe read_probe(const std::string& path) {
    CachedAccessProbe probe;
    probe.file = identity_of(path);
    probe.mask = kMayRead;
    probe.hooks = {Hook::file_check, Hook::file_check};
    probe.hook_count = 1;
    probe.counts_reader = true;
    return probe;
  }

  void measure(const std::string& path, Hook hook, uint32_t mask) {
    pipeline_->submit(event_for(path, hook, mask));
    pipeline_->wait_idle();
  }

  TempDir dir_;
  std::unique_ptr<LogStore> log_;
  NullTarget target_;
  std::unique_ptr<Pipeline> pipeline_;
};

TEST_F(PipelineCache, MeasuredExecCompletesFromIdentity) {
  start("measure func=BPRM_CHECK\n");
  std::string tool = make_file("tool", "version 1");
  EXPECT_FALSE(pipeline_->complete_cached(exec_probe(tool))) << "not measured yet";

  measure(tool, Hook::bprm_check, kMayExec);
  ASSERT_EQ(log_->size(), 1u);
  EXPECT_TRUE(pipeline_->complete_cached(exec_probe(tool)));
  EXPECT_EQ(pipeline_->counters().completed_from_identity.load(), 1u);
  EXPECT_EQ(pipeline_->counters().cached.load(), 1u);

  // Changed: its ctime moves, and the full event must measure it again.
  ::usleep(10000);
  write_file(tool, "version 2");
  EXPECT_FALSE(pipeline_->complete_cached(exec_probe(tool)));
  EXPECT_EQ(log_->size(), 1u);
}

TEST_F(PipelineCache, OtherGenerationIsNotCached) {
  start("measure func=BPRM_CHECK\n");
  std::string tool = make_file("tool", "x");
  measure(tool, Hook::bprm_check, kMayExec);
  CachedAccessProbe probe = exec_probe(tool);
  probe.file.generation += 1;  // the inode number was reused by another file
  EXPECT_FALSE(pipeline_->complete_cached(probe));
}

TEST_F(PipelineCache, TaskConditionsNeedTheFullEvent) {
  struct Case {
    std::string policy;
    bool cached;
  };
  // Each policy measures the file when root executes it.
  const std::string owner = std::to_string(::geteuid());
  const Case cases[] = {
      {"measure func=BPRM_CHECK uid=0\n", false},
      {"measure func=BPRM_CHECK euid=0\n", false},
      {"measure func=BPRM_CHECK gid=0\n", false},
      {"measure func=BPRM_CHECK egid=0\n", false},
      // A task-dependent rule before the one that decides for root.
      {"dont_measure func=BPRM_CHECK uid=1000\nmeasure func=BPRM_CHECK\n", false},
      // File conditions depend on the file alone.
      {"measure func=BPRM_CHECK fowner=" + owner + "\n", true},
      // A task-dependent rule for another hook does not matter.
      {"measure func=FILE_CHECK uid=0\nmeasure func=BPRM_CHECK\n", true},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.policy);
    start(c.policy);
    std::string tool = make_file("tool", c.policy);
    FileEvent event = event_for(tool, Hook::bprm_check, kMayExec);
    event.creds.known = true;  // root: uid, gid and the others 0
    pipeline_->submit(std::move(event));
    pipeline_->wait_idle();
    ASSERT_EQ(log_->size(), 1u) << "root's exec was not measured";
    EXPECT_EQ(pipeline_->complete_cached(exec_probe(tool)), c.cached);
    pipeline_->stop();
    pipeline_.reset();
    log_.reset();
    ::unlink(tool.c_str());
    std::filesystem::remove_all(dir_.file("state"));
  }
}

TEST_F(PipelineCache, UnmeasuredHookCompletesAtOnce) {
  // Reads are measured only for root, but an exec is measured by no rule.
  start("measure func=FILE_CHECK mask=^MAY_READ uid=0\n");
  std::string tool = make_file("tool", "x");
  EXPECT_TRUE(pipeline_->complete_cached(exec_probe(tool)));
  EXPECT_EQ(pipeline_->counters().cached.load(), 0u);
  EXPECT_EQ(log_->size(), 0u);
}

TEST_F(PipelineCache, ExecNeedsBothHooksSettled) {
  // An exec open may be MMAP_CHECK (a dynamic linker), which this policy
  // measures and which has not measured the file yet.
  start("measure func=MMAP_CHECK\n");
  std::string linker = make_file("ld.so", "x");
  EXPECT_FALSE(pipeline_->complete_cached(exec_probe(linker)));
  measure(linker, Hook::mmap_check, kMayExec);
  EXPECT_TRUE(pipeline_->complete_cached(exec_probe(linker)));
}

TEST_F(PipelineCache, WriterOpenLeavesReadToFullEvent) {
  start("measure func=FILE_CHECK mask=^MAY_READ\n");
  std::string path = make_file("writer.conf", "x");
  measure(path, Hook::file_check, kMayRead);
  pipeline_->submit(event_for(path, Hook::file_check, kMayRead, EventKind::read_close));
  pipeline_->wait_idle();
  EXPECT_TRUE(pipeline_->complete_cached(read_probe(path)));
  pipeline_->submit(event_for(path, Hook::file_check, kMayRead, EventKind::read_close));

  // A writer has it open: the read may be an open-writers violation.
  pipeline_->submit(event_for(path, Hook::file_check, kMayWrite, EventKind::write_open));
  pipeline_->wait_idle();
  EXPECT_FALSE(pipeline_->complete_cached(read_probe(path)));
}

TEST_F(PipelineCache, CachedReaderCountsForToMToU) {
  start("measure func=FILE_CHECK mask=^MAY_READ\n");
  std::string path = make_file("tomtou.conf", "x");
  measure(path, Hook::file_check, kMayRead);
  pipeline_->submit(event_for(path, Hook::file_check, kMayRead, EventKind::read_close));
  pipeline_->wait_idle();

  // A second reader, completed from the cache, keeps it open while a writer
  // opens it. That is one ToMToU violation, as for a reader that a full
  // event counted.
  ASSERT_TRUE(pipeline_->complete_cached(read_probe(path)));
  pipeline_->submit(event_for(path, Hook::file_check, kMayWrite, EventKind::write_open));
  pipeline_->wait_idle();
  ASSERT_EQ(log_->size(), 2u);
  EXPECT_FALSE(log_->entries()[0].is_violation());
  EXPECT_TRUE(log_->entries()[1].is_violation());
  EXPECT_EQ(pipeline_->counters().violations.load(), 1u);
}

TEST_F(PipelineCache, ReloadedPolicyIsUsed) {
  start("measure func=BPRM_CHECK\n");
  std::string tool = make_file("tool", "x");
  measure(tool, Hook::bprm_check, kMayExec);
  ASSERT_TRUE(pipeline_->complete_cached(exec_probe(tool)));

  auto reloaded = imarot::load_policy("measure func=BPRM_CHECK uid=0\n", "reloaded");
  ASSERT_TRUE(reloaded) << reloaded.error().message;
  pipeline_->set_policy(std::make_shared<imarot::Policy>(*reloaded));
  EXPECT_FALSE(pipeline_->complete_cached(exec_probe(tool)));
}

TEST(FilesystemNames, NamesKernelFilesystems) {
  FilesystemNames names;
  struct stat st {};
  ASSERT_EQ(::stat("/proc", &st), 0);
  EXPECT_EQ(names.name_of(st.st_dev, 0x9fa0), "proc");
  ASSERT_EQ(::stat("/sys", &st), 0);
  EXPECT_EQ(names.name_of(st.st_dev, 0x62656572), "sysfs");
  EXPECT_EQ(names.name_of(makedev(4095, 1048575), 0), "") << "a device with no mount";
  EXPECT_EQ(names.name_of(makedev(4095, 1048575), 0), "") << "the same device, answered from the cache";
}

TEST(FilesystemNames, DropsFuseSubtype) {
  EXPECT_EQ(superblock_type_name("fuse.sshfs"), "fuse");
  EXPECT_EQ(superblock_type_name("fuseblk.ntfs-3g"), "fuseblk");
  EXPECT_EQ(superblock_type_name("ext4"), "ext4");
}

TEST_F(PipelineCache, FsnameRuleMatchesFilesystemType) {
  std::string file = make_file("config", "x");
  struct stat st {};
  ASSERT_EQ(::stat(file.c_str(), &st), 0);
  std::string type = FilesystemNames().name_of(st.st_dev, 0);
  ASSERT_FALSE(type.empty());

  start("dont_measure fsname=" + type + "\nmeasure func=FILE_CHECK\n");
  measure(file, Hook::file_check, kMayRead);
  EXPECT_EQ(log_->size(), 0u) << "dont_measure fsname=" << type << " did not match";
}

TEST_F(PipelineCache, FsnameRuleSkipsOtherFilesystems) {
  std::string file = make_file("config", "x");
  start("dont_measure fsname=nosuchfs\nmeasure func=FILE_CHECK\n");
  measure(file, Hook::file_check, kMayRead);
  EXPECT_EQ(log_->size(), 1u);
}

}  // namespace
}  // namespace imarotd
