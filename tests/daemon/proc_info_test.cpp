// Parsing of /proc/<tid>/status and /proc/<tid>/syscall, and the MAY_*
// masks kernel IMA derives from open flags.
#include <asm/unistd.h>
#include <fcntl.h>
#include <sys/prctl.h>
#include <sys/syscall.h>

#include <future>
#include <thread>

#include <fmt/format.h>

#include "fanotify_test_util.h"
#include "proc_info.h"

namespace imarotd {
namespace {

using namespace test;

constexpr const char* kStatus =
    "Name:\tbash\n"
    "Umask:\t0022\n"
    "State:\tS (sleeping)\n"
    "Tgid:\t4242\n"
    "Pid:\t4243\n"
    "Uid:\t1000\t1001\t1002\t1003\n"
    "Gid:\t2000\t2001\t2002\t2003\n"
    "CapInh:\t0000000000000000\n"
    "CapPrm:\t00000000000000c0\n"
    "CapEff:\t0000000000000080\n";

TEST(ProcStatus, ReadsIdsAndCapabilities) {
  TaskInfo info;
  ASSERT_TRUE(parse_proc_status(kStatus, info));
  EXPECT_EQ(info.comm, "bash");
  EXPECT_EQ(info.tgid, 4242);
  EXPECT_EQ(info.creds.uid, 1000u);
  EXPECT_EQ(info.creds.euid, 1001u);
  EXPECT_EQ(info.creds.suid, 1002u);
  EXPECT_EQ(info.creds.fsuid, 1003u);
  EXPECT_EQ(info.creds.gid, 2000u);
  EXPECT_EQ(info.creds.egid, 2001u);
  EXPECT_EQ(info.creds.sgid, 2002u);
  EXPECT_EQ(info.creds.fsgid, 2003u);
  // CapEff 0x80 is CAP_SETUID (bit 7) without CAP_SETGID (bit 6).
  EXPECT_TRUE(info.creds.cap_setuid);
  EXPECT_FALSE(info.creds.cap_setgid);
  EXPECT_TRUE(info.creds.known);
}

TEST(ProcStatus, RejectsMissingOrShortLines) {
  TaskInfo info;
  EXPECT_FALSE(parse_proc_status("Tgid:\t1\nUid:\t0\t0\t0\t0\nGid:\t0\t0\t0\t0\n", info));
  EXPECT_FALSE(parse_proc_status("Tgid:\t1\nUid:\t0\t0\t0\nGid:\t0\t0\t0\t0\nCapEff:\t0\n", info));
  EXPECT_FALSE(parse_proc_status("Tgid:\tx\nUid:\t0\t0\t0\t0\nGid:\t0\t0\t0\t0\nCapEff:\t0\n", info));
  EXPECT_FALSE(info.creds.known);
}

TEST(ProcStatus, ReadsOwnTask) {
  TaskInfo info = read_task_info(::getpid());
  std::string comm = read_text("/proc/self/comm");
  comm.pop_back();
  EXPECT_EQ(info.tgid, ::getpid());
  EXPECT_EQ(info.comm, comm);
  EXPECT_TRUE(info.creds.known);
  EXPECT_EQ(info.creds.uid, ::getuid());
  EXPECT_EQ(info.creds.egid, ::getegid());
}

TEST(ProcStatus, UnescapesName) {
  TaskInfo info;
  // kStatus with its Name line replaced by an escaped name.
  std::string rest = std::string(kStatus).substr(std::string_view(kStatus).find('\n') + 1);
  ASSERT_TRUE(parse_proc_status("Name:\t a\\\\b\\nc\n" + rest, info));
  EXPECT_EQ(info.comm, " a\\b\nc");
}

TEST(ProcStatus, NameMatchesCommOfRealThread) {
  // A leading blank, a backslash and a newline: the characters that status
  // escapes or that a parser could strip.
  const char* name = " a\\b\nc";
  std::promise<pid_t> started;
  std::promise<void> checked;
  std::thread thread([&] {
    ::prctl(PR_SET_NAME, name);
    started.set_value(static_cast<pid_t>(::syscall(SYS_gettid)));
    checked.get_future().wait();
  });
  pid_t tid = started.get_future().get();
  TaskInfo info = read_task_info(tid);
  std::string comm = read_text(fmt::format("/proc/self/task/{}/comm", tid));
  checked.set_value();
  thread.join();

  ASSERT_FALSE(comm.empty());
  comm.pop_back();  // the newline the kernel adds
  EXPECT_EQ(comm, name);
  EXPECT_EQ(info.comm, comm);
}

TEST(ProcStatus, ExitedTaskIsUnknown) {
  pid_t pid = spawn([] { return 0; });
  ASSERT_EQ(wait_child(pid), 0);
  TaskInfo info = read_task_info(pid);
  EXPECT_FALSE(info.creds.known);
  EXPECT_EQ(info.tgid, 0);
  EXPECT_TRUE(info.comm.empty());
}

TEST(ProcSyscall, ParsesBlockedSystemCall) {
  auto line = parse_proc_syscall("257 0xffffff9c 0x7ffc1234 0x241 0x1b6 0x0 0x0 0x7ffc0000 0x7f0012345678\n");
  ASSERT_TRUE(line.has_value());
  EXPECT_EQ(line->number, 257);
  EXPECT_EQ(line->args[0], 0xffffff9cULL);
  EXPECT_EQ(line->args[1], 0x7ffc1234ULL);
  EXPECT_EQ(line->args[2], 0x241ULL);
  EXPECT_EQ(line->args[3], 0x1b6ULL);
}

TEST(ProcSyscall, RunningAndOutsideSystemCall) {
  EXPECT_FALSE(parse_proc_syscall("running\n").has_value());
  EXPECT_FALSE(parse_proc_syscall("").has_value());
  EXPECT_FALSE(parse_proc_syscall("257 0x1 0x2\n").has_value());
  auto outside = parse_proc_syscall("-1 0x7ffc0000 0x7f0012345678\n");
  ASSERT_TRUE(outside.has_value());
  EXPECT_EQ(outside->number, -1);
}

SyscallLine syscall_line(long number, std::initializer_list<uint64_t> args) {
  SyscallLine line;
  line.number = number;
  size_t i = 0;
  for (uint64_t arg : args) line.args[i++] = arg;
  return line;
}

TEST(ProcSyscall, ClassifiesOpenFamily) {
#ifdef __NR_open
  SyscallOpen open = classify_syscall(syscall_line(__NR_open, {0x1000, O_WRONLY | O_APPEND}));
  EXPECT_EQ(open.call.kind, OpenCall::Kind::open);
  EXPECT_EQ(open.call.flags, O_WRONLY | O_APPEND);
#endif
#ifdef __NR_creat
  SyscallOpen creat = classify_syscall(syscall_line(__NR_creat, {0x1000, 0644}));
  EXPECT_EQ(creat.call.kind, OpenCall::Kind::open);
  EXPECT_EQ(creat.call.flags, O_CREAT | O_WRONLY | O_TRUNC);
#endif
  SyscallOpen openat = classify_syscall(syscall_line(__NR_openat, {0xffffff9c, 0x1000, O_RDWR}));
  EXPECT_EQ(openat.call.kind, OpenCall::Kind::open);
  EXPECT_EQ(openat.call.flags, O_RDWR);
  EXPECT_FALSE(openat.open_how_address.has_value());

  SyscallOpen openat2 = classify_syscall(syscall_line(__NR_openat2, {0xffffff9c, 0x1000, 0x2000, 24}));
  EXPECT_EQ(openat2.call.kind, OpenCall::Kind::open);
  ASSERT_TRUE(openat2.open_how_address.has_value());
  EXPECT_EQ(*openat2.open_how_address, 0x2000u);

  SyscallOpen by_handle = classify_syscall(syscall_line(__NR_open_by_handle_at, {3, 0x1000, O_RDONLY}));
  EXPECT_EQ(by_handle.call.kind, OpenCall::Kind::open);

  EXPECT_EQ(classify_syscall(syscall_line(__NR_execve, {})).call.kind, OpenCall::Kind::exec);
  EXPECT_EQ(classify_syscall(syscall_line(__NR_execveat, {})).call.kind, OpenCall::Kind::exec);
  EXPECT_EQ(classify_syscall(syscall_line(__NR_read, {})).call.kind, OpenCall::Kind::unknown);
  EXPECT_EQ(classify_syscall(syscall_line(-1, {})).call.kind, OpenCall::Kind::unknown);
}

TEST(OpenFlags, AccessMaskAsKernelIma) {
  struct Case {
    int flags;
    uint32_t mask;
  };
  const Case cases[] = {
      {O_RDONLY, kMayRead},
      {O_WRONLY, kMayWrite},
      {O_RDWR, kMayRead | kMayWrite},
      {O_ACCMODE, kMayRead | kMayWrite},
      {O_RDONLY | O_TRUNC, kMayRead | kMayWrite},
      {O_WRONLY | O_APPEND, kMayWrite | kMayAppend},
      {O_RDWR | O_APPEND | O_CREAT, kMayRead | kMayWrite | kMayAppend},
      {O_RDONLY | O_CLOEXEC | O_NOFOLLOW, kMayRead},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.flags);
    EXPECT_EQ(access_mask_from_open_flags(c.flags), c.mask);
  }
}

}  // namespace
}  // namespace imarotd
