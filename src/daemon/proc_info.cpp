#include "proc_info.h"

#include <asm/unistd.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstdlib>
#include <string>

#include <fmt/format.h>

namespace imarotd {
namespace {

// Capability bit numbers from linux/capability.h.
constexpr int kCapSetgid = 6;
constexpr int kCapSetuid = 7;

// Reads a /proc file of at most a few pages whole. Returns nullopt when it
// cannot be opened or read (the task exited, or access was refused).
std::optional<std::string> read_proc_file(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return std::nullopt;
  std::string text;
  char buffer[4096];
  while (true) {
    ssize_t n = ::read(fd, buffer, sizeof buffer);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      ::close(fd);
      return std::nullopt;
    }
    if (n == 0) break;
    text.append(buffer, static_cast<size_t>(n));
  }
  ::close(fd);
  return text;
}

// Returns the value of the line "<key>:\t..." in /proc/<tid>/status, without
// the key and the leading whitespace.
std::optional<std::string_view> status_field(std::string_view status, std::string_view key) {
  size_t pos = 0;
  while (pos < status.size()) {
    size_t end = status.find('\n', pos);
    if (end == std::string_view::npos) end = status.size();
    std::string_view line = status.substr(pos, end - pos);
    if (line.size() > key.size() && line.substr(0, key.size()) == key && line[key.size()] == ':') {
      std::string_view value = line.substr(key.size() + 1);
      size_t first = value.find_first_not_of(" \t");
      return first == std::string_view::npos ? std::string_view() : value.substr(first);
    }
    pos = end + 1;
  }
  return std::nullopt;
}

// Parses `count` whitespace-separated unsigned decimal numbers.
bool parse_decimal_fields(std::string_view text, uint32_t* out, size_t count) {
  const char* cursor = text.data();
  const char* end = text.data() + text.size();
  for (size_t i = 0; i < count; ++i) {
    while (cursor < end && (*cursor == ' ' || *cursor == '\t')) ++cursor;
    auto [next, ec] = std::from_chars(cursor, end, out[i]);
    if (ec != std::errc() || next == cursor) return false;
    cursor = next;
  }
  return true;
}

bool parse_hex(std::string_view text, uint64_t& value) {
  if (text.size() > 2 && text[0] == '0' && (text[1] == 'x' || text[1] == 'X')) text.remove_prefix(2);
  if (text.empty()) return false;
  auto [next, ec] = std::from_chars(text.data(), text.data() + text.size(), value, 16);
  return ec == std::errc() && next == text.data() + text.size();
}

// Returns the task name from the Name line of /proc/<tid>/status: the name
// that /proc/<tid>/comm prints. The kernel writes "Name:\t" and the name,
// with only a newline escaped (as \n) and a backslash (as \\), in
// proc_task_name() in Linux fs/proc/array.c. A name may start with blanks,
// so the value starts right after the tab.
std::optional<std::string> status_name(std::string_view status) {
  constexpr std::string_view kPrefix = "Name:\t";
  size_t line = 0;
  if (status.substr(0, kPrefix.size()) != kPrefix) {
    line = status.find("\nName:\t");
    if (line == std::string_view::npos) return std::nullopt;
    ++line;
  }
  std::string_view escaped = status.substr(line + kPrefix.size());
  escaped = escaped.substr(0, escaped.find('\n'));

  std::string name;
  name.reserve(escaped.size());
  for (size_t i = 0; i < escaped.size(); ++i) {
    if (escaped[i] == '\\' && i + 1 < escaped.size() && (escaped[i + 1] == 'n' || escaped[i + 1] == '\\')) {
      name.push_back(escaped[i + 1] == 'n' ? '\n' : '\\');
      ++i;
    } else {
      name.push_back(escaped[i]);
    }
  }
  return name;
}

}  // namespace

bool parse_proc_status(std::string_view status, TaskInfo& info) {
  auto tgid = status_field(status, "Tgid");
  auto uids = status_field(status, "Uid");
  auto gids = status_field(status, "Gid");
  auto cap_eff = status_field(status, "CapEff");
  if (!tgid || !uids || !gids || !cap_eff) return false;

  uint32_t tgid_value = 0;
  if (!parse_decimal_fields(*tgid, &tgid_value, 1)) return false;
  // Uid and Gid list real, effective, saved and filesystem ids in that order.
  uint32_t u[4];
  uint32_t g[4];
  if (!parse_decimal_fields(*uids, u, 4) || !parse_decimal_fields(*gids, g, 4)) return false;
  uint64_t caps = 0;
  if (!parse_hex(*cap_eff, caps)) return false;

  info.tgid = static_cast<pid_t>(tgid_value);
  if (auto name = status_name(status)) info.comm = std::move(*name);
  info.creds.uid = u[0];
  info.creds.euid = u[1];
  info.creds.suid = u[2];
  info.creds.fsuid = u[3];
  info.creds.gid = g[0];
  info.creds.egid = g[1];
  info.creds.sgid = g[2];
  info.creds.fsgid = g[3];
  info.creds.cap_setuid = (caps >> kCapSetuid) & 1U;
  info.creds.cap_setgid = (caps >> kCapSetgid) & 1U;
  info.creds.known = true;
  return true;
}

TaskInfo read_task_info(pid_t tid, const std::string& proc_root) {
  TaskInfo info;
  auto status = read_proc_file(fmt::format("{}/{}/status", proc_root, tid));
  if (!status || !parse_proc_status(*status, info)) return TaskInfo{};
  return info;
}

std::optional<SyscallLine> parse_proc_syscall(std::string_view text) {
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.remove_suffix(1);
  if (text.empty() || text == "running") return std::nullopt;

  SyscallLine line;
  size_t space = text.find(' ');
  std::string_view number = text.substr(0, space);
  auto [next, ec] = std::from_chars(number.data(), number.data() + number.size(), line.number);
  if (ec != std::errc() || next != number.data() + number.size()) return std::nullopt;
  if (line.number < 0) return line;  // blocked outside a system call: "-1 sp pc"

  // A task in a system call shows six arguments, then sp and pc.
  std::string_view rest = space == std::string_view::npos ? std::string_view() : text.substr(space + 1);
  for (uint64_t& arg : line.args) {
    size_t end = rest.find(' ');
    if (end == std::string_view::npos) return std::nullopt;
    if (!parse_hex(rest.substr(0, end), arg)) return std::nullopt;
    rest.remove_prefix(end + 1);
  }
  return line;
}

SyscallOpen classify_syscall(const SyscallLine& line) {
  SyscallOpen result;
  auto open_with = [&](uint64_t flags) {
    result.call.kind = OpenCall::Kind::open;
    result.call.flags = static_cast<int>(flags);
  };
  switch (line.number) {
#ifdef __NR_open
    case __NR_open:
      open_with(line.args[1]);
      break;
#endif
#ifdef __NR_creat
    case __NR_creat:
      open_with(O_CREAT | O_WRONLY | O_TRUNC);
      break;
#endif
#ifdef __NR_openat
    case __NR_openat:
      open_with(line.args[2]);
      break;
#endif
#ifdef __NR_open_by_handle_at
    case __NR_open_by_handle_at:
      open_with(line.args[2]);
      break;
#endif
#ifdef __NR_openat2
    case __NR_openat2:
      open_with(0);
      result.open_how_address = line.args[2];
      break;
#endif
#ifdef __NR_execve
    case __NR_execve:
      result.call.kind = OpenCall::Kind::exec;
      break;
#endif
#ifdef __NR_execveat
    case __NR_execveat:
      result.call.kind = OpenCall::Kind::exec;
      break;
#endif
#ifdef __NR_uselib
    case __NR_uselib:
      result.call.kind = OpenCall::Kind::exec;
      break;
#endif
    default:
      break;
  }
  return result;
}

OpenCall read_open_call(pid_t tid, const std::string& proc_root) {
  std::string dir = fmt::format("{}/{}", proc_root, tid);
  auto text = read_proc_file(dir + "/syscall");
  if (!text) return OpenCall{};
  auto line = parse_proc_syscall(*text);
  if (!line) return OpenCall{};

  SyscallOpen classified = classify_syscall(*line);
  if (!classified.open_how_address) return classified.call;

  // struct open_how starts with the 64-bit flags (linux/openat2.h).
  int mem = ::open((dir + "/mem").c_str(), O_RDONLY | O_CLOEXEC);
  if (mem < 0) return OpenCall{};
  uint64_t flags = 0;
  ssize_t n = ::pread(mem, &flags, sizeof flags, static_cast<off_t>(*classified.open_how_address));
  ::close(mem);
  if (n != static_cast<ssize_t>(sizeof flags)) return OpenCall{};
  classified.call.flags = static_cast<int>(flags);
  return classified.call;
}

namespace {

// Reads a NUL-terminated string of at most PATH_MAX bytes at `address` in
// the task's memory, one page at a time so that a string ending just before
// an unmapped page is still read.
std::optional<std::string> read_task_string(int mem, uint64_t address) {
  constexpr size_t kMaxLength = 4096;
  constexpr uint64_t kPage = 4096;
  std::string text;
  while (text.size() < kMaxLength) {
    size_t chunk = static_cast<size_t>(kPage - address % kPage);
    std::string buffer(chunk, '\0');
    ssize_t n = ::pread(mem, buffer.data(), chunk, static_cast<off_t>(address));
    if (n <= 0) return std::nullopt;
    size_t end = buffer.find('\0');
    if (end != std::string::npos && end < static_cast<size_t>(n)) {
      text.append(buffer, 0, end);
      return text;
    }
    text.append(buffer, 0, static_cast<size_t>(n));
    address += static_cast<uint64_t>(n);
  }
  return std::nullopt;
}

}  // namespace

std::optional<FileKey> read_exec_target(pid_t tid, const std::string& proc_root) {
  std::string dir = fmt::format("{}/{}", proc_root, tid);
  auto text = read_proc_file(dir + "/syscall");
  if (!text) return std::nullopt;
  auto line = parse_proc_syscall(*text);
  if (!line) return std::nullopt;

  int dirfd = AT_FDCWD;
  uint64_t name_address = 0;
  int flags = 0;
  switch (line->number) {
#ifdef __NR_execve
    case __NR_execve:
      name_address = line->args[0];
      break;
#endif
#ifdef __NR_execveat
    case __NR_execveat:
      dirfd = static_cast<int>(line->args[0]);
      name_address = line->args[1];
      flags = static_cast<int>(line->args[4]);
      break;
#endif
    default:
      return std::nullopt;
  }

  int mem = ::open((dir + "/mem").c_str(), O_RDONLY | O_CLOEXEC);
  if (mem < 0) return std::nullopt;
  auto name = read_task_string(mem, name_address);
  ::close(mem);
  if (!name) return std::nullopt;

  // The task's root, working directory and descriptors, seen through /proc,
  // resolve the name as the task's own lookup does. stat() opens nothing,
  // so it raises no fanotify event.
  std::string path;
  if (name->empty() && (flags & AT_EMPTY_PATH) != 0) {
    path = fmt::format("{}/fd/{}", dir, dirfd);
  } else if (!name->empty() && (*name)[0] == '/') {
    path = dir + "/root" + *name;
  } else if (dirfd == AT_FDCWD) {
    path = dir + "/cwd/" + *name;
  } else {
    path = fmt::format("{}/fd/{}/{}", dir, dirfd, *name);
  }
  struct stat st {};
  int status = (flags & AT_SYMLINK_NOFOLLOW) != 0 ? ::lstat(path.c_str(), &st) : ::stat(path.c_str(), &st);
  if (status != 0) return std::nullopt;
  return FileKey{st.st_dev, st.st_ino};
}

uint32_t access_mask_from_open_flags(int flags) {
  uint32_t mask = 0;
  switch (flags & O_ACCMODE) {
    case O_RDONLY:
      mask = kMayRead;
      break;
    case O_WRONLY:
      mask = kMayWrite;
      break;
    default:  // O_RDWR, and 3, which the kernel also treats as read and write
      mask = kMayRead | kMayWrite;
      break;
  }
  if (flags & O_TRUNC) mask |= kMayWrite;
  if (flags & O_APPEND) mask |= kMayAppend;
  return mask;
}

}  // namespace imarotd
