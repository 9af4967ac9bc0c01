// The fanotify event source: file opens and execs on whole filesystems
// (FAN_MARK_FILESYSTEM), on every kernel with fanotify, as root.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <unordered_set>
#include <vector>

#include "event.h"
#include "imarot/result.h"

namespace imarotd {

// One line of /proc/self/mountinfo with the filesystem's magic number.
struct MountedFilesystem {
  int mount_id = 0;
  int parent_id = 0;
  dev_t dev = 0;            // major:minor of the superblock
  std::string root;         // directory of the filesystem mounted here
  std::string mount_point;  // decoded: "\040" in mountinfo becomes a space
  std::string fstype;       // "ext4", "tmpfs", "fuse.sshfs", ...
  std::string source;
  std::string mount_options;
  std::string super_options;
  uint64_t fsmagic = 0;  // statfs f_type; 0 when statfs failed
  // True when the mount point path resolves to this mount, false when a
  // later mount hides it or it could not be checked.
  bool reachable = false;
};

// Lists the mounts of the caller's mount namespace from `mountinfo_path`,
// with statfs's f_type for each. Mount points are opened with O_PATH, which
// triggers no automount and no fanotify event.
imarot::Result<std::vector<MountedFilesystem>> list_mounted_filesystems(
    const std::string& mountinfo_path = "/proc/self/mountinfo");

// An open regular file described as the fanotify source describes the file
// of an event: its identity and the name kernel IMA would record.
struct DescribedFile {
  FileIdentity file;
  std::string path;
  bool deleted = false;  // unlinked; `path` is the name it had
};

// Describes `fd`. `attached_mount_ids` are the mount ids of the daemon's
// mount namespace: a file on another mount is named by its final
// component, as kernel IMA names a file it cannot print a full path for.
imarot::Result<DescribedFile> describe_open_file(int fd, const std::unordered_set<uint64_t>& attached_mount_ids);

// Picks one reachable mount point for each filesystem (superblock) that
// `measured` accepts, in mountinfo order. FAN_MARK_FILESYSTEM covers the
// whole superblock, so one mount of it is enough.
std::vector<std::string> select_mount_points(const std::vector<MountedFilesystem>& filesystems,
                                             const std::function<bool(const MountedFilesystem&)>& measured);

struct FanotifyOptions {
  // A path on each filesystem to watch, usually its mount point. The whole
  // filesystem is marked, through every mount and mount namespace.
  std::vector<std::string> mount_points;
  // The source always takes permission events (FAN_OPEN_EXEC_PERM,
  // FAN_OPEN_PERM), because only a waiting opener's flags can be read from
  // /proc. true: the open or exec waits until the event's Completion runs.
  // false: the access is allowed as soon as the task's credentials, open
  // flags and exec target are read, before the event is submitted, and the
  // Completion is empty. When the queue is full the kernel allows the
  // accesses it cannot queue, and the source reports the overflow as a lost
  // event.
  bool measure_before_use = false;
  // Take notification events (FAN_OPEN_EXEC, FAN_OPEN) instead: no access
  // ever waits, but the open's flags are gone by the time the event is
  // read, so every open reads as MAY_READ (MAY_EXEC for an exec) and
  // writers are seen only when they close. Tests use it to change a file
  // before its event is read. Cannot be combined with measure_before_use.
  bool notification_events = false;
  // Processes (thread-group ids) whose events are dropped, and allowed at
  // once in permission mode. The daemon's own process is always ignored.
  std::vector<pid_t> ignored_pids;
};

// Reads fanotify events on a thread of its own and submits FileEvents:
//  - FAN_OPEN_EXEC(_PERM): access, Hook::bprm_check, MAY_EXEC. In permission
//    mode the dynamic linker an ELF program names (PT_INTERP) gets
//    Hook::mmap_check instead, the hook kernel IMA applies to it when the
//    kernel maps it executable.
//  - FAN_OPEN(_PERM): access, Hook::file_check with the open's MAY_* mask
//    and write_access for O_WRONLY and O_RDWR. The source sends no separate
//    write_open.
//  - FAN_CLOSE_WRITE / FAN_CLOSE_NOWRITE: write_close / read_close.
//  - FAN_Q_OVERFLOW, and events whose file could not be opened or named:
//    lost, with lost_count 1 each.
// Access events carry a descriptor of the file the task opened. For a
// permission event it is a duplicate, because the original names the event
// in the response and stays with the source until then. Closes carry the
// file's identity and the thread id only, with no path, tgid or task name.
// pid is the thread id (FAN_REPORT_TID) and tgid its process.
//
// The task's name, credentials and open flags are read from /proc/<tid>/
// while the task waits on the permission event. Before that, a permission
// event for an exec or an open for reading is offered to the sink's
// complete_cached() with the file's identity alone, and allowed at once
// when the sink completes it. The open flags of an exec's own FAN_OPEN_PERM
// are known from the FAN_OPEN_EXEC_PERM before it. A measured program that
// runs again therefore costs no /proc reads, only a tgkill() with signal 0
// for each ignored process, which fails unless the thread belongs to it.
// The sink must not open files on a watched filesystem inside submit(): in
// permission mode the thread that would allow that open is the one waiting
// in submit().
// NOTE: fanotify merges unread close events of one thread on one file into
// one, so close events undercount when the reader falls behind. mmap and
// mprotect raise no fanotify event, so MMAP_CHECK of other mappings is not
// reported.
class FanotifySource final : public EventSource {
 public:
  explicit FanotifySource(FanotifyOptions options);
  ~FanotifySource() override;
  FanotifySource(const FanotifySource&) = delete;
  FanotifySource& operator=(const FanotifySource&) = delete;

  std::string name() const override { return "fanotify"; }

  // Creates the fanotify group, marks every filesystem and starts the
  // reader. Errors name the mount point and the reason: no CAP_SYS_ADMIN, a
  // kernel without FAN_MARK_FILESYSTEM or the events, or a filesystem that
  // fanotify cannot mark. procfs is rejected too, because the reader reads
  // /proc for every event and a mark there would make it wait on itself.
  // Raises the soft RLIMIT_NOFILE to the hard limit, because every event
  // carries a descriptor and fanotify denies a permission event whose
  // descriptor it cannot create.
  imarot::Result<void> start(EventSink& sink) override;

  // Stops the reader. Every permission event delivered but not completed,
  // and every one still queued, gets the response FAN_ALLOW before stop
  // returns. Closing the group afterwards makes the kernel allow any that
  // arrive later. Waits for a submit() in progress to return.
  void stop() override;

  const EventSourceStats& stats() const override { return stats_; }
  bool watches(const FileIdentity& file) const override { return watched_devices_.count(file.dev) != 0; }

  // Permission events delivered to the sink whose Completion has not run.
  size_t pending_permission_events() const;

 private:
  class Reader;

  FanotifyOptions options_;
  EventSourceStats stats_;
  std::unordered_set<dev_t> watched_devices_;  // filled by start()
  std::unique_ptr<Reader> reader_;
  std::thread thread_;
};

}  // namespace imarotd
