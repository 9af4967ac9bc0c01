// The eBPF LSM source on a build machine: decoding of the programs' records,
// the in-kernel filter derived from policies, the loader's phases and maps,
// and the fanotify fallback when the kernel refuses the programs.
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>

#include <gtest/gtest.h>

#include "bpf_source.h"
#include "config.h"
#include "daemon.h"
#include "imarot/policy.h"
#include "imarotd_event.h"

namespace imarotd {
namespace {

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

imarot::Policy parse(const std::string& text) {
  auto parsed = imarot::load_policy(text, "test.policy");
  EXPECT_TRUE(parsed) << parsed.error().message;
  return parsed ? *parsed : imarot::Policy{};
}

std::unique_ptr<imarotd_access_record> access_record(const std::string& path) {
  auto record = std::make_unique<imarotd_access_record>();
  std::memset(record.get(), 0, sizeof *record);
  record->type = IMAROTD_RECORD_ACCESS;
  record->hook = IMAROTD_HOOK_BPRM_CHECK;
  record->mask = kMayExec;
  record->pid = 4242;
  record->tgid = 4240;
  record->creds.uid = 1000;
  record->creds.euid = 0;
  record->creds.cap_effective_low = 1u << 7;  // CAP_SETUID only
  record->file.dev = (259u << 20) | 3u;       // nvme0n1p3 in the kernel's encoding
  record->file.ino = 1234567;
  record->file.change_counter = 1700000000123456789ULL;
  record->file.fsmagic = 0xEF53;
  record->file.generation = 77;
  record->file.uid = 0;
  record->file.gid = 4;
  record->file.mode = S_IFREG | 0755;
  std::memcpy(record->comm, "bash", 4);
  std::string name = path.substr(path.rfind('/') + 1);
  std::memcpy(record->name, name.data(), std::min(name.size(), sizeof record->name - 1));
  std::memcpy(record->path, path.data(), path.size());
  record->path_length = static_cast<int32_t>(path.size() + 1);
  return record;
}

// ---------------------------------------------------------------------------
// Record decoding

TEST(BpfRecordDecode, AccessFields) {
  auto record = access_record("/usr/bin/true");
  FileEvent event = decode_access_record(*record);
  EXPECT_EQ(event.kind, EventKind::access);
  EXPECT_EQ(event.hook, Hook::bprm_check);
  EXPECT_EQ(event.mask, kMayExec);
  EXPECT_FALSE(event.write_access);
  EXPECT_EQ(event.pid, 4242);
  EXPECT_EQ(event.tgid, 4240);
  EXPECT_EQ(event.comm, "bash");
  EXPECT_EQ(event.creds.uid, 1000u);
  EXPECT_EQ(event.creds.euid, 0u);
  EXPECT_TRUE(event.creds.cap_setuid);
  EXPECT_FALSE(event.creds.cap_setgid);
  EXPECT_TRUE(event.creds.known);
  EXPECT_EQ(event.file.dev, makedev(259, 3));
  EXPECT_EQ(event.file.ino, 1234567u);
  EXPECT_EQ(event.file.change_counter, 1700000000123456789ULL);
  EXPECT_EQ(event.file.generation, 77u);
  EXPECT_EQ(event.file.fsmagic, 0xEF53u);
  EXPECT_EQ(event.file.group, 4u);
  EXPECT_EQ(event.file.mode, static_cast<uint32_t>(S_IFREG | 0755));
  EXPECT_FALSE(event.file.fs_uuid.has_value());
  EXPECT_EQ(event.path, "/usr/bin/true");
  EXPECT_FALSE(event.deleted);
  EXPECT_FALSE(event.fd);
}

TEST(BpfRecordDecode, FsUuidWhenSet) {
  auto record = access_record("/a");
  record->file.fs_uuid[0] = 0xab;
  record->file.fs_uuid[15] = 0xcd;
  FileEvent event = decode_access_record(*record);
  ASSERT_TRUE(event.file.fs_uuid.has_value());
  EXPECT_EQ((*event.file.fs_uuid)[0], 0xab);
  EXPECT_EQ((*event.file.fs_uuid)[15], 0xcd);
}

TEST(BpfRecordDecode, UnlinkedSuffixRemoved) {
  auto record = access_record("/opt/app (deleted)");
  record->flags = IMAROTD_FLAG_UNLINKED;
  FileEvent event = decode_access_record(*record);
  EXPECT_EQ(event.path, "/opt/app");
  EXPECT_TRUE(event.deleted);
}

TEST(BpfRecordDecode, LiveDeletedNameKept) {
  auto record = access_record("/opt/app (deleted)");
  FileEvent event = decode_access_record(*record);
  EXPECT_EQ(event.path, "/opt/app (deleted)");
  EXPECT_FALSE(event.deleted);
}

TEST(BpfRecordDecode, DetachedMountUsesDentryName) {
  auto record = access_record("/memfd:imarot (deleted)");
  std::memset(record->name, 0, sizeof record->name);
  std::memcpy(record->name, "memfd:imarot", 12);
  record->flags = IMAROTD_FLAG_DETACHED | IMAROTD_FLAG_UNLINKED;
  FileEvent event = decode_access_record(*record);
  EXPECT_EQ(event.path, "memfd:imarot");
}

TEST(BpfRecordDecode, PathTooLongFallsBackToName) {
  auto record = access_record("/x");
  record->path_length = -36;  // -ENAMETOOLONG
  std::memset(record->name, 'n', sizeof record->name - 1);
  record->name[sizeof record->name - 1] = '\0';
  FileEvent event = decode_access_record(*record);
  EXPECT_EQ(event.path, std::string(254, 'n'));
}

TEST(BpfRecordDecode, PathNotNulTerminated) {
  auto record = access_record("/x");
  std::memset(record->path, 'p', sizeof record->path);
  record->path_length = IMAROTD_PATH_MAX;
  FileEvent event = decode_access_record(*record);
  EXPECT_EQ(event.path.size(), static_cast<size_t>(IMAROTD_PATH_MAX - 1));
}

TEST(BpfRecordDecode, WriteOpen) {
  auto record = access_record("/etc/motd");
  record->hook = IMAROTD_HOOK_FILE_CHECK;
  record->mask = kMayRead | kMayWrite;
  record->flags = IMAROTD_FLAG_WRITE_ACCESS;
  FileEvent event = decode_access_record(*record);
  EXPECT_EQ(event.hook, Hook::file_check);
  EXPECT_EQ(event.mask, kMayRead | kMayWrite);
  EXPECT_TRUE(event.write_access);
}

TEST(BpfRecordDecode, CloseKinds) {
  imarotd_close_record record{};
  record.type = IMAROTD_RECORD_WRITE_CLOSE;
  record.dev = (8u << 20) | 1u;
  record.ino = 99;
  record.tgid = 7;
  FileEvent write_close = decode_close_record(record);
  EXPECT_EQ(write_close.kind, EventKind::write_close);
  EXPECT_EQ(write_close.file.dev, makedev(8, 1));
  EXPECT_EQ(write_close.file.ino, 99u);
  EXPECT_EQ(write_close.tgid, 7);
  record.type = IMAROTD_RECORD_READ_CLOSE;
  EXPECT_EQ(decode_close_record(record).kind, EventKind::read_close);
}

// ---------------------------------------------------------------------------
// Filter

constexpr uint32_t bit(Hook hook) { return 1u << static_cast<unsigned>(hook); }

TEST(BpfFilterDerive, KernelReferencePolicy) {
  imarot::Policy policy = parse(read_file(std::string(IMAROT_TEST_DATA_DIR) + "/kernel-ima-sha256/policy"));
  BpfFilter filter = derive_bpf_filter(policy, 10);
  EXPECT_EQ(filter.hooks, bit(Hook::bprm_check) | bit(Hook::mmap_check) | bit(Hook::file_check));
  EXPECT_TRUE(filter.uid_ranges[static_cast<size_t>(Hook::bprm_check)].empty());
  ASSERT_EQ(filter.uid_ranges[static_cast<size_t>(Hook::file_check)].size(), 1u);
  EXPECT_EQ(filter.uid_ranges[static_cast<size_t>(Hook::file_check)][0], (BpfFilter::UidRange{0, 0}));
  std::vector<uint64_t> expected = {0x01021994, 0x9fa0, 0x62656572, 0x73636673};
  EXPECT_EQ(filter.ignored_fsmagic, expected);
  EXPECT_TRUE(filter.use_cache);
}

TEST(BpfFilterDerive, MeasureBeforeDontMeasureKeepsFilesystem) {
  imarot::Policy policy = parse(
      "measure func=BPRM_CHECK fsmagic=0x01021994\n"
      "dont_measure fsmagic=0x01021994\n"
      "dont_measure fsmagic=0x9fa0\n"
      "measure func=FILE_CHECK uid<1000\n"
      "measure func=FILE_CHECK uid>60000\n");
  BpfFilter filter = derive_bpf_filter(policy, 10);
  EXPECT_EQ(filter.ignored_fsmagic, std::vector<uint64_t>{0x9fa0});
  const auto& ranges = filter.uid_ranges[static_cast<size_t>(Hook::file_check)];
  ASSERT_EQ(ranges.size(), 2u);
  EXPECT_EQ(ranges[0], (BpfFilter::UidRange{0, 999}));
  EXPECT_EQ(ranges[1], (BpfFilter::UidRange{60001, UINT32_MAX}));
}

TEST(BpfFilterDerive, UnconditionalDontMeasureEndsHook) {
  imarot::Policy policy = parse(
      "dont_measure func=MMAP_CHECK\n"
      "measure func=MMAP_CHECK\n"
      "measure func=BPRM_CHECK\n");
  BpfFilter filter = derive_bpf_filter(policy, 10);
  EXPECT_EQ(filter.hooks, bit(Hook::bprm_check));
}

TEST(BpfFilterDerive, RuleWithoutFuncEnablesEveryHook) {
  imarot::Policy policy = parse("measure uid=0\n");
  BpfFilter filter = derive_bpf_filter(policy, 10);
  EXPECT_EQ(filter.hooks, (1u << 9) - 1);
}

TEST(BpfFilterDerive, TooManyUidRangesPassEveryUid) {
  imarot::Policy policy = parse(
      "measure func=FILE_CHECK uid=1\n"
      "measure func=FILE_CHECK uid=2\n"
      "measure func=FILE_CHECK uid=3\n"
      "measure func=FILE_CHECK uid=4\n"
      "measure func=FILE_CHECK uid=5\n");
  BpfFilter filter = derive_bpf_filter(policy, 10);
  EXPECT_TRUE(filter.uid_ranges[static_cast<size_t>(Hook::file_check)].empty());
}

// The golden policy's FILE_CHECK rule (mask=^MAY_READ) does not match the
// MAY_EXEC open of an exec, so that open is filtered in the kernel instead
// of reaching the daemon at every exec.
TEST(BpfFilterDerive, MaskConditionsSelectAccessMasks) {
  imarot::Policy policy = parse(
      "measure func=BPRM_CHECK mask=MAY_EXEC\n"
      "measure func=FILE_CHECK mask=^MAY_READ uid=0\n"
      "measure func=MMAP_CHECK\n");
  BpfFilter filter = derive_bpf_filter(policy, 10);
  auto accepts = [&](Hook hook, uint32_t mask) {
    return (filter.masks[static_cast<size_t>(hook)] & (1u << mask)) != 0;
  };
  EXPECT_EQ(filter.masks[static_cast<size_t>(Hook::bprm_check)], 1u << imarot::kMayExec);
  EXPECT_TRUE(accepts(Hook::file_check, imarot::kMayRead));
  EXPECT_TRUE(accepts(Hook::file_check, imarot::kMayRead | imarot::kMayWrite));
  EXPECT_TRUE(accepts(Hook::file_check, imarot::kMayRead | imarot::kMayAppend));
  EXPECT_FALSE(accepts(Hook::file_check, imarot::kMayExec));
  EXPECT_FALSE(accepts(Hook::file_check, imarot::kMayWrite));
  EXPECT_EQ(filter.masks[static_cast<size_t>(Hook::mmap_check)], 0xffff);
  EXPECT_EQ(filter.masks[static_cast<size_t>(Hook::module_check)], 0);
}

TEST(BpfFilterDerive, MixedRegistersDisableCache) {
  EXPECT_FALSE(derive_bpf_filter(parse("measure func=BPRM_CHECK pcr=11\nmeasure func=FILE_CHECK\n"), 10).use_cache);
  EXPECT_TRUE(derive_bpf_filter(parse("measure func=BPRM_CHECK pcr=10\nmeasure func=FILE_CHECK\n"), 10).use_cache);
}

// ---------------------------------------------------------------------------
// BPF LSM probe

class TempFile {
 public:
  explicit TempFile(const std::string& text) {
    char name[] = "/tmp/imarotd-lsm.XXXXXX";
    int fd = ::mkstemp(name);
    path_ = name;
    if (fd >= 0) {
      EXPECT_EQ(::write(fd, text.data(), text.size()), static_cast<ssize_t>(text.size()));
      ::close(fd);
    }
  }
  ~TempFile() { ::unlink(path_.c_str()); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

TEST(BpfLsmProbe, ListedLast) {
  TempFile lsm("lockdown,capability,landlock,yama,apparmor,bpf");
  EXPECT_TRUE(BpfSource::probe_bpf_lsm(lsm.path()));
}

TEST(BpfLsmProbe, NotListed) {
  TempFile lsm("lockdown,capability,apparmor,bpfilter");
  auto probed = BpfSource::probe_bpf_lsm(lsm.path());
  ASSERT_FALSE(probed);
  EXPECT_NE(probed.error().message.find("not active"), std::string::npos) << probed.error().message;
  EXPECT_NE(probed.error().message.find("lsm="), std::string::npos) << probed.error().message;
}

TEST(BpfLsmProbe, MissingFile) {
  auto probed = BpfSource::probe_bpf_lsm("/nonexistent/imarotd/lsm");
  ASSERT_FALSE(probed);
  EXPECT_NE(probed.error().message.find("not readable"), std::string::npos) << probed.error().message;
}

// ---------------------------------------------------------------------------
// Loader phases (root)

class BpfLoader : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_FAIL() << "the loader tests need root to create BPF maps; run them as root";
  }
};

TEST_F(BpfLoader, OpenAndConfigure) {
  BpfSourceOptions options;
  options.ring_buffer_bytes = 5000;
  BpfSource source(options);
  ASSERT_TRUE(source.open());
  ASSERT_TRUE(source.configure());
  size_t page = static_cast<size_t>(::sysconf(_SC_PAGESIZE));
  EXPECT_EQ(source.ring_buffer_bytes(), std::max<size_t>(8192, page));
}

TEST_F(BpfLoader, RingBufferAboveLimitRejected) {
  BpfSourceOptions options;
  options.ring_buffer_bytes = size_t{2} << 30;
  BpfSource source(options);
  auto configured = source.configure();
  ASSERT_FALSE(configured);
  EXPECT_NE(configured.error().message.find("1 GiB"), std::string::npos) << configured.error().message;
}

// The kernel either loads the programs (BPF LSM usable) or rejects them. A
// rejection must name the phase and the reason, because the fanotify
// fallback logs that text.
TEST_F(BpfLoader, LoadResultNamesPhase) {
  BpfSource source(BpfSourceOptions{});
  auto loaded = source.load();
  if (loaded) {
    auto attached = source.attach();
    if (!attached) {
      EXPECT_EQ(attached.error().message.rfind("eBPF LSM source: attach failed: ", 0), 0u) << attached.error().message;
    }
    return;
  }
  EXPECT_EQ(loaded.error().message.rfind("eBPF LSM source: load failed: ", 0), 0u) << loaded.error().message;
  EXPECT_NE(loaded.error().code, 0);
  // The filter and the maps are not there after a failed load.
  EXPECT_FALSE(source.mark_measured(FileIdentity{}));
}

TEST_F(BpfLoader, MapsWithoutPrograms) {
  BpfSourceOptions options;
  options.load_programs = false;
  imarot::Policy policy = parse(read_file(std::string(IMAROT_TEST_DATA_DIR) + "/kernel-ima-sha256/policy"));
  options.filter = derive_bpf_filter(policy, 10);
  BpfSource source(options);
  ASSERT_TRUE(source.load()) << "maps alone must load wherever BPF maps work";

  FileIdentity file;
  file.dev = makedev(259, 3);
  file.ino = 4096;
  file.change_counter = 1700000000000000001ULL;
  file.generation = 9;
  EXPECT_FALSE(source.lookup_measured(file.dev, file.ino));
  ASSERT_TRUE(source.mark_measured(file));
  auto entry = source.lookup_measured(file.dev, file.ino);
  ASSERT_TRUE(entry) << entry.error().message;
  EXPECT_EQ(entry->first, file.change_counter);
  EXPECT_EQ(entry->second, 9u);

  // A new filter without the cache empties the measured map.
  BpfFilter no_cache = options.filter;
  no_cache.use_cache = false;
  ASSERT_TRUE(source.set_filter(no_cache));
  EXPECT_FALSE(source.lookup_measured(file.dev, file.ino));

  BpfKernelCounters counters = source.kernel_counters();
  EXPECT_EQ(counters.sent, 0u);
  EXPECT_EQ(counters.lost, 0u);
}

// ---------------------------------------------------------------------------
// Source selection

TEST_F(BpfLoader, ExplicitBpfFailsClearlyOrStarts) {
  DaemonConfig config;
  config.source_path = "/etc/imarotd/test.json";
  config.event_source = EventSourceChoice::bpf;
  imarot::Policy policy = parse("measure func=BPRM_CHECK\n");
  auto choice = select_event_source(config, policy);
  if (choice) {
    EXPECT_EQ(choice->source->name(), "bpf");
    return;
  }
  const std::string& message = choice.error().message;
  EXPECT_EQ(message.rfind("/etc/imarotd/test.json: \"event_source\": \"bpf\" cannot start: ", 0), 0u) << message;
  EXPECT_NE(message.find("use \"auto\""), std::string::npos) << message;
}

TEST_F(BpfLoader, AutoFallsBackWithReason) {
  DaemonConfig config;
  config.event_source = EventSourceChoice::automatic;
  config.filesystems = {"/"};
  imarot::Policy policy = parse("measure func=BPRM_CHECK\n");
  auto choice = select_event_source(config, policy);
  ASSERT_TRUE(choice) << choice.error().message;
  if (choice->source->name() == "bpf") return;  // a kernel that runs the programs
  EXPECT_EQ(choice->source->name(), "fanotify");
  EXPECT_EQ(choice->reason.rfind("the eBPF LSM source is unavailable: ", 0), 0u) << choice->reason;
}

}  // namespace
}  // namespace imarotd
