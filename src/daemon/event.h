// File events as every event source (eBPF LSM, fanotify, replay) reports
// them to the measurement pipeline.
#pragma once

#include <sys/types.h>

#include <array>
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "imarot/policy.h"
#include "imarot/result.h"

namespace imarotd {

// The kernel IMA hook an event corresponds to. The policy matches these as
// func= values.
enum class Hook : uint8_t {
  bprm_check,          // execve of the file (BPRM_CHECK)
  mmap_check,          // mmap with PROT_EXEC (MMAP_CHECK)
  mmap_check_reqprot,  // mprotect adding PROT_EXEC (MMAP_CHECK_REQPROT)
  file_check,          // open (FILE_CHECK), with the access mask of the open
  module_check,        // kernel module load
  firmware_check,      // firmware load
  kexec_kernel_check,
  kexec_initramfs_check,
  policy_check,
};

// Access mask bits as IMA's policy names them (MAY_* in linux/fs.h).
inline constexpr uint32_t kMayExec = 0x1;
inline constexpr uint32_t kMayWrite = 0x2;
inline constexpr uint32_t kMayRead = 0x4;
inline constexpr uint32_t kMayAppend = 0x8;

// Credentials of the task that caused the event.
struct TaskCredentials {
  uint32_t uid = 0, euid = 0, suid = 0, fsuid = 0;
  uint32_t gid = 0, egid = 0, sgid = 0, fsgid = 0;
  bool cap_setuid = false;  // CAP_SETUID in the effective set
  bool cap_setgid = false;
  bool known = false;       // false when the task was gone before it was read
};

// Identity of the file as the source saw it. The pipeline hashes only a
// file whose identity still matches, so the digest is of the file the event
// was about.
struct FileIdentity {
  dev_t dev = 0;
  ino_t ino = 0;
  uint32_t generation = 0;       // i_generation, 0 where unavailable
  uint64_t change_counter = 0;   // i_version where the source has it, else ctime in ns
  uint64_t fsmagic = 0;
  std::optional<std::array<uint8_t, 16>> fs_uuid;
  uint32_t owner = 0;  // inode uid
  uint32_t group = 0;  // inode gid
  uint32_t mode = 0;   // inode mode, file type bits included
};

// An open file descriptor owned by the event; closed when the event is
// destroyed.
class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  UniqueFd(UniqueFd&& other) noexcept : fd_(other.release()) {}
  UniqueFd& operator=(UniqueFd&& other) noexcept;
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  ~UniqueFd();
  int get() const { return fd_; }
  int release() {
    int fd = fd_;
    fd_ = -1;
    return fd;
  }
  explicit operator bool() const { return fd_ >= 0; }

 private:
  int fd_ = -1;
};

// Called once when the pipeline is done with a permission event: after the
// entry is durable and extended, or at once when nothing is measured. A
// source that does not block the access passes an empty function.
using Completion = std::function<void()>;

enum class EventKind : uint8_t {
  access,       // a hook fired: measure under policy
  write_open,   // the file was opened for writing (for open-writers/ToMToU)
  write_close,  // a writer closed it
  read_close,   // a reader closed it
  lost,         // the source dropped events, `lost_count` of them
};

struct FileEvent {
  EventKind kind = EventKind::access;
  Hook hook = Hook::file_check;
  uint32_t mask = 0;  // MAY_* bits of the access
  // The open can write (FMODE_WRITE: O_WRONLY or O_RDWR). Open-writers and
  // ToMToU follow this, not MAY_WRITE in `mask`, which O_TRUNC also sets.
  bool write_access = false;
  pid_t pid = 0;
  pid_t tgid = 0;
  std::string comm;
  TaskCredentials creds;
  FileIdentity file;
  // Absolute path as the kernel prints it (d_absolute_path), raw bytes.
  // For a path the kernel cannot print (longer than PATH_MAX) the final
  // component, at most 254 bytes, as kernel IMA falls back to.
  std::string path;
  // Set when the file had been unlinked when the event was seen; `path` is
  // then the name it had, without the " (deleted)" suffix.
  bool deleted = false;
  UniqueFd fd;  // the opened file, when the source has one
  uint64_t lost_count = 0;
  std::string lost_reason;  // for EventKind::lost: "fanotify queue overflow", ...
  Completion completion;
  // Called by the pipeline once the file, in the state `file` describes, is
  // measured into the list or found measured and unchanged. Not called when
  // the policy does not measure the event or the measurement failed. The
  // eBPF source fills its in-kernel cache from it. May be empty.
  std::function<void()> on_measured;
};

// The policy func= value of `hook`.
imarot::PolicyFunc policy_func(Hook hook);

// Returns a copy of `base` with kind `kind`, without the descriptor, the
// completion and the measured callback, which have one owner each.
FileEvent copy_event_header(const FileEvent& base, EventKind kind);

// An access described by its file alone, before the source has read
// anything about the task (credentials, name, open flags). Sources pass it
// to EventSink::complete_cached() to skip that work for files that are
// already measured.
struct CachedAccessProbe {
  FileIdentity file;
  uint32_t mask = 0;  // MAY_* bits of the access
  // Every hook the access may be. An exec open is BPRM_CHECK for a program
  // and MMAP_CHECK for the dynamic linker an ELF program names. Only the
  // task's system call distinguishes them.
  std::array<Hook, 2> hooks{};
  size_t hook_count = 0;
  // An open for reading: the sink counts the reader for open-writers and
  // ToMToU as it does for a submitted FILE_CHECK access.
  bool counts_reader = false;
};

// Receives events from a source. Implementations must be thread-safe where
// the source calls from several threads. The sources here call from one
// thread each.
class EventSink {
 public:
  virtual ~EventSink() = default;
  virtual void submit(FileEvent event) = 0;

  // Completes an access from its file alone when nothing new can come of
  // it. That holds when, for every hook in the probe, the policy's measure
  // decision does not depend on the task and the file is either not
  // measured under it or already measured and unchanged. A writer that
  // would make the access an open-writers violation also rules it out.
  // Returns true when the access is done and must not be submitted, and
  // false when the source must submit the full event. Runs on the source's
  // thread, like submit().
  virtual bool complete_cached(const CachedAccessProbe& probe) {
    (void)probe;
    return false;
  }
};

struct EventSourceStats {
  std::atomic<uint64_t> events{0};
  std::atomic<uint64_t> lost{0};
};

// A producer of file events: the eBPF LSM programs, fanotify, or a replay of
// recorded events in tests.
class EventSource {
 public:
  virtual ~EventSource() = default;
  virtual std::string name() const = 0;
  // Starts delivering events to `sink` from a thread of the source's own.
  virtual imarot::Result<void> start(EventSink& sink) = 0;
  // Stops delivering; pending permission events are allowed before it
  // returns, so no task stays blocked on a stopped daemon.
  virtual void stop() = 0;
  virtual const EventSourceStats& stats() const = 0;
  // Whether the source receives events for files on the filesystem of
  // `file`. The scan of programs that were running before the source
  // started submits only files for which this is true. Sources that see every filesystem keep the
  // default.
  virtual bool watches(const FileIdentity& file) const {
    (void)file;
    return true;
  }
  // Applies a reloaded policy to what the source filters before the
  // pipeline (the eBPF source's in-kernel filter). Sources that send every
  // event ignore it.
  virtual imarot::Result<void> policy_changed(const imarot::Policy& policy) {
    (void)policy;
    return imarot::Ok{};
  }
};

}  // namespace imarotd
