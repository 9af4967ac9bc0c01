// Helpers for the fanotify tests: private test filesystems, a recording
// sink, child processes and deep paths.
#pragma once

#include <fcntl.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "event.h"

namespace imarotd::test {

using namespace std::chrono_literals;

// The message every fixture fails with when not run as root.
inline constexpr const char* kNeedsRoot =
    "the fanotify tests need root (CAP_SYS_ADMIN for fanotify_init and mount); run them as root";

inline std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

inline bool write_text(const std::string& path, const std::string& text, mode_t mode = 0644) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
  if (fd < 0) return false;
  bool ok = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size());
  ::fchmod(fd, mode);
  ::close(fd);
  return ok;
}

// Reads a descriptor from offset 0 to its end without moving its offset.
inline std::string read_fd_content(int fd) {
  std::string content;
  char buffer[65536];
  off_t offset = 0;
  while (true) {
    ssize_t n = ::pread(fd, buffer, sizeof buffer, offset);
    if (n <= 0) break;
    content.append(buffer, static_cast<size_t>(n));
    offset += n;
  }
  return content;
}

struct CommandResult {
  int exit_code = -1;
  std::string output;
};

// Runs a command without a shell; stdout and stderr are collected together.
inline CommandResult run_command(const std::vector<std::string>& argv) {
  int pipe_fds[2];
  if (::pipe2(pipe_fds, O_CLOEXEC) != 0) return {};
  pid_t pid = ::fork();
  if (pid == 0) {
    ::dup2(pipe_fds[1], 1);
    ::dup2(pipe_fds[1], 2);
    int null = ::open("/dev/null", O_RDONLY);
    ::dup2(null, 0);
    std::vector<char*> args;
    for (const auto& arg : argv) args.push_back(const_cast<char*>(arg.c_str()));
    args.push_back(nullptr);
    ::execvp(args[0], args.data());
    ::_exit(127);
  }
  ::close(pipe_fds[1]);
  CommandResult result;
  char buffer[4096];
  ssize_t n;
  while ((n = ::read(pipe_fds[0], buffer, sizeof buffer)) > 0) result.output.append(buffer, static_cast<size_t>(n));
  ::close(pipe_fds[0]);
  int status = 0;
  ::waitpid(pid, &status, 0);
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return result;
}

// A filesystem mounted for one test suite in a temporary directory and
// unmounted, with the directory removed, when destroyed: an ext4 image on a
// loop device (mount -o loop detaches it on unmount) or a tmpfs.
class TestFilesystem {
 public:
  enum class Kind { ext4, tmpfs };

  // Creates and mounts the filesystem. `error` is set when that failed.
  TestFilesystem(Kind kind, const std::string& uuid = "") {
    std::string pattern = (std::filesystem::temp_directory_path() / "imarotd-fanotify-XXXXXX").string();
    if (::mkdtemp(pattern.data()) == nullptr) {
      error = std::string("mkdtemp failed: ") + std::strerror(errno);
      return;
    }
    dir_ = pattern;
    // Tests run programs under other uids, which must reach the mount.
    ::chmod(dir_.c_str(), 0755);
    mount_point = dir_ + "/mnt";
    ::mkdir(mount_point.c_str(), 0755);
    if (kind == Kind::tmpfs) {
      if (::mount("imarotd-test", mount_point.c_str(), "tmpfs", 0, "size=256m,nr_inodes=100000") != 0) {
        error = std::string("mounting a tmpfs failed: ") + std::strerror(errno);
        return;
      }
    } else {
      std::string image = dir_ + "/ext4.img";
      int fd = ::open(image.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
      if (fd < 0 || ::ftruncate(fd, 128L << 20) != 0) {
        error = "creating the ext4 image failed";
        if (fd >= 0) ::close(fd);
        return;
      }
      ::close(fd);
      std::vector<std::string> mkfs = {"mkfs.ext4", "-F", "-q", "-N", "40000"};
      if (!uuid.empty()) {
        mkfs.push_back("-U");
        mkfs.push_back(uuid);
      }
      mkfs.push_back(image);
      CommandResult made = run_command(mkfs);
      if (made.exit_code != 0) {
        error = "mkfs.ext4 failed: " + made.output;
        return;
      }
      CommandResult mounted = run_command({"mount", "-o", "loop", image, mount_point});
      if (mounted.exit_code != 0) {
        error = "mount -o loop failed: " + mounted.output;
        return;
      }
    }
    mounted_ = true;
  }

  ~TestFilesystem() {
    if (mounted_) {
      // A child killed at a timeout may still hold a file for a moment.
      for (int attempt = 0; attempt < 50 && ::umount2(mount_point.c_str(), 0) != 0 && errno == EBUSY; ++attempt) {
        std::this_thread::sleep_for(100ms);
      }
      ::umount2(mount_point.c_str(), MNT_DETACH);
    }
    if (!dir_.empty()) {
      std::error_code ignored;
      std::filesystem::remove_all(dir_, ignored);
    }
  }

  TestFilesystem(const TestFilesystem&) = delete;
  TestFilesystem& operator=(const TestFilesystem&) = delete;

  std::string path(const std::string& relative) const { return mount_point + "/" + relative; }
  const std::string& scratch_dir() const { return dir_; }

  std::string mount_point;
  std::string error;

 private:
  std::string dir_;
  bool mounted_ = false;
};

// Records every event. It can hold completions instead of running them, and
// can block the source's reader on a chosen event until release().
class RecordingSink : public EventSink {
 public:
  using Predicate = std::function<bool(const FileEvent&)>;

  explicit RecordingSink(bool hold_completions = false, bool keep_fds = true)
      : hold_completions_(hold_completions), keep_fds_(keep_fds) {}

  void submit(FileEvent event) override {
    std::unique_lock lock(mutex_);
    if (block_when_ && !blocked_once_ && block_when_(event)) {
      blocked_once_ = true;
      blocked_ = true;
      changed_.notify_all();
      changed_.wait(lock, [&] { return released_; });
      blocked_ = false;
    }
    if (!keep_fds_) event.fd = UniqueFd();
    if (event.completion && !hold_completions_) {
      Completion completion = std::move(event.completion);
      event.completion = nullptr;
      lock.unlock();
      completion();
      lock.lock();
    }
    events_.push_back(std::move(event));
    changed_.notify_all();
  }

  // Blocks the first submit whose event matches until release().
  void block_when(Predicate predicate) {
    std::lock_guard lock(mutex_);
    block_when_ = std::move(predicate);
  }

  bool wait_until_blocked(std::chrono::milliseconds timeout) {
    std::unique_lock lock(mutex_);
    return changed_.wait_for(lock, timeout, [&] { return blocked_; });
  }

  void release() {
    std::lock_guard lock(mutex_);
    released_ = true;
    changed_.notify_all();
  }

  // Waits for an event that matches and returns it; nullptr at the timeout.
  // The event stays owned by the sink.
  FileEvent* wait_for(const Predicate& predicate, std::chrono::milliseconds timeout = 10s) {
    std::unique_lock lock(mutex_);
    FileEvent* found = nullptr;
    changed_.wait_for(lock, timeout, [&] {
      for (auto& event : events_) {
        if (predicate(event)) {
          found = &event;
          return true;
        }
      }
      return false;
    });
    return found;
  }

  std::vector<FileEvent*> matching(const Predicate& predicate) {
    std::lock_guard lock(mutex_);
    std::vector<FileEvent*> found;
    for (auto& event : events_) {
      if (predicate(event)) found.push_back(&event);
    }
    return found;
  }

  // Runs a held completion outside the sink's lock.
  void complete(FileEvent& event) {
    Completion completion;
    {
      std::lock_guard lock(mutex_);
      completion = std::move(event.completion);
      event.completion = nullptr;
    }
    if (completion) completion();
  }

  size_t size() {
    std::lock_guard lock(mutex_);
    return events_.size();
  }

  // Returns the submit order of a recorded event.
  size_t position(const FileEvent* event) {
    std::lock_guard lock(mutex_);
    for (size_t i = 0; i < events_.size(); ++i) {
      if (&events_[i] == event) return i;
    }
    return events_.size();
  }

 private:
  std::mutex mutex_;
  std::condition_variable changed_;
  std::deque<FileEvent> events_;
  bool hold_completions_;
  bool keep_fds_;
  Predicate block_when_;
  bool blocked_once_ = false;
  bool blocked_ = false;
  bool released_ = false;
};

inline RecordingSink::Predicate event_of(pid_t pid, EventKind kind, Hook hook) {
  return [=](const FileEvent& e) { return e.pid == pid && e.kind == kind && e.hook == hook; };
}

inline RecordingSink::Predicate event_of(pid_t pid, EventKind kind) {
  return [=](const FileEvent& e) { return e.pid == pid && e.kind == kind; };
}

// A child process running `body`; its exit code is body's return value.
// Everything `body` needs should be prepared before the fork.
inline pid_t spawn(const std::function<int()>& body) {
  pid_t pid = ::fork();
  if (pid == 0) ::_exit(body());
  return pid;
}

// Waits for a child of this test; at the timeout it is killed and -1 is
// returned. Returns the exit code, or 128 + the signal that ended it.
inline int wait_child(pid_t pid, std::chrono::milliseconds timeout = 10s) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  int status = 0;
  while (true) {
    pid_t done = ::waitpid(pid, &status, WNOHANG);
    if (done == pid) break;
    if (done < 0) return -1;
    if (std::chrono::steady_clock::now() >= deadline) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, &status, 0);
      return -1;
    }
    std::this_thread::sleep_for(5ms);
  }
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return -1;
}

// True when the child has not exited yet.
inline bool child_running(pid_t pid) {
  int status = 0;
  return ::waitpid(pid, &status, WNOHANG) == 0;
}

inline int exec_path(const char* path) {
  char* argv[] = {const_cast<char*>(path), nullptr};
  char* envp[] = {nullptr};
  ::execve(path, argv, envp);
  return 126;
}

// A file at the end of directories whose absolute path has exactly
// `total_length` bytes. Directories are made relative to each other, so the
// path may exceed PATH_MAX.
struct DeepFile {
  std::string path;                     // full absolute path
  std::string root;                     // existing directory it starts in
  std::vector<std::string> directories;  // created under root, in order
  std::string name;                      // the file's own name
};

inline std::optional<DeepFile> make_deep_file(const std::string& root, size_t total_length,
                                              const std::string& content, char fill = 'd') {
  DeepFile deep;
  deep.root = root;
  if (total_length < root.size() + 2) return std::nullopt;
  size_t remaining = total_length - root.size() - 1;  // after root + '/'
  int index = 0;
  while (remaining > 255) {
    size_t length = std::min<size_t>(200, remaining - 2);
    std::string name(length, fill);
    name[0] = static_cast<char>('a' + index % 26);
    deep.directories.push_back(name);
    remaining -= length + 1;
    ++index;
  }
  deep.name = std::string(remaining, 'f');

  int dir = ::open(root.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (dir < 0) return std::nullopt;
  deep.path = root;
  for (const auto& name : deep.directories) {
    ::mkdirat(dir, name.c_str(), 0755);
    int next = ::openat(dir, name.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
    ::close(dir);
    if (next < 0) return std::nullopt;
    dir = next;
    deep.path += "/" + name;
  }
  int file = ::openat(dir, deep.name.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  ::close(dir);
  if (file < 0) return std::nullopt;
  bool written = ::write(file, content.data(), content.size()) == static_cast<ssize_t>(content.size());
  ::close(file);
  if (!written) return std::nullopt;
  deep.path += "/" + deep.name;
  return deep;
}

// Opens a DeepFile for reading the way a program in it would: by relative
// chdir into each directory, then opening the name. Returns 0 on success.
inline int open_deep_relative(const DeepFile& deep) {
  if (::chdir(deep.root.c_str()) != 0) return 2;
  for (const auto& name : deep.directories) {
    if (::chdir(name.c_str()) != 0) return 3;
  }
  int fd = ::open(deep.name.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 4;
  char byte;
  if (::read(fd, &byte, 1) < 0) return 5;
  ::close(fd);
  return 0;
}

}  // namespace imarotd::test
