// The fanotify source against the real kernel, on a private loop-mounted
// ext4 filesystem: hooks, masks, identities, names as kernel IMA records
// them, permission events and errors.
#include <linux/fs.h>
#include <poll.h>
#include <sys/fanotify.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>

#include <elf.h>

#include <cinttypes>
#include <future>

#include "fanotify_source.h"
#include "fanotify_test_util.h"

namespace imarotd {
namespace {

using namespace test;

constexpr uint64_t kExt4Magic = 0xEF53;
constexpr const char* kFsUuid = "6a1d7c52-3e0b-4f9e-9b1a-2c4d5e6f7a8b";

std::string uuid_text(const std::array<uint8_t, 16>& uuid) {
  std::string text;
  for (size_t i = 0; i < uuid.size(); ++i) {
    if (i == 4 || i == 6 || i == 8 || i == 10) text += '-';
    char hex[3];
    std::snprintf(hex, sizeof hex, "%02x", uuid[i]);
    text += hex;
  }
  return text;
}

uint64_t ctime_ns(const struct stat& st) {
  return static_cast<uint64_t>(st.st_ctim.tv_sec) * 1000000000ULL + static_cast<uint64_t>(st.st_ctim.tv_nsec);
}

bool copy_executable(const std::string& from, const std::string& to) {
  std::error_code error;
  std::filesystem::copy_file(from, to, std::filesystem::copy_options::overwrite_existing, error);
  return !error && ::chmod(to.c_str(), 0755) == 0;
}

// Returns the PT_INTERP of a 64-bit ELF file, or "" when it has none.
std::string elf_interpreter(const std::string& elf) {
  if (elf.size() < sizeof(Elf64_Ehdr) || elf[EI_CLASS] != ELFCLASS64) return "";
  Elf64_Ehdr header;
  std::memcpy(&header, elf.data(), sizeof header);
  for (size_t i = 0; i < header.e_phnum; ++i) {
    Elf64_Phdr program;
    size_t offset = header.e_phoff + i * header.e_phentsize;
    if (offset + sizeof program > elf.size()) return "";
    std::memcpy(&program, elf.data() + offset, sizeof program);
    if (program.p_type == PT_INTERP && program.p_offset + program.p_filesz <= elf.size()) {
      return std::string(elf.c_str() + program.p_offset);
    }
  }
  return "";
}

// Copies a 64-bit ELF program with its PT_INTERP replaced by a shorter path.
bool copy_with_interpreter(const std::string& from, const std::string& to, const std::string& interpreter) {
  std::string elf = read_text(from);
  std::string original = elf_interpreter(elf);
  if (original.empty() || interpreter.size() > original.size()) return false;
  size_t at = elf.find(original + '\0');
  if (at == std::string::npos) return false;
  std::memset(elf.data() + at, 0, original.size());
  std::memcpy(elf.data() + at, interpreter.data(), interpreter.size());
  return write_text(to, elf, 0755);
}

class FanotifyExt4 : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (::geteuid() != 0) return;
    fs_ = new TestFilesystem(TestFilesystem::Kind::ext4, kFsUuid);
    if (!fs_->error.empty()) return;
    ::mkdir(fs_->path("bin").c_str(), 0755);
    ::mkdir(fs_->path("usr").c_str(), 0755);
    ::mkdir(fs_->path("usr/bin").c_str(), 0755);
    ::mkdir(fs_->path("sub").c_str(), 0755);
    if (!copy_executable("/bin/true", fs_->path("bin/app")) || !copy_executable("/bin/dash", fs_->path("bin/sh"))) {
      fs_->error = "copying the test programs onto the test filesystem failed";
    }
  }

  static void TearDownTestSuite() {
    delete fs_;
    fs_ = nullptr;
  }

  void SetUp() override {
    ASSERT_EQ(::geteuid(), 0u) << kNeedsRoot;
    ASSERT_NE(fs_, nullptr);
    ASSERT_TRUE(fs_->error.empty()) << fs_->error;
  }

  // Starts a source on the test filesystem; nullptr (with a test failure)
  // when it cannot start.
  static std::unique_ptr<FanotifySource> start(RecordingSink& sink, bool measure_before_use = false,
                                               std::vector<pid_t> ignored = {}, bool notifications = false) {
    FanotifyOptions options;
    options.mount_points = {fs_->mount_point};
    options.measure_before_use = measure_before_use;
    options.notification_events = notifications;
    options.ignored_pids = std::move(ignored);
    auto source = std::make_unique<FanotifySource>(options);
    auto started = source->start(sink);
    if (!started) {
      ADD_FAILURE() << started.error().message;
      return nullptr;
    }
    return source;
  }

  static std::string path(const std::string& relative) { return fs_->path(relative); }

  static TestFilesystem* fs_;
};

TestFilesystem* FanotifyExt4::fs_ = nullptr;

// Runs `body` in a child and returns the first access event of `hook` from
// it; the child must exit 0.
FileEvent* run_and_find(RecordingSink& sink, const std::function<int()>& body, Hook hook, pid_t* child = nullptr) {
  pid_t pid = spawn(body);
  if (child != nullptr) *child = pid;
  int code = wait_child(pid);
  EXPECT_EQ(code, 0) << "the child process failed";
  return sink.wait_for(event_of(pid, EventKind::access, hook));
}

// ---------------------------------------------------------------------------
// Hooks, masks and identity

TEST_F(FanotifyExt4, ExecReportsBprmCheckWithIdentity) {
  RecordingSink sink;
  auto source = start(sink);
  ASSERT_NE(source, nullptr);
  std::string app = path("bin/app");

  pid_t pid = 0;
  FileEvent* event = run_and_find(sink, [&] { return exec_path(app.c_str()); }, Hook::bprm_check, &pid);
  ASSERT_NE(event, nullptr);
  EXPECT_EQ(event->mask, kMayExec);
  EXPECT_EQ(event->path, app);
  EXPECT_FALSE(event->deleted);
  EXPECT_EQ(event->pid, pid);
  EXPECT_FALSE(event->completion);

  struct stat st {};
  ASSERT_EQ(::stat(app.c_str(), &st), 0);
  EXPECT_EQ(event->file.dev, st.st_dev);
  EXPECT_EQ(event->file.ino, st.st_ino);
  EXPECT_EQ(event->file.mode, st.st_mode);
  EXPECT_EQ(event->file.owner, st.st_uid);
  EXPECT_EQ(event->file.group, st.st_gid);
  EXPECT_EQ(event->file.change_counter, ctime_ns(st));
  EXPECT_EQ(event->file.fsmagic, kExt4Magic);
  ASSERT_TRUE(event->file.fs_uuid.has_value());
  EXPECT_EQ(uuid_text(*event->file.fs_uuid), kFsUuid);

  int own = ::open(app.c_str(), O_RDONLY | O_CLOEXEC);
  ASSERT_GE(own, 0);
  uint32_t generation[2] = {0, 0};
  ASSERT_EQ(::ioctl(own, FS_IOC_GETVERSION, generation), 0);
  ::close(own);
  EXPECT_EQ(event->file.generation, generation[0]);

  ASSERT_TRUE(event->fd);
  EXPECT_EQ(read_fd_content(event->fd.get()), read_text(app));

  // The exec open also passes FILE_CHECK, with MAY_EXEC, as in kernel IMA.
  FileEvent* open = sink.wait_for(event_of(pid, EventKind::access, Hook::file_check));
  ASSERT_NE(open, nullptr);
  EXPECT_EQ(open->mask, kMayExec);
  EXPECT_EQ(open->path, app);
  ASSERT_TRUE(open->fd);
  EXPECT_EQ(read_fd_content(open->fd.get()), read_text(app));
  EXPECT_GE(source->stats().events.load(), 2u);
  EXPECT_EQ(source->stats().lost.load(), 0u);
}

TEST_F(FanotifyExt4, ThreeExecsKeepOneIdentity) {
  RecordingSink sink;
  auto source = start(sink);
  ASSERT_NE(source, nullptr);
  std::string app = path("bin/app");

  std::vector<FileEvent*> events;
  for (int run = 0; run < 3; ++run) {
    FileEvent* event = run_and_find(sink, [&] { return exec_path(app.c_str()); }, Hook::bprm_check);
    ASSERT_NE(event, nullptr);
    events.push_back(event);
  }
  for (FileEvent* event : events) {
    EXPECT_EQ(event->path, app);
    EXPECT_EQ(event->file.dev, events[0]->file.dev);
    EXPECT_EQ(event->file.ino, events[0]->file.ino);
    EXPECT_EQ(event->file.generation, events[0]->file.generation);
    EXPECT_EQ(event->file.change_counter, events[0]->file.change_counter);
  }
}

TEST_F(FanotifyExt4, ReadOpenReportsFileCheckMayRead) {
  std::string file = path("read-me.conf");
  ASSERT_TRUE(write_text(file, "setting=1\n"));
  for (bool before_use : {false, true}) {
    SCOPED_TRACE(before_use ? "permission events" : "notification events");
    RecordingSink sink;
    auto source = start(sink, before_use);
    ASSERT_NE(source, nullptr);

    pid_t pid = 0;
    FileEvent* event = run_and_find(
        sink,
        [&] {
          int fd = ::open(file.c_str(), O_RDONLY);
          char buffer[16];
          return fd >= 0 && ::read(fd, buffer, sizeof buffer) > 0 && ::close(fd) == 0 ? 0 : 1;
        },
        Hook::file_check, &pid);
    ASSERT_NE(event, nullptr);
    EXPECT_EQ(event->mask, kMayRead);
    EXPECT_EQ(event->path, file);
    ASSERT_TRUE(event->fd);
    EXPECT_EQ(read_fd_content(event->fd.get()), "setting=1\n");
    EXPECT_NE(sink.wait_for(event_of(pid, EventKind::read_close)), nullptr);
    EXPECT_TRUE(sink.matching(event_of(pid, EventKind::write_open)).empty());
  }
}

TEST_F(FanotifyExt4, PermissionEventCarriesTaskCredentials) {
  RecordingSink sink;
  auto source = start(sink, /*measure_before_use=*/true);
  ASSERT_NE(source, nullptr);
  std::string app = path("bin/app");
  std::string own_comm = read_text("/proc/self/comm");
  own_comm.pop_back();

  pid_t pid = 0;
  FileEvent* event = run_and_find(
      sink,
      [&] {
        if (::setresgid(2000, 2001, 2002) != 0 || ::setresuid(1000, 1001, 1002) != 0) return 10;
        return exec_path(app.c_str());
      },
      Hook::bprm_check, &pid);
  ASSERT_NE(event, nullptr);
  // The task is inside execve while it waits, so it still has the forked
  // test's name and the credentials it had before the exec.
  EXPECT_EQ(event->comm, own_comm);
  EXPECT_EQ(event->tgid, pid);
  EXPECT_TRUE(event->creds.known);
  EXPECT_EQ(event->creds.uid, 1000u);
  EXPECT_EQ(event->creds.euid, 1001u);
  EXPECT_EQ(event->creds.suid, 1002u);
  EXPECT_EQ(event->creds.fsuid, 1001u);
  EXPECT_EQ(event->creds.gid, 2000u);
  EXPECT_EQ(event->creds.egid, 2001u);
  EXPECT_EQ(event->creds.sgid, 2002u);
  EXPECT_EQ(event->creds.fsgid, 2001u);
  EXPECT_FALSE(event->creds.cap_setuid);
  EXPECT_FALSE(event->creds.cap_setgid);
}

TEST_F(FanotifyExt4, RootTaskHasSetuidCapabilities) {
  RecordingSink sink;
  auto source = start(sink, /*measure_before_use=*/true);
  ASSERT_NE(source, nullptr);
  std::string app = path("bin/app");
  FileEvent* event = run_and_find(sink, [&] { return exec_path(app.c_str()); }, Hook::bprm_check);
  ASSERT_NE(event, nullptr);
  EXPECT_TRUE(event->creds.known);
  EXPECT_EQ(event->creds.euid, 0u);
  EXPECT_TRUE(event->creds.cap_setuid);
  EXPECT_TRUE(event->creds.cap_setgid);
}

TEST_F(FanotifyExt4, ThreadEventNamesThreadAndProcess) {
  std::string file = path("thread-read.conf");
  ASSERT_TRUE(write_text(file, "x"));
  RecordingSink sink;
  auto source = start(sink, /*measure_before_use=*/true);
  ASSERT_NE(source, nullptr);

  int tid_pipe[2];
  ASSERT_EQ(::pipe(tid_pipe), 0);
  pid_t pid = spawn([&] {
    pid_t thread_id = 0;
    std::thread worker([&] {
      thread_id = static_cast<pid_t>(::syscall(SYS_gettid));
      int fd = ::open(file.c_str(), O_RDONLY);
      if (fd >= 0) ::close(fd);
    });
    worker.join();
    return ::write(tid_pipe[1], &thread_id, sizeof thread_id) == sizeof thread_id ? 0 : 1;
  });
  ::close(tid_pipe[1]);
  pid_t thread_id = 0;
  ASSERT_EQ(::read(tid_pipe[0], &thread_id, sizeof thread_id), static_cast<ssize_t>(sizeof thread_id));
  ::close(tid_pipe[0]);
  ASSERT_EQ(wait_child(pid), 0);
  ASSERT_NE(thread_id, pid);

  FileEvent* event = sink.wait_for(event_of(thread_id, EventKind::access, Hook::file_check));
  ASSERT_NE(event, nullptr);
  EXPECT_EQ(event->tgid, pid);
  EXPECT_EQ(event->path, file);
}

// ---------------------------------------------------------------------------
// Writers

struct WriteCase {
  const char* name;
  std::function<int(const std::string&)> open_file;
  uint32_t mask;
};

TEST_F(FanotifyExt4, WriteOpenAndCloseWithPermissionEvents) {
  std::vector<WriteCase> cases = {
      {"O_WRONLY", [](const std::string& f) { return ::open(f.c_str(), O_WRONLY); }, kMayWrite},
      {"O_RDWR|O_APPEND", [](const std::string& f) { return ::open(f.c_str(), O_RDWR | O_APPEND); },
       kMayRead | kMayWrite | kMayAppend},
      {"O_RDONLY|O_TRUNC", [](const std::string& f) { return ::open(f.c_str(), O_RDONLY | O_TRUNC); },
       kMayRead | kMayWrite},
      {"creat", [](const std::string& f) { return ::creat(f.c_str(), 0644); }, kMayWrite},
      {"openat2 O_WRONLY|O_APPEND",
       [](const std::string& f) {
         struct {
           uint64_t flags, mode, resolve;
         } how = {O_WRONLY | O_APPEND, 0, 0};
         return static_cast<int>(::syscall(SYS_openat2, AT_FDCWD, f.c_str(), &how, sizeof how));
       },
       kMayWrite | kMayAppend},
  };
  RecordingSink sink;
  auto source = start(sink, /*measure_before_use=*/true);
  ASSERT_NE(source, nullptr);

  int index = 0;
  for (const auto& test_case : cases) {
    SCOPED_TRACE(test_case.name);
    std::string file = path("written-" + std::to_string(index++) + ".log");
    ASSERT_TRUE(write_text(file, "old\n"));
    bool takes_write = (test_case.mask & kMayWrite) != 0 && std::string(test_case.name) != "O_RDONLY|O_TRUNC";

    pid_t pid = spawn([&] {
      int fd = test_case.open_file(file);
      if (fd < 0) return 1;
      if (takes_write && ::write(fd, "new\n", 4) != 4) return 2;
      return ::close(fd) == 0 ? 0 : 3;
    });
    ASSERT_EQ(wait_child(pid), 0);

    FileEvent* access = sink.wait_for(event_of(pid, EventKind::access, Hook::file_check));
    ASSERT_NE(access, nullptr);
    EXPECT_EQ(access->mask, test_case.mask);
    EXPECT_EQ(access->path, file);
    ASSERT_TRUE(access->fd);
    // One event per open, whose mask shows the pipeline whether it writes.
    EXPECT_EQ(sink.matching(event_of(pid, EventKind::access, Hook::file_check)).size(), 1u);
    EXPECT_TRUE(sink.matching(event_of(pid, EventKind::write_open)).empty());
    // FAN_CLOSE_WRITE follows the file's write mode (FMODE_WRITE), which
    // O_RDONLY|O_TRUNC does not have.
    FileEvent* close = sink.wait_for(event_of(pid, takes_write ? EventKind::write_close : EventKind::read_close));
    ASSERT_NE(close, nullptr);
    EXPECT_EQ(close->file.dev, access->file.dev);
    EXPECT_EQ(close->file.ino, access->file.ino);
    EXPECT_TRUE(close->path.empty()) << "a close carries the file's identity, not its path";
    EXPECT_FALSE(close->fd);
    EXPECT_LT(sink.position(access), sink.position(close)) << "the open must come before its close";
  }
}

TEST_F(FanotifyExt4, WriteWithNotificationEventsSeesOnlyTheClose) {
  std::string file = path("notified-write.log");
  ASSERT_TRUE(write_text(file, "old\n"));
  RecordingSink sink;
  auto source = start(sink, /*measure_before_use=*/false, {}, /*notifications=*/true);
  ASSERT_NE(source, nullptr);

  pid_t pid = spawn([&] {
    int fd = ::open(file.c_str(), O_WRONLY | O_APPEND);
    return fd >= 0 && ::write(fd, "new\n", 4) == 4 && ::close(fd) == 0 ? 0 : 1;
  });
  ASSERT_EQ(wait_child(pid), 0);
  FileEvent* close = sink.wait_for(event_of(pid, EventKind::write_close));
  ASSERT_NE(close, nullptr);
  struct stat st {};
  ASSERT_EQ(::stat(file.c_str(), &st), 0);
  EXPECT_EQ(close->file.ino, st.st_ino);
  // A notification event does not carry the open's mode.
  FileEvent* access = sink.wait_for(event_of(pid, EventKind::access, Hook::file_check));
  ASSERT_NE(access, nullptr);
  EXPECT_EQ(access->mask, kMayRead);
  EXPECT_TRUE(sink.matching(event_of(pid, EventKind::write_open)).empty());
}

// ---------------------------------------------------------------------------
// Names

TEST_F(FanotifyExt4, ExecThroughSymlinksAndDotDotNamesTarget) {
  std::string app = path("bin/app");
  std::string target = path("usr/bin/tool");
  ASSERT_TRUE(copy_executable("/bin/true", target));
  ::unlink(path("link-app").c_str());
  ::unlink(path("chain1").c_str());
  ::unlink(path("chain2").c_str());
  ::unlink(path("chain3").c_str());
  ::unlink(path("bin-like").c_str());
  ASSERT_EQ(::symlink("bin/app", path("link-app").c_str()), 0);
  ASSERT_EQ(::symlink("chain2", path("chain1").c_str()), 0);
  ASSERT_EQ(::symlink(path("chain3").c_str(), path("chain2").c_str()), 0);
  ASSERT_EQ(::symlink("bin/app", path("chain3").c_str()), 0);
  // As /bin is a symlink to usr/bin on Debian 12.
  ASSERT_EQ(::symlink("usr/bin", path("bin-like").c_str()), 0);

  RecordingSink sink;
  auto source = start(sink);
  ASSERT_NE(source, nullptr);

  struct Case {
    std::string run;
    std::string cwd;
    std::string expected;
  };
  std::vector<Case> cases = {
      {path("link-app"), "/", app},
      {path("chain1"), "/", app},
      {"../bin/app", path("sub"), app},
      {"./../sub/../bin/./app", path("sub"), app},
      {path("bin-like/tool"), "/", target},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.run);
    FileEvent* event = run_and_find(
        sink, [&] { return ::chdir(c.cwd.c_str()) == 0 ? exec_path(c.run.c_str()) : 9; }, Hook::bprm_check);
    ASSERT_NE(event, nullptr);
    EXPECT_EQ(event->path, c.expected);
    EXPECT_FALSE(event->deleted);
  }
}

TEST_F(FanotifyExt4, PathLengthsAreByteExact) {
  RecordingSink sink;
  auto source = start(sink);
  ASSERT_NE(source, nullptr);
  ::mkdir(path("lengths").c_str(), 0755);

  for (size_t length : {254, 255, 256, 257, 1024, 4000, 4094, 4095}) {
    SCOPED_TRACE("path of " + std::to_string(length) + " bytes");
    std::string root = path("lengths/" + std::to_string(length));
    ::mkdir(root.c_str(), 0755);
    auto deep = make_deep_file(root, length, "content of " + std::to_string(length));
    ASSERT_TRUE(deep.has_value());
    ASSERT_EQ(deep->path.size(), length);

    FileEvent* event = run_and_find(
        sink,
        [&] {
          int fd = ::open(deep->path.c_str(), O_RDONLY);
          return fd >= 0 && ::close(fd) == 0 ? 0 : 1;
        },
        Hook::file_check);
    ASSERT_NE(event, nullptr);
    EXPECT_EQ(event->path.size(), length);
    EXPECT_EQ(event->path, deep->path);
    ASSERT_TRUE(event->fd);
    EXPECT_EQ(read_fd_content(event->fd.get()), "content of " + std::to_string(length));
  }
}

TEST_F(FanotifyExt4, NameComponentOf255Bytes) {
  RecordingSink sink;
  auto source = start(sink);
  ASSERT_NE(source, nullptr);
  std::string name(255, 'n');
  name[0] = 'N';
  name[254] = 'Z';
  std::string file = path(name);
  ASSERT_TRUE(write_text(file, "long name"));

  FileEvent* event = run_and_find(
      sink,
      [&] {
        int fd = ::open(file.c_str(), O_RDONLY);
        return fd >= 0 && ::close(fd) == 0 ? 0 : 1;
      },
      Hook::file_check);
  ASSERT_NE(event, nullptr);
  EXPECT_EQ(event->path, file);
}

TEST_F(FanotifyExt4, LongPathGivesFinalComponent) {
  RecordingSink sink;
  auto source = start(sink);
  ASSERT_NE(source, nullptr);
  ::mkdir(path("beyond").c_str(), 0755);

  // 4096 is the first length d_absolute_path cannot print into PATH_MAX.
  for (size_t length : {4096, 4097, 5000, 9000}) {
    SCOPED_TRACE("path of " + std::to_string(length) + " bytes");
    std::string root = path("beyond/" + std::to_string(length));
    ::mkdir(root.c_str(), 0755);
    auto deep = make_deep_file(root, length, "deep");
    ASSERT_TRUE(deep.has_value());
    ASSERT_EQ(deep->path.size(), length);

    FileEvent* event = run_and_find(sink, [&] { return open_deep_relative(*deep); }, Hook::file_check);
    ASSERT_NE(event, nullptr);
    EXPECT_EQ(event->path, deep->name) << "expected the final component, not a front-cut path";
    EXPECT_FALSE(event->deleted);
    ASSERT_TRUE(event->fd);
    EXPECT_EQ(read_fd_content(event->fd.get()), "deep");
  }
}

TEST_F(FanotifyExt4, LongFinalComponentIsCutTo254Bytes) {
  RecordingSink sink;
  auto source = start(sink);
  ASSERT_NE(source, nullptr);
  std::string root = path("beyond-long-name");
  ::mkdir(root.c_str(), 0755);
  // Directories first, then a file name of 255 bytes, more than PATH_MAX in all.
  auto deep = make_deep_file(root, 4500, "x");
  ASSERT_TRUE(deep.has_value());
  std::string long_name(255, 'L');
  DeepFile renamed = *deep;
  renamed.name = long_name;
  // Renaming needs relative steps, as the absolute path is too long.
  int dir = ::open(root.c_str(), O_PATH | O_DIRECTORY);
  ASSERT_GE(dir, 0);
  for (const auto& component : deep->directories) {
    int next = ::openat(dir, component.c_str(), O_PATH | O_DIRECTORY);
    ::close(dir);
    ASSERT_GE(next, 0);
    dir = next;
  }
  ASSERT_EQ(::renameat(dir, deep->name.c_str(), dir, long_name.c_str()), 0);
  ::close(dir);

  FileEvent* event = run_and_find(sink, [&] { return open_deep_relative(renamed); }, Hook::file_check);
  ASSERT_NE(event, nullptr);
  EXPECT_EQ(event->path, long_name.substr(0, 254));
}

// ---------------------------------------------------------------------------
// Unlinked files

// Blocks the source's reader until `release` runs: a child opens `gate`,
// and the sink holds that event.
void hold_reader(RecordingSink& sink, const std::string& gate) {
  sink.block_when([gate](const FileEvent& e) { return e.path == gate; });
  pid_t pid = spawn([&] {
    int fd = ::open(gate.c_str(), O_RDONLY);
    return fd >= 0 && ::close(fd) == 0 ? 0 : 1;
  });
  EXPECT_EQ(wait_child(pid), 0);
  EXPECT_TRUE(sink.wait_until_blocked(10s)) << "the reader did not reach the gate event";
}

TEST_F(FanotifyExt4, BinaryUnlinkedAfterStartIsDeleted) {
  std::string gate = path("gate-unlink-after-start");
  std::string victim = path("bin/self-removing");
  ASSERT_TRUE(write_text(gate, "gate"));
  ASSERT_TRUE(copy_executable("/bin/dash", victim));
  std::string content = read_text(victim);
  std::string remove = "/bin/rm -f '" + victim + "'";

  // Notification events, so the file can change before its event is read.
  RecordingSink sink;
  auto source = start(sink, /*measure_before_use=*/false, {}, /*notifications=*/true);
  ASSERT_NE(source, nullptr);
  hold_reader(sink, gate);

  // The shell removes its own binary right after it starts.
  pid_t pid = spawn([&] {
    char* argv[] = {const_cast<char*>("self-removing"), const_cast<char*>("-c"), remove.data(), nullptr};
    char* envp[] = {nullptr};
    ::execve(victim.c_str(), argv, envp);
    return 126;
  });
  ASSERT_EQ(wait_child(pid), 0);
  ASSERT_NE(::access(victim.c_str(), F_OK), 0);
  sink.release();

  FileEvent* event = sink.wait_for(event_of(pid, EventKind::access, Hook::bprm_check));
  ASSERT_NE(event, nullptr);
  EXPECT_TRUE(event->deleted);
  EXPECT_EQ(event->path, victim);
  ASSERT_TRUE(event->fd);
  EXPECT_EQ(read_fd_content(event->fd.get()), content);
}

TEST_F(FanotifyExt4, FexecveAfterUnlinkIsDeleted) {
  std::string victim = path("bin/fexecve-victim");
  ASSERT_TRUE(copy_executable("/bin/true", victim));
  std::string content = read_text(victim);

  RecordingSink sink;
  auto source = start(sink);
  ASSERT_NE(source, nullptr);

  FileEvent* event = run_and_find(
      sink,
      [&] {
        int fd = ::open(victim.c_str(), O_RDONLY);
        if (fd < 0 || ::unlink(victim.c_str()) != 0) return 8;
        char* argv[] = {const_cast<char*>("victim"), nullptr};
        char* envp[] = {nullptr};
        ::fexecve(fd, argv, envp);
        return 126;
      },
      Hook::bprm_check);
  ASSERT_NE(event, nullptr);
  EXPECT_TRUE(event->deleted);
  EXPECT_EQ(event->path, victim);
  ASSERT_TRUE(event->fd);
  EXPECT_EQ(read_fd_content(event->fd.get()), content);
}

TEST_F(FanotifyExt4, UnlinkedNameOfHardLinkedFileIsDeleted) {
  std::string gate = path("gate-hard-link");
  std::string app = path("bin/linked-app");
  std::string other = path("bin/linked-app-other-name");
  ASSERT_TRUE(write_text(gate, "gate"));
  ASSERT_TRUE(copy_executable("/bin/true", app));
  ::unlink(other.c_str());
  ASSERT_EQ(::link(app.c_str(), other.c_str()), 0);

  // Notification events, so the file can change before its event is read.
  RecordingSink sink;
  auto source = start(sink, /*measure_before_use=*/false, {}, /*notifications=*/true);
  ASSERT_NE(source, nullptr);
  hold_reader(sink, gate);
  pid_t pid = spawn([&] { return exec_path(app.c_str()); });
  ASSERT_EQ(wait_child(pid), 0);
  // The file keeps one link, under the other name.
  ASSERT_EQ(::unlink(app.c_str()), 0);
  sink.release();

  FileEvent* event = sink.wait_for(event_of(pid, EventKind::access, Hook::bprm_check));
  ASSERT_NE(event, nullptr);
  EXPECT_TRUE(event->deleted);
  EXPECT_EQ(event->path, app);
}

TEST_F(FanotifyExt4, LiveFileNamedDeletedKeepsItsName) {
  std::string app = path("bin/app (deleted)");
  ASSERT_TRUE(copy_executable("/bin/true", app));
  RecordingSink sink;
  auto source = start(sink);
  ASSERT_NE(source, nullptr);

  FileEvent* event = run_and_find(sink, [&] { return exec_path(app.c_str()); }, Hook::bprm_check);
  ASSERT_NE(event, nullptr);
  EXPECT_FALSE(event->deleted);
  EXPECT_EQ(event->path, app);
}

TEST_F(FanotifyExt4, DeletedFileNamedDeletedLosesOneSuffix) {
  std::string victim = path("bin/gone (deleted)");
  ASSERT_TRUE(copy_executable("/bin/true", victim));
  RecordingSink sink;
  auto source = start(sink);
  ASSERT_NE(source, nullptr);

  FileEvent* event = run_and_find(
      sink,
      [&] {
        int fd = ::open(victim.c_str(), O_RDONLY);
        if (fd < 0 || ::unlink(victim.c_str()) != 0) return 8;
        char* argv[] = {const_cast<char*>("gone"), nullptr};
        char* envp[] = {nullptr};
        ::fexecve(fd, argv, envp);
        return 126;
      },
      Hook::bprm_check);
  ASSERT_NE(event, nullptr);
  EXPECT_TRUE(event->deleted);
  EXPECT_EQ(event->path, victim);
}

// ---------------------------------------------------------------------------
// memfd

// memfd files live on the kernel's internal tmpfs mount, which fanotify
// rejects for filesystem marks (SB_NOUSER), so their execs raise no event.
TEST_F(FanotifyExt4, MemfdFilesystemCannotBeMarked) {
  int memfd = ::memfd_create("imarotd-test", MFD_CLOEXEC);
  ASSERT_GE(memfd, 0);
  std::string memfd_path = "/proc/self/fd/" + std::to_string(memfd);
  RecordingSink sink;
  FanotifyOptions options;
  options.mount_points = {memfd_path};
  FanotifySource source(options);
  auto started = source.start(sink);
  ::close(memfd);
  ASSERT_FALSE(started);
  EXPECT_NE(started.error().message.find(memfd_path), std::string::npos) << started.error().message;
  EXPECT_NE(started.error().message.find("kernel-internal"), std::string::npos) << started.error().message;
}

TEST_F(FanotifyExt4, MemfdExecGivesNoEvent) {
  std::string program = read_text("/bin/true");
  RecordingSink sink;
  auto source = start(sink);
  ASSERT_NE(source, nullptr);

  for (bool through_proc : {false, true}) {
    SCOPED_TRACE(through_proc ? "execve of /proc/self/fd/N" : "fexecve");
    pid_t pid = spawn([&] {
      int fd = ::memfd_create("payload", 0);
      if (fd < 0 || ::write(fd, program.data(), program.size()) != static_cast<ssize_t>(program.size())) return 8;
      char* argv[] = {const_cast<char*>("payload"), nullptr};
      char* envp[] = {nullptr};
      if (through_proc) {
        std::string proc_path = "/proc/self/fd/" + std::to_string(fd);
        ::execve(proc_path.c_str(), argv, envp);
      } else {
        ::fexecve(fd, argv, envp);
      }
      return 126;
    });
    ASSERT_EQ(wait_child(pid), 0) << "the memfd program did not run";
    // A later event from the test filesystem proves the reader caught up.
    std::string app = path("bin/app");
    ASSERT_NE(run_and_find(sink, [&] { return exec_path(app.c_str()); }, Hook::bprm_check), nullptr);
    EXPECT_TRUE(sink.matching([pid](const FileEvent& e) { return e.pid == pid; }).empty());
  }
}

// ---------------------------------------------------------------------------
// Scripts

TEST_F(FanotifyExt4, ScriptReportsScriptAndInterpreter) {
  std::string script = path("bin/script.sh");
  std::string interpreter = path("bin/sh");
  ASSERT_TRUE(write_text(script, "#!" + interpreter + "\nexit 0\n", 0755));
  RecordingSink sink;
  auto source = start(sink);
  ASSERT_NE(source, nullptr);

  pid_t pid = spawn([&] { return exec_path(script.c_str()); });
  ASSERT_EQ(wait_child(pid), 0);
  ASSERT_NE(sink.wait_for([&](const FileEvent& e) {
    return e.pid == pid && e.hook == Hook::bprm_check && e.path == interpreter;
  }),
            nullptr);
  auto execs = sink.matching(event_of(pid, EventKind::access, Hook::bprm_check));
  ASSERT_EQ(execs.size(), 2u);
  EXPECT_EQ(execs[0]->path, script);
  EXPECT_EQ(execs[1]->path, interpreter);
  EXPECT_EQ(read_fd_content(execs[0]->fd.get()), read_text(script));
}

// A program whose dynamic linker lives on the watched filesystem. Its
// PT_INTERP is a short symlink in /tmp to a copy of the system's linker.
class DynamicLinkerOnTestFs {
 public:
  explicit DynamicLinkerOnTestFs(const std::string& fs_root) {
    std::string original = elf_interpreter(read_text("/bin/true"));
    if (original.empty()) {
      error = "/bin/true has no PT_INTERP";
      return;
    }
    linker = fs_root + "/lib-ld.so";
    program = fs_root + "/bin/dyn-app";
    std::string pattern = "/tmp/imarotd-ld-XXXXXX";
    int fd = ::mkstemp(pattern.data());
    if (fd < 0) {
      error = std::string("mkstemp failed: ") + std::strerror(errno);
      return;
    }
    ::close(fd);
    ::unlink(pattern.c_str());
    link_ = pattern;
    if (!copy_executable(original, linker) || ::symlink(linker.c_str(), link_.c_str()) != 0 ||
        !copy_with_interpreter("/bin/true", program, link_)) {
      error = "preparing a program with its dynamic linker on the test filesystem failed";
    }
  }
  ~DynamicLinkerOnTestFs() {
    if (!link_.empty()) ::unlink(link_.c_str());
  }

  std::string linker;
  std::string program;
  std::string error;

 private:
  std::string link_;
};

TEST_F(FanotifyExt4, DynamicLinkerIsMmapCheck) {
  DynamicLinkerOnTestFs dynamic(fs_->mount_point);
  ASSERT_TRUE(dynamic.error.empty()) << dynamic.error;
  std::string script = path("bin/dyn-script");
  ASSERT_TRUE(write_text(script, "#!" + dynamic.program + "\n", 0755));
  RecordingSink sink;
  auto source = start(sink, /*measure_before_use=*/true);
  ASSERT_NE(source, nullptr);

  struct Case {
    std::string run;
    std::vector<std::string> bprm;
  };
  std::vector<Case> cases = {
      {dynamic.program, {dynamic.program}},
      {script, {script, dynamic.program}},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.run);
    pid_t pid = 0;
    FileEvent* linker = run_and_find(sink, [&] { return exec_path(c.run.c_str()); }, Hook::mmap_check, &pid);
    ASSERT_NE(linker, nullptr);
    EXPECT_EQ(linker->path, dynamic.linker);
    EXPECT_EQ(linker->mask, kMayExec);
    ASSERT_TRUE(linker->fd);
    EXPECT_EQ(read_fd_content(linker->fd.get()), read_text(dynamic.linker));
    std::vector<std::string> bprm;
    for (FileEvent* e : sink.matching(event_of(pid, EventKind::access, Hook::bprm_check))) bprm.push_back(e->path);
    EXPECT_EQ(bprm, c.bprm);
  }
}

TEST_F(FanotifyExt4, NotificationReportsDynamicLinkerAsBprmCheck) {
  DynamicLinkerOnTestFs dynamic(fs_->mount_point);
  ASSERT_TRUE(dynamic.error.empty()) << dynamic.error;
  RecordingSink sink;
  auto source = start(sink, /*measure_before_use=*/false, {}, /*notifications=*/true);
  ASSERT_NE(source, nullptr);

  pid_t pid = spawn([&] { return exec_path(dynamic.program.c_str()); });
  ASSERT_EQ(wait_child(pid), 0);
  ASSERT_NE(sink.wait_for([&](const FileEvent& e) { return e.pid == pid && e.path == dynamic.linker; }), nullptr);
  std::vector<std::string> bprm;
  for (FileEvent* e : sink.matching(event_of(pid, EventKind::access, Hook::bprm_check))) bprm.push_back(e->path);
  EXPECT_EQ(bprm, (std::vector<std::string>{dynamic.program, dynamic.linker}));
}

// ---------------------------------------------------------------------------
// measure_before_use

TEST_F(FanotifyExt4, ExecWaitsForCompletion) {
  RecordingSink sink(/*hold_completions=*/true);
  auto source = start(sink, /*measure_before_use=*/true);
  ASSERT_NE(source, nullptr);
  std::string app = path("bin/app");

  pid_t pid = spawn([&] { return exec_path(app.c_str()); });
  FileEvent* exec = sink.wait_for(event_of(pid, EventKind::access, Hook::bprm_check));
  ASSERT_NE(exec, nullptr);
  ASSERT_TRUE(exec->completion);
  EXPECT_EQ(source->pending_permission_events(), 1u);
  std::this_thread::sleep_for(300ms);
  EXPECT_TRUE(child_running(pid)) << "the exec went on before its Completion ran";

  sink.complete(*exec);
  // The exec open is a FILE_CHECK permission event of its own, after BPRM_CHECK.
  FileEvent* open = sink.wait_for(event_of(pid, EventKind::access, Hook::file_check));
  ASSERT_NE(open, nullptr);
  EXPECT_EQ(open->mask, kMayExec);
  std::this_thread::sleep_for(200ms);
  EXPECT_TRUE(child_running(pid));
  sink.complete(*open);
  EXPECT_EQ(wait_child(pid, 5s), 0);
  EXPECT_EQ(source->pending_permission_events(), 0u);
}

TEST_F(FanotifyExt4, StopReleasesBlockedExec) {
  RecordingSink sink(/*hold_completions=*/true);
  auto source = start(sink, /*measure_before_use=*/true);
  ASSERT_NE(source, nullptr);
  std::string app = path("bin/app");

  pid_t pid = spawn([&] { return exec_path(app.c_str()); });
  FileEvent* exec = sink.wait_for(event_of(pid, EventKind::access, Hook::bprm_check));
  ASSERT_NE(exec, nullptr);
  std::this_thread::sleep_for(200ms);
  ASSERT_TRUE(child_running(pid));

  auto stopping_started = std::chrono::steady_clock::now();
  source->stop();
  EXPECT_LT(std::chrono::steady_clock::now() - stopping_started, 5s);
  EXPECT_EQ(wait_child(pid, 5s), 0) << "the exec stayed blocked after stop()";
  // A Completion that runs after stop() must not disturb anything.
  sink.complete(*exec);
}

// Drops every event without running its Completion.
class DroppingSink : public EventSink {
 public:
  void submit(FileEvent event) override {
    (void)event;
    ++count;
  }
  std::atomic<int> count{0};
};

TEST_F(FanotifyExt4, DroppedCompletionAllowsAccess) {
  DroppingSink sink;
  FanotifyOptions options;
  options.mount_points = {fs_->mount_point};
  options.measure_before_use = true;
  FanotifySource source(options);
  auto started = source.start(sink);
  ASSERT_TRUE(started) << started.error().message;
  std::string app = path("bin/app");

  pid_t pid = spawn([&] { return exec_path(app.c_str()); });
  EXPECT_EQ(wait_child(pid, 5s), 0) << "an event destroyed without its Completion kept the exec waiting";
  EXPECT_GE(sink.count.load(), 2);
  source.stop();
}

// ---------------------------------------------------------------------------
// Ignored processes

TEST_F(FanotifyExt4, IgnoredProcessesGiveNoEvents) {
  std::string file = path("ignored.conf");
  ASSERT_TRUE(write_text(file, "x"));
  int go[2];
  ASSERT_EQ(::pipe(go), 0);
  pid_t ignored = spawn([&] {
    ::close(go[1]);
    char byte;
    if (::read(go[0], &byte, 1) != 1) return 7;
    int fd = ::open(file.c_str(), O_RDONLY);
    return fd >= 0 && ::close(fd) == 0 ? 0 : 1;
  });
  ::close(go[0]);

  RecordingSink sink;
  auto source = start(sink, /*measure_before_use=*/true, {ignored});
  ASSERT_NE(source, nullptr);
  ASSERT_EQ(::write(go[1], "g", 1), 1);
  ::close(go[1]);
  ASSERT_EQ(wait_child(ignored, 5s), 0) << "an ignored process was kept waiting";

  // The daemon's own process is ignored as well, on every thread.
  int own = ::open(file.c_str(), O_RDONLY | O_CLOEXEC);
  ASSERT_GE(own, 0);
  ::close(own);
  // The thread lives until the events after its own are read, because only
  // a live thread can be found in its process.
  pid_t own_thread = 0;
  std::promise<void> opened;
  std::promise<void> seen;
  std::thread thread([&] {
    own_thread = static_cast<pid_t>(::syscall(SYS_gettid));
    int fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd >= 0) ::close(fd);
    opened.set_value();
    seen.get_future().wait();
  });
  opened.get_future().wait();

  pid_t watched = 0;
  FileEvent* later = run_and_find(
      sink,
      [&] {
        int fd = ::open(file.c_str(), O_RDONLY);
        return fd >= 0 && ::close(fd) == 0 ? 0 : 1;
      },
      Hook::file_check, &watched);
  // The close of the watched child comes after the thread's own events.
  bool closed = later != nullptr && sink.wait_for(event_of(watched, EventKind::read_close)) != nullptr;
  seen.set_value();
  thread.join();
  ASSERT_NE(later, nullptr);
  ASSERT_TRUE(closed);
  EXPECT_TRUE(sink.matching([&](const FileEvent& e) { return e.pid == ignored || e.tgid == ignored; }).empty());
  pid_t self = ::getpid();
  EXPECT_TRUE(sink.matching([&](const FileEvent& e) { return e.tgid == self; }).empty());
  EXPECT_TRUE(sink.matching([&](const FileEvent& e) { return e.pid == own_thread; }).empty())
      << "an event of a second thread of the daemon's own process was delivered";
}

// ---------------------------------------------------------------------------
// Errors

TEST_F(FanotifyExt4, MissingMountPointIsNamed) {
  RecordingSink sink;
  FanotifyOptions options;
  options.mount_points = {fs_->mount_point, "/nonexistent/imarotd-mount"};
  FanotifySource source(options);
  auto started = source.start(sink);
  ASSERT_FALSE(started);
  EXPECT_EQ(started.error().message, "cannot watch /nonexistent/imarotd-mount: No such file or directory");
}

TEST_F(FanotifyExt4, ProcfsIsRejected) {
  std::string proc = fs_->scratch_dir() + "/proc";
  ::mkdir(proc.c_str(), 0755);
  ASSERT_EQ(::mount("proc", proc.c_str(), "proc", 0, nullptr), 0) << std::strerror(errno);
  RecordingSink sink;
  FanotifyOptions options;
  options.mount_points = {proc};
  FanotifySource source(options);
  auto started = source.start(sink);
  ::umount2(proc.c_str(), 0);
  ASSERT_FALSE(started);
  EXPECT_NE(started.error().message.find("cannot watch " + proc + ": it is a procfs"), std::string::npos)
      << started.error().message;
}

TEST_F(FanotifyExt4, EmptyOptionsAndDoubleStartAreErrors) {
  RecordingSink sink;
  FanotifySource empty(FanotifyOptions{});
  auto started = empty.start(sink);
  ASSERT_FALSE(started);
  EXPECT_NE(started.error().message.find("mount_points is empty"), std::string::npos);

  auto source = start(sink);
  ASSERT_NE(source, nullptr);
  auto again = source->start(sink);
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().message, "the fanotify source is already running");
}

TEST_F(FanotifyExt4, WithoutCapSysAdminStartFails) {
  int result[2];
  ASSERT_EQ(::pipe(result), 0);
  std::string mount_point = fs_->mount_point;
  pid_t pid = spawn([&] {
    // An unprivileged user has no capabilities.
    if (::setresgid(65534, 65534, 65534) != 0 || ::setresuid(65534, 65534, 65534) != 0) return 9;
    RecordingSink sink;
    FanotifyOptions options;
    options.mount_points = {mount_point};
    FanotifySource source(options);
    auto started = source.start(sink);
    std::string message = started ? "started" : started.error().message;
    return ::write(result[1], message.data(), message.size()) >= 0 ? 0 : 1;
  });
  ::close(result[1]);
  std::string message;
  char buffer[512];
  ssize_t n;
  while ((n = ::read(result[0], buffer, sizeof buffer)) > 0) message.append(buffer, static_cast<size_t>(n));
  ::close(result[0]);
  ASSERT_EQ(wait_child(pid), 0);
  EXPECT_NE(message.find("CAP_SYS_ADMIN"), std::string::npos) << message;
}

// ---------------------------------------------------------------------------
// The kernel's own guarantee that stop() relies on as its last resort.

TEST_F(FanotifyExt4, KernelAllowsPendingEventsWhenGroupCloses) {
  int group = ::fanotify_init(FAN_CLASS_CONTENT | FAN_CLOEXEC, O_RDONLY | O_CLOEXEC);
  ASSERT_GE(group, 0) << std::strerror(errno);
  ASSERT_EQ(::fanotify_mark(group, FAN_MARK_ADD | FAN_MARK_FILESYSTEM, FAN_OPEN_EXEC_PERM, AT_FDCWD,
                            fs_->mount_point.c_str()),
            0)
      << std::strerror(errno);
  std::string app = path("bin/app");
  // The child must not hold the group open itself: it is forked, and
  // FAN_CLOEXEC closes the descriptor only once its exec completes.
  pid_t pid = spawn([&] {
    ::close(group);
    return exec_path(app.c_str());
  });

  // Read the event, so that it waits for a response, then close the group
  // without writing one.
  pollfd ready = {group, POLLIN, 0};
  ASSERT_EQ(::poll(&ready, 1, 10000), 1);
  char buffer[4096];
  ssize_t length = ::read(group, buffer, sizeof buffer);
  ASSERT_GT(length, 0);
  auto* meta = reinterpret_cast<fanotify_event_metadata*>(buffer);
  ASSERT_TRUE((meta->mask & FAN_OPEN_EXEC_PERM) != 0);
  std::this_thread::sleep_for(200ms);
  EXPECT_TRUE(child_running(pid));
  ::close(meta->fd);
  ::close(group);
  EXPECT_EQ(wait_child(pid, 5s), 0) << "closing the group did not allow the pending exec";
}

}  // namespace
}  // namespace imarotd
