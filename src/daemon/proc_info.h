// The task behind a file event as /proc shows it: its name, its
// credentials, and the open(2) flags of the system call it is blocked in.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "event.h"

namespace imarotd {

// Identity and credentials of one task (thread), read from /proc/<tid>/.
struct TaskInfo {
  pid_t tgid = 0;  // 0 when the task was gone
  std::string comm;
  TaskCredentials creds;
};

// Reads Name, Tgid, Uid, Gid and CapEff of thread `tid` from
// `proc_root`/<tid>/status. A task that exited before it was read gives
// tgid 0, an empty comm and creds.known == false.
TaskInfo read_task_info(pid_t tid, const std::string& proc_root = "/proc");

// Parses the text of /proc/<tid>/status into `info`: tgid, credentials, and
// comm from the Name line with the kernel's escapes undone. Returns false
// when a required line (Tgid, Uid, Gid, CapEff) is missing or malformed.
bool parse_proc_status(std::string_view status, TaskInfo& info);

// The open(2)-family system call a task waits in during a permission event.
struct OpenCall {
  enum class Kind : uint8_t {
    unknown,  // not an open(2)-family system call of this ABI, or unreadable
    open,     // open, openat, openat2, creat or open_by_handle_at; `flags` set
    exec,     // execve, execveat or uselib
  };
  Kind kind = Kind::unknown;
  int flags = 0;  // O_* flags of the open
};

// Reads /proc/<tid>/syscall, and for openat2 the struct open_how from
// /proc/<tid>/mem. Only meaningful while the task is blocked inside the
// system call, as it is during a fanotify permission event.
// NOTE: the syscall numbers are those of the daemon's own ABI (x86_64 or
// aarch64); a 32-bit task blocked in open gives Kind::unknown.
OpenCall read_open_call(pid_t tid, const std::string& proc_root = "/proc");

// One line of /proc/<tid>/syscall: the system call number and its six
// arguments. `number` is -1 when the task is blocked outside a system call.
struct SyscallLine {
  long number = -1;
  uint64_t args[6] = {};
};

// Parses the text of /proc/<tid>/syscall; nullopt for "running" and for
// text of another shape.
std::optional<SyscallLine> parse_proc_syscall(std::string_view text);

// Classifies a system call by number and takes the open flags from its
// arguments. openat2 passes its flags in a struct open_how in the task's
// memory, so for openat2 the result has kind open, flags 0 and
// `open_how_address` set to the address of that struct.
struct SyscallOpen {
  OpenCall call;
  std::optional<uint64_t> open_how_address;
};
SyscallOpen classify_syscall(const SyscallLine& line);

// Device and inode of a file.
struct FileKey {
  dev_t dev = 0;
  ino_t ino = 0;
  bool operator==(const FileKey& other) const { return dev == other.dev && ino == other.ino; }
  bool operator!=(const FileKey& other) const { return !(*this == other); }
};

// Returns the file that the execve or execveat task `tid` is blocked in
// names, following symlinks as exec does, resolved through the task's own
// root, working directory and descriptors. nullopt when the task is in
// another system call or the name cannot be read or resolved.
std::optional<FileKey> read_exec_target(pid_t tid, const std::string& proc_root = "/proc");

// MAY_* access mask kernel IMA passes to FILE_CHECK for open flags: the
// access mode (O_RDONLY → MAY_READ, O_WRONLY → MAY_WRITE, O_RDWR → both),
// MAY_WRITE for O_TRUNC, MAY_APPEND for O_APPEND.
uint32_t access_mask_from_open_flags(int flags);

}  // namespace imarotd
