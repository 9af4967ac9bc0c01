#include "fanotify_source.h"

#include <fcntl.h>
#include <linux/fs.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/fanotify.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstring>
#include <mutex>
#include <set>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <utility>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "proc_info.h"

// Linux 6.13: a descriptor that fanotify could not create is reported as
// -errno in the event's fd field instead of failing the read.
#ifndef FAN_REPORT_FD_ERROR
#define FAN_REPORT_FD_ERROR 0x00002000
#endif
#ifndef STATX_MNT_ID
#define STATX_MNT_ID 0x00001000U
#endif

namespace imarotd {
namespace {

// FS_IOC_GETFSUUID (Linux 6.5, linux/fs.h): the filesystem's s_uuid, the
// value kernel IMA's fsuuid= policy condition compares.
struct FsUuid2 {
  uint8_t len;
  uint8_t uuid[16];
};
constexpr unsigned long kFsIocGetFsUuid = _IOR(0x15, 0, FsUuid2);

constexpr uint64_t kProcSuperMagic = 0x9fa0;
// d_absolute_path() writes into a PATH_MAX (4096) byte buffer, NUL included.
constexpr size_t kMaxPrintablePath = 4095;
// Kernel IMA copies the dentry name with strscpy(buf, name, NAME_MAX) into a
// NAME_MAX-byte buffer when the path cannot be printed: at most 254 bytes.
constexpr size_t kMaxFallbackName = 254;
constexpr std::string_view kDeletedSuffix = " (deleted)";
// A read of this size returns at most a few hundred events, so the
// descriptors fanotify creates for one read stay far below RLIMIT_NOFILE.
constexpr size_t kReadBufferSize = 16 * 1024;

std::string errno_text(int error) { return std::strerror(error); }

bool ends_with(std::string_view text, std::string_view suffix) {
  return text.size() >= suffix.size() && text.substr(text.size() - suffix.size()) == suffix;
}

// Reads a whole file that may be larger than a page (mountinfo, maps).
std::optional<std::string> read_whole_file(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return std::nullopt;
  std::string text;
  std::string chunk(64 * 1024, '\0');
  while (true) {
    ssize_t n = ::read(fd, chunk.data(), chunk.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      int error = errno;
      ::close(fd);
      errno = error;
      return std::nullopt;
    }
    if (n == 0) break;
    text.append(chunk.data(), static_cast<size_t>(n));
  }
  ::close(fd);
  return text;
}

// ---------------------------------------------------------------------------
// mountinfo

// Decodes the octal escapes (\040 space, \011 tab, \012 newline, \134
// backslash) that the kernel writes into mountinfo paths.
std::string decode_octal_escapes(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '\\' && i + 3 < text.size()) {
      bool octal = true;
      int value = 0;
      for (size_t k = 1; k <= 3; ++k) {
        if (text[i + k] < '0' || text[i + k] > '7') {
          octal = false;
          break;
        }
        value = value * 8 + (text[i + k] - '0');
      }
      if (octal && value < 256) {
        out.push_back(static_cast<char>(value));
        i += 3;
        continue;
      }
    }
    out.push_back(text[i]);
  }
  return out;
}

std::vector<std::string_view> split_spaces(std::string_view line) {
  std::vector<std::string_view> fields;
  size_t pos = 0;
  while (pos < line.size()) {
    size_t end = line.find(' ', pos);
    if (end == std::string_view::npos) end = line.size();
    if (end > pos) fields.push_back(line.substr(pos, end - pos));
    pos = end + 1;
  }
  return fields;
}

template <typename T>
bool parse_number(std::string_view text, T& value) {
  auto [next, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  return ec == std::errc() && next == text.data() + text.size();
}

// One mountinfo line: "36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3
// /dev/root rw,errors=continue". Optional fields end at the "-" separator.
std::optional<MountedFilesystem> parse_mountinfo_line(std::string_view line) {
  std::vector<std::string_view> fields = split_spaces(line);
  if (fields.size() < 10) return std::nullopt;
  auto separator = std::find(fields.begin() + 6, fields.end(), std::string_view("-"));
  if (separator == fields.end() || fields.end() - separator < 4) return std::nullopt;
  MountedFilesystem fs;
  std::string_view device = fields[2];
  size_t colon = device.find(':');
  unsigned major_number = 0;
  unsigned minor_number = 0;
  if (!parse_number(fields[0], fs.mount_id) || !parse_number(fields[1], fs.parent_id) ||
      colon == std::string_view::npos || !parse_number(device.substr(0, colon), major_number) ||
      !parse_number(device.substr(colon + 1), minor_number)) {
    return std::nullopt;
  }
  fs.dev = makedev(major_number, minor_number);
  fs.root = decode_octal_escapes(fields[3]);
  fs.mount_point = decode_octal_escapes(fields[4]);
  fs.mount_options = std::string(fields[5]);
  fs.fstype = decode_octal_escapes(separator[1]);
  fs.source = decode_octal_escapes(separator[2]);
  fs.super_options = std::string(separator[3]);
  return fs;
}

// Fills fsmagic and reachable from the mount point itself.
void probe_mount_point(MountedFilesystem& fs) {
  int fd = ::open(fs.mount_point.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) return;
  struct statfs sfs {};
  if (::fstatfs(fd, &sfs) == 0) fs.fsmagic = static_cast<uint64_t>(sfs.f_type);
  struct statx stx {};
  if (::statx(fd, "", AT_EMPTY_PATH | AT_NO_AUTOMOUNT, STATX_MNT_ID, &stx) == 0 && (stx.stx_mask & STATX_MNT_ID)) {
    fs.reachable = stx.stx_mnt_id == static_cast<uint64_t>(fs.mount_id);
  }
  ::close(fd);
}

// ---------------------------------------------------------------------------
// Permission responses

// Owns the fanotify group descriptor and writes the responses to permission
// events. A response names its event by the descriptor number the kernel
// gave it, so the responder keeps that descriptor open until the response is
// written. A closed number could be reused by a newer event, which would
// then receive the response. The sink receives a duplicate descriptor.
class PermissionResponder {
 public:
  explicit PermissionResponder(UniqueFd group) : group_(std::move(group)) {}

  int group_fd() const { return group_.get(); }

  // Registers a delivered permission event. Returns false once shutdown
  // began, and the caller then allows the event itself.
  bool add(int event_fd) {
    std::lock_guard lock(mutex_);
    if (shutting_down_) return false;
    pending_.insert(event_fd);
    return true;
  }

  // Allows a registered event and closes its descriptor. An fd that is not
  // registered (its response already written) is left alone.
  void allow(int event_fd) {
    std::lock_guard lock(mutex_);
    if (pending_.erase(event_fd) == 0) return;
    write_allow_locked(event_fd);
    ::close(event_fd);
  }

  // Allows an event that was never registered and closes its descriptor.
  void allow_unregistered(int event_fd) {
    std::lock_guard lock(mutex_);
    write_allow_locked(event_fd);
    ::close(event_fd);
  }

  // Allows every registered event; later add() calls return false.
  void begin_shutdown() {
    std::lock_guard lock(mutex_);
    shutting_down_ = true;
    for (int event_fd : pending_) {
      write_allow_locked(event_fd);
      ::close(event_fd);
    }
    pending_.clear();
  }

  // Closes the group; the kernel allows every permission event still queued.
  void close_group() {
    std::lock_guard lock(mutex_);
    group_ = UniqueFd();
  }

  size_t pending() const {
    std::lock_guard lock(mutex_);
    return pending_.size();
  }

 private:
  void write_allow_locked(int event_fd) {
    if (!group_) return;
    struct fanotify_response response {};
    response.fd = event_fd;
    response.response = FAN_ALLOW;
    ssize_t n = ::write(group_.get(), &response, sizeof response);
    if (n != static_cast<ssize_t>(sizeof response)) {
      spdlog::debug("fanotify: writing the response to the permission event of descriptor {} failed: {}",
                    event_fd, errno_text(errno));
    }
  }

  mutable std::mutex mutex_;
  UniqueFd group_;
  std::unordered_set<int> pending_;
  bool shutting_down_ = false;
};

// The response to one permission event, shared by every copy of its
// Completion. It is written once: when the Completion runs, or when the last
// copy is destroyed without having run, so a dropped event never leaves the
// task waiting.
class PermissionTicket {
 public:
  PermissionTicket(std::shared_ptr<PermissionResponder> responder, int event_fd)
      : responder_(std::move(responder)), event_fd_(event_fd) {}
  ~PermissionTicket() { respond(); }
  PermissionTicket(const PermissionTicket&) = delete;
  PermissionTicket& operator=(const PermissionTicket&) = delete;

  void respond() {
    if (!responded_.exchange(true)) responder_->allow(event_fd_);
  }

 private:
  std::shared_ptr<PermissionResponder> responder_;
  int event_fd_;
  std::atomic<bool> responded_{false};
};

// ---------------------------------------------------------------------------
// Mount reachability

// Tells whether a mount is attached to a mount namespace. d_absolute_path(),
// which kernel IMA uses for names, fails for a file on a detached (lazily
// unmounted) mount or a kernel-internal one, and IMA then records the final
// component only. Mount ids are cached per namespace and re-read on a miss;
// the caller clears the cache when its own mount table changes.
// NOTE: another namespace's cache is only re-read on a miss, so a mount
// detached there after it was cached still counts as attached.
class MountTable {
 public:
  MountTable() { own_namespace_ = namespace_of("/proc/self/ns/mnt").value_or(0); }

  void clear() { ids_by_namespace_.clear(); }

  bool is_attached(uint64_t mount_id, pid_t tid) {
    if (contains(own_namespace_, "/proc/self/mountinfo", mount_id)) return true;
    auto task_namespace = namespace_of(fmt::format("/proc/{}/ns/mnt", tid));
    // The task is gone and its namespace with it, so the path printed in
    // this namespace is used.
    if (!task_namespace) return true;
    if (*task_namespace == own_namespace_) return false;
    return contains(*task_namespace, fmt::format("/proc/{}/mountinfo", tid), mount_id);
  }

 private:
  static std::optional<ino_t> namespace_of(const std::string& link) {
    struct stat st {};
    if (::stat(link.c_str(), &st) != 0) return std::nullopt;
    return st.st_ino;
  }

  bool contains(ino_t ns, const std::string& mountinfo_path, uint64_t mount_id) {
    auto& ids = ids_by_namespace_[ns];
    if (ids.count(mount_id) != 0) return true;
    auto text = read_whole_file(mountinfo_path);
    if (!text) return false;
    ids.clear();
    size_t pos = 0;
    while (pos < text->size()) {
      size_t end = text->find('\n', pos);
      if (end == std::string::npos) end = text->size();
      std::string_view line(text->data() + pos, end - pos);
      uint64_t id = 0;
      size_t space = line.find(' ');
      if (parse_number(line.substr(0, space), id)) ids.insert(id);
      pos = end + 1;
    }
    return ids.count(mount_id) != 0;
  }

  ino_t own_namespace_ = 0;
  std::unordered_map<ino_t, std::unordered_set<uint64_t>> ids_by_namespace_;
};

// ---------------------------------------------------------------------------
// File description

struct ResolvedPath {
  std::string path;
  bool deleted = false;
};

// Returns the path of `fd` as /proc/self/maps prints it for a mapping of
// the file. maps grows its buffer as needed, so this works for paths longer
// than readlink's PATH_MAX.
// NOTE: maps writes a newline in a name as "\012" and leaves backslashes
// alone, so a name that really contains the four bytes "\012" is decoded to
// a newline.
imarot::Result<std::string> path_from_maps(int fd) {
  long page = ::sysconf(_SC_PAGESIZE);
  void* address = ::mmap(nullptr, static_cast<size_t>(page), PROT_READ, MAP_PRIVATE, fd, 0);
  if (address == MAP_FAILED) {
    return imarot::Error{fmt::format("mapping the file to read its path from /proc/self/maps failed: {}",
                                     errno_text(errno)),
                         errno};
  }
  auto maps = read_whole_file("/proc/self/maps");
  int read_error = errno;
  ::munmap(address, static_cast<size_t>(page));
  if (!maps) {
    return imarot::Error{fmt::format("reading /proc/self/maps failed: {}", errno_text(read_error)), read_error};
  }

  // maps prints the start address in hex, padded to at least 8 digits.
  std::string prefix = fmt::format("{:08x}-", reinterpret_cast<uintptr_t>(address));
  size_t pos = 0;
  while (pos < maps->size()) {
    size_t end = maps->find('\n', pos);
    if (end == std::string::npos) end = maps->size();
    std::string_view line(maps->data() + pos, end - pos);
    pos = end + 1;
    if (line.substr(0, prefix.size()) != prefix) continue;
    // "start-end perms offset major:minor inode   /path": the path is what
    // follows the fifth field and the padding.
    size_t field_end = 0;
    for (int field = 0; field < 5; ++field) {
      field_end = line.find(' ', field_end);
      if (field_end == std::string_view::npos) break;
      field_end = line.find_first_not_of(' ', field_end);
      if (field_end == std::string_view::npos) break;
    }
    if (field_end == std::string_view::npos || line[field_end] != '/') break;
    std::string path;
    std::string_view raw = line.substr(field_end);
    for (size_t i = 0; i < raw.size(); ++i) {
      if (raw.substr(i, 4) == "\\012") {
        path.push_back('\n');
        i += 3;
      } else {
        path.push_back(raw[i]);
      }
    }
    return path;
  }
  return imarot::Error{"the mapping of the file was not found in /proc/self/maps", 0};
}

// Returns the final component of `path`, cut to the bytes kernel IMA keeps.
std::string final_component(std::string_view path) {
  size_t slash = path.rfind('/');
  std::string_view name = slash == std::string_view::npos ? path : path.substr(slash + 1);
  return std::string(name.substr(0, kMaxFallbackName));
}

// `fd_directory` is an open /proc/self/fd, or -1. Reading the link relative
// to it saves the lookup of /proc/self/fd, which the reader would otherwise
// repeat for every access event.
imarot::Result<ResolvedPath> resolve_path(int fd, const struct statx& stx, bool mount_attached,
                                          int fd_directory = -1) {
  std::string printed(kMaxPrintablePath + 1, '\0');
  std::string link = fmt::format("/proc/self/fd/{}", fd);
  ssize_t n = fd_directory >= 0 ? ::readlinkat(fd_directory, std::to_string(fd).c_str(), printed.data(), printed.size())
                                : ::readlink(link.c_str(), printed.data(), printed.size());
  if (n >= 0 && static_cast<size_t>(n) < printed.size()) {
    printed.resize(static_cast<size_t>(n));
  } else if (n < 0 && errno != ENAMETOOLONG) {
    return imarot::Error{fmt::format("readlink of {} failed: {}", link, errno_text(errno)), errno};
  } else {
    // Longer than readlink can print (PATH_MAX with the " (deleted)" suffix).
    auto from_maps = path_from_maps(fd);
    if (!from_maps) return from_maps.error();
    printed = std::move(*from_maps);
  }

  // d_path() appends " (deleted)" to an unlinked name; d_absolute_path(),
  // which kernel IMA uses, does not. The suffix is the kernel's when no link
  // is left, or when the name without the suffix no longer leads to this
  // file (another hard link remains). A live file named "app (deleted)"
  // keeps its name.
  ResolvedPath resolved;
  if (ends_with(printed, kDeletedSuffix)) {
    bool unlinked = stx.stx_nlink == 0;
    if (!unlinked) {
      struct stat st {};
      unlinked = ::lstat(printed.c_str(), &st) != 0 || st.st_ino != stx.stx_ino ||
                 st.st_dev != makedev(stx.stx_dev_major, stx.stx_dev_minor);
    }
    if (unlinked) {
      printed.resize(printed.size() - kDeletedSuffix.size());
      resolved.deleted = true;
    }
  }

  if (!mount_attached || printed.size() > kMaxPrintablePath) {
    resolved.path = final_component(printed);
  } else {
    resolved.path = std::move(printed);
  }
  return resolved;
}

// Facts of one filesystem (superblock) that every file on it shares.
struct FilesystemFacts {
  uint64_t fsmagic = 0;
  std::optional<std::array<uint8_t, 16>> fs_uuid;
  bool has_generation = true;  // false once FS_IOC_GETVERSION failed with ENOTTY
};

// FilesystemFacts by device number. The reader clears it whenever its mount
// table changes, because a device number is reused after an unmount.
// NOTE: a UUID changed on a mounted filesystem (ext4 allows it) is seen
// only after the next mount or unmount.
using FilesystemFactsCache = std::unordered_map<dev_t, FilesystemFacts>;

FilesystemFacts facts_of(int fd, dev_t dev, FilesystemFactsCache& cache) {
  auto cached = cache.find(dev);
  if (cached != cache.end()) return cached->second;

  FilesystemFacts facts;
  struct statfs sfs {};
  if (::fstatfs(fd, &sfs) == 0) facts.fsmagic = static_cast<uint64_t>(sfs.f_type);
  FsUuid2 uuid{};
  if (::ioctl(fd, kFsIocGetFsUuid, &uuid) == 0 && uuid.len == sizeof uuid.uuid) {
    std::array<uint8_t, 16> value{};
    std::copy(std::begin(uuid.uuid), std::end(uuid.uuid), value.begin());
    facts.fs_uuid = value;
  }
  // A failed fstatfs is tried again on the next event.
  if (facts.fsmagic != 0) cache.emplace(dev, facts);
  return facts;
}

FileIdentity identity_of(int fd, const struct statx& stx, FilesystemFactsCache& filesystems) {
  FileIdentity id;
  id.dev = makedev(stx.stx_dev_major, stx.stx_dev_minor);
  id.ino = stx.stx_ino;
  id.owner = stx.stx_uid;
  id.group = stx.stx_gid;
  id.mode = stx.stx_mode;
  id.change_counter = static_cast<uint64_t>(stx.stx_ctime.tv_sec) * 1000000000ULL + stx.stx_ctime.tv_nsec;

  const FilesystemFacts facts = facts_of(fd, id.dev, filesystems);
  id.fsmagic = facts.fsmagic;
  id.fs_uuid = facts.fs_uuid;

  // FS_IOC_GETVERSION stores an int at the address, whatever size its ioctl
  // number encodes. Filesystems without generations (tmpfs among them)
  // return ENOTTY, and are not asked again until the mount table changes.
  if (facts.has_generation) {
    uint32_t generation[2] = {0, 0};
    if (::ioctl(fd, FS_IOC_GETVERSION, generation) == 0) {
      id.generation = generation[0];
    } else if (errno == ENOTTY) {
      if (auto cached = filesystems.find(id.dev); cached != filesystems.end()) cached->second.has_generation = false;
    }
  }
  return id;
}

// Format of an executable, from its first bytes.
enum class ExecFormat : uint8_t { elf, script, other };

ExecFormat exec_format_of(int fd) {
  char magic[4] = {};
  ssize_t n = ::pread(fd, magic, sizeof magic, 0);
  if (n == 4 && std::memcmp(magic, "\x7f" "ELF", 4) == 0) return ExecFormat::elf;
  if (n >= 2 && magic[0] == '#' && magic[1] == '!') return ExecFormat::script;
  return ExecFormat::other;
}

// Raises the soft descriptor limit to the hard one.
void raise_descriptor_limit() {
  struct rlimit limit {};
  if (::getrlimit(RLIMIT_NOFILE, &limit) != 0 || limit.rlim_cur >= limit.rlim_max) return;
  rlim_t previous = limit.rlim_cur;
  limit.rlim_cur = limit.rlim_max;
  if (::setrlimit(RLIMIT_NOFILE, &limit) == 0) {
    spdlog::debug("fanotify: raised RLIMIT_NOFILE from {} to {}", previous, limit.rlim_max);
  }
}

}  // namespace

// ---------------------------------------------------------------------------
// The reader

class FanotifySource::Reader {
 public:
  Reader(const FanotifyOptions& options, EventSourceStats& stats, EventSink& sink,
         std::shared_ptr<PermissionResponder> responder, UniqueFd wake)
      : measure_before_use_(options.measure_before_use),
        stats_(stats),
        sink_(sink),
        responder_(std::move(responder)),
        wake_(std::move(wake)),
        buffer_(kReadBufferSize) {
    ignored_.insert(options.ignored_pids.begin(), options.ignored_pids.end());
    ignored_.insert(::getpid());
    mountinfo_ = UniqueFd(::open("/proc/self/mountinfo", O_RDONLY | O_CLOEXEC));
    proc_fds_ = UniqueFd(::open("/proc/self/fd", O_PATH | O_DIRECTORY | O_CLOEXEC));
  }

  void run();

  // Makes run() return and allows every delivered permission event.
  void request_stop() {
    stopping_.store(true);
    uint64_t increment = 1;
    if (::write(wake_.get(), &increment, sizeof increment) != static_cast<ssize_t>(sizeof increment)) {
      spdlog::debug("fanotify: waking the reader failed: {}", errno_text(errno));
    }
    responder_->begin_shutdown();
  }

  // Removes the filesystem marks so that no new events are queued.
  void remove_marks() {
    if (::fanotify_mark(responder_->group_fd(), FAN_MARK_FLUSH | FAN_MARK_FILESYSTEM, 0, AT_FDCWD, nullptr) != 0) {
      spdlog::debug("fanotify: removing the filesystem marks failed: {}", errno_text(errno));
    }
  }

  // Reads what is left in the queue without blocking, allows the
  // permission events among it and counts the rest as lost.
  void drain() {
    std::vector<char> buffer(kReadBufferSize);
    while (true) {
      ssize_t length = ::read(responder_->group_fd(), buffer.data(), buffer.size());
      if (length <= 0) return;
      walk_events(buffer.data(), length, [this](const fanotify_event_metadata& meta) { discard(meta); });
    }
  }

  size_t pending() const { return responder_->pending(); }
  PermissionResponder& responder() { return *responder_; }

 private:
  template <typename Handler>
  static void walk_events(char* data, ssize_t length, Handler&& handler) {
    auto* meta = reinterpret_cast<fanotify_event_metadata*>(data);
    while (FAN_EVENT_OK(meta, length)) {
      handler(*meta);
      meta = FAN_EVENT_NEXT(meta, length);
    }
  }

  static bool is_permission(const fanotify_event_metadata& meta) {
    return (meta.mask & (FAN_OPEN_PERM | FAN_OPEN_EXEC_PERM)) != 0;
  }

  // Closes an event's descriptor without delivering it; a permission event
  // is allowed.
  void release(const fanotify_event_metadata& meta) {
    if (meta.fd < 0) return;
    if (is_permission(meta)) {
      responder_->allow_unregistered(meta.fd);
    } else {
      ::close(meta.fd);
    }
  }

  // An event read after stop() began: released and counted as lost.
  void discard(const fanotify_event_metadata& meta) {
    release(meta);
    stats_.lost.fetch_add(1);
  }

  // The files one execve opens, in order: the program, then interpreters.
  struct ExecChain {
    FileKey target;     // the file execve names
    ExecFormat last{};  // format of the file opened last in this execve
  };

  // An exec open whose FAN_OPEN_PERM event has not been read yet. The
  // kernel raises FAN_OPEN_EXEC_PERM and then, once it is allowed,
  // FAN_OPEN_PERM for the same open, from the same thread.
  struct PendingExecOpen {
    FileKey file;
    std::chrono::steady_clock::time_point seen;
  };

  void read_events();
  void handle_event(const fanotify_event_metadata& meta);
  std::optional<OpenCall> open_call_of(pid_t tid, const FileIdentity& file);
  bool in_ignored_process(pid_t tid) const;
  bool complete_cached(const fanotify_event_metadata& meta, pid_t tid, const FileIdentity& file,
                       const std::optional<OpenCall>& open_call);
  // One hook of an open event, as delivered to the sink.
  struct Access {
    Hook hook;
    uint32_t mask;
    bool write_access = false;
  };
  Hook exec_hook(const fanotify_event_metadata& meta, pid_t tid, const FileIdentity& file);
  std::vector<Access> accesses_of(const fanotify_event_metadata& meta, pid_t tid, const FileIdentity& file,
                                  const std::optional<OpenCall>& open_call);
  std::shared_ptr<PermissionTicket> register_permission(const fanotify_event_metadata& meta);
  void deliver_access_events(const std::vector<Access>& accesses, const FileEvent& base, UniqueFd descriptor,
                             const std::shared_ptr<PermissionTicket>& ticket);
  void submit_closes(const fanotify_event_metadata& meta, pid_t tid, const FileIdentity& file);
  void submit(FileEvent event);
  void submit_lost(std::string reason);

  bool measure_before_use_;
  EventSourceStats& stats_;
  EventSink& sink_;
  std::shared_ptr<PermissionResponder> responder_;
  UniqueFd wake_;
  UniqueFd mountinfo_;
  UniqueFd proc_fds_;  // /proc/self/fd, for readlinkat() of event descriptors
  std::unordered_set<pid_t> ignored_;
  MountTable mounts_;
  FilesystemFactsCache filesystems_;
  std::unordered_map<pid_t, ExecChain> exec_chains_;
  std::unordered_map<pid_t, PendingExecOpen> exec_opens_;
  std::vector<char> buffer_;
  std::atomic<bool> stopping_{false};
};

void FanotifySource::Reader::run() {
  while (!stopping_.load()) {
    pollfd fds[3] = {
        {responder_->group_fd(), POLLIN, 0},
        {wake_.get(), POLLIN, 0},
        {mountinfo_.get(), POLLPRI, 0},
    };
    nfds_t count = mountinfo_ ? 3 : 2;
    int ready = ::poll(fds, count, -1);
    if (ready < 0) {
      if (errno != EINTR) spdlog::debug("fanotify: poll failed: {}", errno_text(errno));
      continue;
    }
    if (fds[1].revents != 0) break;
    // The mount table changed: a cached mount may have been detached.
    if (count == 3 && (fds[2].revents & (POLLPRI | POLLERR)) != 0) {
      mounts_.clear();
      filesystems_.clear();
    }
    if ((fds[0].revents & POLLIN) != 0) read_events();
  }
}

void FanotifySource::Reader::read_events() {
  ssize_t length = ::read(responder_->group_fd(), buffer_.data(), buffer_.size());
  if (length < 0) {
    if (errno == EAGAIN || errno == EINTR) return;
    // Without FAN_REPORT_FD_ERROR a descriptor fanotify could not create
    // fails the read, and the kernel drops that event (denying it when it is
    // a permission event).
    submit_lost(fmt::format("reading fanotify events failed: {}", errno_text(errno)));
    return;
  }
  walk_events(buffer_.data(), length, [this](const fanotify_event_metadata& meta) {
    if (stopping_.load()) {
      discard(meta);
    } else {
      handle_event(meta);
    }
  });
}

void FanotifySource::Reader::handle_event(const fanotify_event_metadata& meta) {
  if (meta.vers != FANOTIFY_METADATA_VERSION) {
    release(meta);
    submit_lost(fmt::format("fanotify event of unknown metadata version {}", meta.vers));
    return;
  }
  if ((meta.mask & FAN_Q_OVERFLOW) != 0) {
    submit_lost("fanotify queue overflow");
    return;
  }
  if (meta.fd < 0) {
    // FAN_REPORT_FD_ERROR: the kernel could not open the file for us and has
    // already denied the access if this was a permission event.
    submit_lost(fmt::format("fanotify could not open the file of an event of pid {}: {}", meta.pid,
                            errno_text(-meta.fd)));
    return;
  }

  pid_t tid = meta.pid;  // a thread id: the group reports FAN_REPORT_TID
  if (ignored_.count(tid) != 0) {
    release(meta);
    return;
  }

  struct statx stx {};
  if (::statx(meta.fd, "", AT_EMPTY_PATH, STATX_BASIC_STATS | STATX_MNT_ID, &stx) != 0) {
    int error = errno;
    release(meta);
    submit_lost(fmt::format("fstat of a file opened by pid {} failed: {}", tid, errno_text(error)));
    return;
  }
  // Kernel IMA measures regular files only.
  if (!S_ISREG(stx.stx_mode)) {
    release(meta);
    return;
  }
  FileIdentity file = identity_of(meta.fd, stx, filesystems_);

  std::optional<OpenCall> open_call;
  if ((meta.mask & FAN_OPEN_PERM) != 0) open_call = open_call_of(tid, file);
  if ((meta.mask & FAN_OPEN_EXEC_PERM) != 0 && (meta.mask & FAN_OPEN_PERM) == 0) {
    if (exec_opens_.size() > 4096) exec_opens_.clear();
    exec_opens_[tid] = PendingExecOpen{FileKey{file.dev, file.ino}, std::chrono::steady_clock::now()};
  }

  // Files already measured are allowed on their identity alone, before
  // anything about the task is read.
  if (is_permission(meta) && complete_cached(meta, tid, file, open_call)) return;

  // A close needs no credentials, and its task has often exited already.
  // The pipeline matches it to its open by the file's identity, so its path
  // is not read either.
  const bool access = (meta.mask & (FAN_OPEN_PERM | FAN_OPEN | FAN_OPEN_EXEC_PERM | FAN_OPEN_EXEC)) != 0;
  if (!access) {
    release(meta);
    if (!in_ignored_process(tid)) submit_closes(meta, tid, file);
    return;
  }
  TaskInfo task = read_task_info(tid);
  if (task.tgid != 0 && ignored_.count(task.tgid) != 0) {
    release(meta);
    return;
  }

  // Everything below that reads the task's /proc entries runs before the
  // response, while the task still waits.
  bool attached = (stx.stx_mask & STATX_MNT_ID) == 0 || mounts_.is_attached(stx.stx_mnt_id, tid);
  std::vector<Access> accesses = accesses_of(meta, tid, file, open_call);

  // Access events carry a duplicate of a permission event's descriptor,
  // because the original names the event in the response.
  UniqueFd descriptor;
  std::shared_ptr<PermissionTicket> ticket;
  if (is_permission(meta)) {
    ticket = register_permission(meta);
    if (!ticket) return;
    descriptor = UniqueFd(::fcntl(meta.fd, F_DUPFD_CLOEXEC, 0));
    if (!descriptor) {
      submit_lost(fmt::format("duplicating the descriptor of a file opened by pid {} failed: {}", tid,
                              errno_text(errno)));
      return;
    }
    // Without measure_before_use the task waits only for what is read from
    // it above. Allowing it now lets it run while this thread reads the
    // path and submits the events. The sink still receives the events in
    // the order fanotify queued them, because only this thread submits.
    if (!measure_before_use_) ticket->respond();
  } else {
    descriptor = UniqueFd(meta.fd);
  }

  auto resolved = resolve_path(descriptor.get(), stx, attached, proc_fds_.get());
  if (!resolved) {
    submit_lost(fmt::format("the path of device {}:{} inode {} opened by pid {} could not be read: {}",
                            stx.stx_dev_major, stx.stx_dev_minor, stx.stx_ino, tid, resolved.error().message));
    return;
  }

  FileEvent base;
  base.pid = tid;
  base.tgid = task.tgid;
  base.comm = std::move(task.comm);
  base.creds = task.creds;
  base.file = file;
  base.path = std::move(resolved->path);
  base.deleted = resolved->deleted;

  deliver_access_events(accesses, base, std::move(descriptor), ticket);
  // A merged notification event can carry an open and both close bits.
  submit_closes(meta, tid, file);
}

// Submits the closes that `meta` reports, if any. They carry the file's
// identity and the thread, as the eBPF source's closes do.
void FanotifySource::Reader::submit_closes(const fanotify_event_metadata& meta, pid_t tid, const FileIdentity& file) {
  for (auto [bit, kind] : {std::pair{FAN_CLOSE_WRITE, EventKind::write_close},
                           std::pair{FAN_CLOSE_NOWRITE, EventKind::read_close}}) {
    if ((meta.mask & bit) == 0) continue;
    FileEvent event;
    event.kind = kind;
    event.pid = tid;
    event.file = file;
    submit(std::move(event));
  }
}

// Returns how the thread opens the file of a FAN_OPEN_PERM event: as the
// exec whose FAN_OPEN_EXEC_PERM was read last from this thread for this
// file, or else as /proc/<tid>/syscall shows it.
// NOTE: if another fanotify group denies an exec after this one allowed it,
// no FAN_OPEN_PERM follows, and an open of the same file by the same thread
// within kExecOpenWindow would be taken for the exec's.
std::optional<OpenCall> FanotifySource::Reader::open_call_of(pid_t tid, const FileIdentity& file) {
  // The exec's FAN_OPEN_PERM comes as soon as its FAN_OPEN_EXEC_PERM is
  // allowed; measure_before_use allows it only after the measurement.
  constexpr auto kExecOpenWindow = std::chrono::seconds(2);
  auto pending = exec_opens_.find(tid);
  if (pending != exec_opens_.end()) {
    PendingExecOpen exec = pending->second;
    exec_opens_.erase(pending);
    if (exec.file == FileKey{file.dev, file.ino} && std::chrono::steady_clock::now() - exec.seen < kExecOpenWindow) {
      return OpenCall{OpenCall::Kind::exec, 0};
    }
  }
  return read_open_call(tid);
}

// True when `tid` is a thread of an ignored process other than its main
// thread, whose id is in ignored_ itself. tgkill() with signal 0 sends
// nothing and fails with ESRCH unless thread `tid` belongs to process
// `tgid`. EPERM means that it does but may not be signaled. It costs no
// path lookup under /proc, and runs for every event.
// NOTE: a close event read after its thread exited is not recognized, so a
// close by a short-lived thread of an ignored process can reach the sink.
bool FanotifySource::Reader::in_ignored_process(pid_t tid) const {
  for (pid_t tgid : ignored_) {
    if (::syscall(SYS_tgkill, tgid, tid, 0) == 0 || errno == EPERM) return true;
  }
  return false;
}

// Offers a permission event to the sink as a CachedAccessProbe and allows
// it when the sink completes it. Write opens, events of ignored processes,
// and execs whose hook exec_hook() must tell are left to the full path.
bool FanotifySource::Reader::complete_cached(const fanotify_event_metadata& meta, pid_t tid,
                                             const FileIdentity& file, const std::optional<OpenCall>& open_call) {
  CachedAccessProbe probe;
  probe.file = file;
  const bool exec = (meta.mask & FAN_OPEN_EXEC_PERM) != 0;
  if (exec) {
    // One event with both bits gives two accesses; the full path sends them.
    if ((meta.mask & FAN_OPEN_PERM) != 0) return false;
    // The thread opened another file for exec before: this one may be an
    // interpreter or dynamic linker of that exec.
    if (exec_chains_.count(tid) != 0) return false;
    probe.mask = kMayExec;
    probe.hooks = {Hook::bprm_check, Hook::mmap_check};
    probe.hook_count = 2;
  } else {
    if (!open_call || open_call->kind == OpenCall::Kind::unknown) return false;
    if (open_call->kind == OpenCall::Kind::open) {
      // Writers are counted by the full path, which also detects ToMToU.
      if ((open_call->flags & O_ACCMODE) != O_RDONLY) return false;
      probe.mask = access_mask_from_open_flags(open_call->flags);
    } else {
      probe.mask = kMayExec;
    }
    probe.hooks = {Hook::file_check, Hook::file_check};
    probe.hook_count = 1;
    probe.counts_reader = true;
  }
  if (in_ignored_process(tid)) return false;
  if (!sink_.complete_cached(probe)) return false;

  if (exec) {
    // The program of an exec: a dynamic linker or interpreter opened after
    // it in the same exec is classified against it.
    if (exec_chains_.size() > 4096) exec_chains_.clear();
    exec_chains_[tid] = ExecChain{FileKey{file.dev, file.ino}, exec_format_of(meta.fd)};
  }
  stats_.events.fetch_add(1);
  release(meta);
  return true;
}

std::vector<FanotifySource::Reader::Access> FanotifySource::Reader::accesses_of(
    const fanotify_event_metadata& meta, pid_t tid, const FileIdentity& file,
    const std::optional<OpenCall>& open_call) {
  std::vector<Access> accesses;
  if ((meta.mask & (FAN_OPEN_EXEC_PERM | FAN_OPEN_EXEC)) != 0) {
    accesses.push_back({exec_hook(meta, tid, file), kMayExec});
  }
  if ((meta.mask & (FAN_OPEN_PERM | FAN_OPEN)) != 0) {
    // One access event per open, also for a write open: its mask carries
    // MAY_WRITE or MAY_APPEND, and the pipeline counts the writer from it.
    uint32_t mask = kMayRead;
    bool write_access = false;
    if ((meta.mask & FAN_OPEN_PERM) != 0) {
      OpenCall call = open_call.value_or(OpenCall{});
      if (call.kind == OpenCall::Kind::exec) {
        mask = kMayExec;
      } else if (call.kind == OpenCall::Kind::open) {
        mask = access_mask_from_open_flags(call.flags);
        write_access = (call.flags & O_ACCMODE) != O_RDONLY;
      }
    } else if ((meta.mask & FAN_OPEN_EXEC) != 0) {
      mask = kMayExec;  // FAN_OPEN and FAN_OPEN_EXEC of one exec open
    }
    accesses.push_back({Hook::file_check, mask, write_access});
  }
  return accesses;
}

// Registers a permission event with the responder. Returns null once
// shutdown began, after allowing the event and counting it as lost.
std::shared_ptr<PermissionTicket> FanotifySource::Reader::register_permission(const fanotify_event_metadata& meta) {
  if (!responder_->add(meta.fd)) {
    responder_->allow_unregistered(meta.fd);
    stats_.lost.fetch_add(1);
    return nullptr;
  }
  return std::make_shared<PermissionTicket>(responder_, meta.fd);
}

void FanotifySource::Reader::deliver_access_events(const std::vector<Access>& accesses, const FileEvent& base,
                                                   UniqueFd descriptor,
                                                   const std::shared_ptr<PermissionTicket>& ticket) {
  // The last access event takes `descriptor`. An earlier one, the
  // BPRM_CHECK of an event that also carries an open, takes a duplicate.
  // With measure_before_use the permission response goes with the last one.
  size_t last_access = accesses.size() - 1;
  for (size_t i = 0; i < accesses.size(); ++i) {
    FileEvent event = copy_event_header(base, EventKind::access);
    event.hook = accesses[i].hook;
    event.mask = accesses[i].mask;
    event.write_access = accesses[i].write_access;
    if (i == last_access) {
      event.fd = std::move(descriptor);
    } else {
      event.fd = UniqueFd(::fcntl(descriptor.get(), F_DUPFD_CLOEXEC, 0));
      if (!event.fd) {
        submit_lost(fmt::format("duplicating the descriptor of {} failed: {}", base.path, errno_text(errno)));
        continue;
      }
    }
    if (i == last_access && ticket && measure_before_use_) {
      event.completion = [ticket] { ticket->respond(); };
    }
    submit(std::move(event));
  }
}

// An exec open is BPRM_CHECK for the program and for each interpreter a
// binary format handler runs it through (#! scripts, binfmt_misc), as in
// kernel IMA. The ELF loader's open of PT_INTERP (the dynamic linker) passes
// no BPRM_CHECK there. The kernel maps it executable, so it is reported as
// MMAP_CHECK. Telling them apart needs the name execve was given, and only a
// task waiting in a permission event still shows it. Notification events
// therefore report every exec open as BPRM_CHECK.
Hook FanotifySource::Reader::exec_hook(const fanotify_event_metadata& meta, pid_t tid, const FileIdentity& file) {
  if ((meta.mask & FAN_OPEN_EXEC_PERM) == 0) return Hook::bprm_check;
  ExecFormat format = exec_format_of(meta.fd);
  auto target = read_exec_target(tid);
  if (!target) {
    exec_chains_.erase(tid);
    return Hook::bprm_check;
  }
  FileKey opened{file.dev, file.ino};
  if (*target == opened) {
    // A bound on threads caught between two execs; each entry is small.
    if (exec_chains_.size() > 4096) exec_chains_.clear();
    exec_chains_[tid] = ExecChain{*target, format};
    return Hook::bprm_check;
  }
  auto chain = exec_chains_.find(tid);
  if (chain == exec_chains_.end() || chain->second.target != *target) return Hook::bprm_check;
  Hook hook = chain->second.last == ExecFormat::elf ? Hook::mmap_check : Hook::bprm_check;
  chain->second.last = format;
  return hook;
}

void FanotifySource::Reader::submit(FileEvent event) {
  stats_.events.fetch_add(1);
  sink_.submit(std::move(event));
}

void FanotifySource::Reader::submit_lost(std::string reason) {
  spdlog::debug("fanotify: event lost: {}", reason);
  stats_.lost.fetch_add(1);
  FileEvent event;
  event.kind = EventKind::lost;
  // fanotify does not say how many events a queue overflow dropped; one
  // overflow event stands for at least one.
  event.lost_count = 1;
  event.lost_reason = std::move(reason);
  sink_.submit(std::move(event));
}

// ---------------------------------------------------------------------------
// Mounted filesystems

imarot::Result<DescribedFile> describe_open_file(int fd, const std::unordered_set<uint64_t>& attached_mount_ids) {
  struct statx stx {};
  if (::statx(fd, "", AT_EMPTY_PATH, STATX_BASIC_STATS | STATX_MNT_ID, &stx) != 0) {
    return imarot::Error{fmt::format("statx failed: {}", errno_text(errno)), errno};
  }
  FilesystemFactsCache filesystems;
  DescribedFile described;
  described.file = identity_of(fd, stx, filesystems);
  bool attached = (stx.stx_mask & STATX_MNT_ID) == 0 || attached_mount_ids.count(stx.stx_mnt_id) != 0;
  auto resolved = resolve_path(fd, stx, attached);
  if (!resolved) return resolved.error();
  described.path = std::move(resolved->path);
  described.deleted = resolved->deleted;
  return described;
}

imarot::Result<std::vector<MountedFilesystem>> list_mounted_filesystems(const std::string& mountinfo_path) {
  auto text = read_whole_file(mountinfo_path);
  if (!text) {
    return imarot::Error{fmt::format("reading {} failed: {}", mountinfo_path, errno_text(errno)), errno};
  }
  std::vector<MountedFilesystem> filesystems;
  size_t pos = 0;
  int line_number = 0;
  while (pos < text->size()) {
    size_t end = text->find('\n', pos);
    if (end == std::string::npos) end = text->size();
    std::string_view line(text->data() + pos, end - pos);
    pos = end + 1;
    ++line_number;
    if (line.empty()) continue;
    auto fs = parse_mountinfo_line(line);
    if (!fs) {
      return imarot::Error{fmt::format("{}:{}: invalid mountinfo line: expected \"ID PARENT MAJOR:MINOR ROOT "
                                       "MOUNT_POINT OPTIONS ... - FSTYPE SOURCE SUPER_OPTIONS\"",
                                       mountinfo_path, line_number),
                           0};
    }
    probe_mount_point(*fs);
    filesystems.push_back(std::move(*fs));
  }
  return filesystems;
}

std::vector<std::string> select_mount_points(const std::vector<MountedFilesystem>& filesystems,
                                             const std::function<bool(const MountedFilesystem&)>& measured) {
  std::vector<std::string> selected;
  std::set<dev_t> seen;
  for (const auto& fs : filesystems) {
    if (!fs.reachable || seen.count(fs.dev) != 0 || !measured(fs)) continue;
    seen.insert(fs.dev);
    selected.push_back(fs.mount_point);
  }
  return selected;
}

// ---------------------------------------------------------------------------
// FanotifySource

namespace {

imarot::Error init_error(int error) {
  switch (error) {
    case EPERM:
      return {"fanotify_init failed: operation not permitted; the fanotify source needs CAP_SYS_ADMIN", error};
    case ENOSYS:
      return {"fanotify_init failed: the kernel was built without fanotify (CONFIG_FANOTIFY)", error};
    case EINVAL:
      return {"fanotify_init failed: the kernel rejected FAN_REPORT_TID or the permission class; "
              "Linux 4.20 or later with CONFIG_FANOTIFY_ACCESS_PERMISSIONS is required",
              error};
    case EMFILE:
      return {"fanotify_init failed: too many fanotify groups for this user (fs.fanotify.max_user_groups) "
              "or too many open files",
              error};
    default:
      return {fmt::format("fanotify_init failed: {}", errno_text(error)), error};
  }
}

imarot::Error mark_error(const std::string& mount_point, int error) {
  std::string reason;
  switch (error) {
    case EPERM:
      reason = "operation not permitted; marking a filesystem needs CAP_SYS_ADMIN";
      break;
    case EINVAL:
      reason =
          "the kernel rejected the mark: it needs FAN_MARK_FILESYSTEM (Linux 4.20) and FAN_OPEN_EXEC (Linux 5.0), "
          "and refuses kernel-internal filesystems and permission events on some pseudo filesystems";
      break;
    case ENODEV:
      reason = "the filesystem has no fsid (statfs reports a zero f_fsid), which this kernel requires";
      break;
    case EXDEV:
      reason = "the path is on a subvolume whose fsid differs from its filesystem's; mark the filesystem root";
      break;
    case EOPNOTSUPP:
      reason = "the filesystem does not support fanotify marks";
      break;
    case ENOSPC:
      reason = "too many fanotify marks for this user (fs.fanotify.max_user_marks)";
      break;
    default:
      reason = errno_text(error);
      break;
  }
  return {fmt::format("cannot watch {}: {}", mount_point, reason), error};
}

imarot::Result<UniqueFd> create_group(bool permission) {
  unsigned int flags = FAN_CLOEXEC | FAN_NONBLOCK | FAN_REPORT_TID;
  flags |= permission ? FAN_CLASS_CONTENT : FAN_CLASS_NOTIF;
  unsigned int event_flags = O_RDONLY | O_LARGEFILE | O_CLOEXEC;
  int fd = ::fanotify_init(flags | FAN_REPORT_FD_ERROR, event_flags);
  // Kernels before 6.13 do not know FAN_REPORT_FD_ERROR.
  if (fd < 0 && errno == EINVAL) fd = ::fanotify_init(flags, event_flags);
  if (fd < 0) return init_error(errno);
  return UniqueFd(fd);
}

imarot::Result<void> mark_filesystem(int group, const std::string& mount_point, uint64_t mask) {
  struct statfs sfs {};
  if (::statfs(mount_point.c_str(), &sfs) != 0) {
    return imarot::Error{fmt::format("cannot watch {}: {}", mount_point, errno_text(errno)), errno};
  }
  if (static_cast<uint64_t>(sfs.f_type) == kProcSuperMagic) {
    return imarot::Error{fmt::format("cannot watch {}: it is a procfs, which the fanotify source reads for every "
                                     "event; marking it would make the reader wait on itself",
                                     mount_point),
                         EINVAL};
  }
  if (::fanotify_mark(group, FAN_MARK_ADD | FAN_MARK_FILESYSTEM, mask, AT_FDCWD, mount_point.c_str()) != 0) {
    return mark_error(mount_point, errno);
  }
  return {};
}

}  // namespace

FanotifySource::FanotifySource(FanotifyOptions options) : options_(std::move(options)) {}

FanotifySource::~FanotifySource() { stop(); }

imarot::Result<void> FanotifySource::start(EventSink& sink) {
  if (reader_) return imarot::Error{"the fanotify source is already running", 0};
  if (options_.mount_points.empty()) {
    return imarot::Error{"the fanotify source has no filesystem to watch: mount_points is empty", 0};
  }

  raise_descriptor_limit();
  // Permission events unless notification_events: only while the opener
  // waits can its open flags be read from /proc, and without them a write
  // open would be reported as a read (and measured under mask=^MAY_READ
  // rules) and writers would go unseen until they close. Without
  // measure_before_use the access is allowed as soon as those are read.
  if (options_.notification_events && options_.measure_before_use) {
    return imarot::Error{"fanotify: measure_before_use needs permission events; notification_events cannot be set "
                         "with it"};
  }
  const bool permission = !options_.notification_events;
  auto group = create_group(permission);
  if (!group) return group.error();

  uint64_t mask = FAN_CLOSE_WRITE | FAN_CLOSE_NOWRITE;
  mask |= permission ? (FAN_OPEN_EXEC_PERM | FAN_OPEN_PERM) : (FAN_OPEN_EXEC | FAN_OPEN);
  watched_devices_.clear();
  for (const auto& mount_point : options_.mount_points) {
    auto marked = mark_filesystem(group->get(), mount_point, mask);
    if (!marked) return marked.error();
    // The mark covers the superblock, whose device the mount point has.
    struct stat st {};
    if (::stat(mount_point.c_str(), &st) == 0) watched_devices_.insert(st.st_dev);
  }

  UniqueFd wake(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!wake) return imarot::Error{fmt::format("eventfd failed: {}", errno_text(errno)), errno};

  auto responder = std::make_shared<PermissionResponder>(std::move(*group));
  reader_ = std::make_unique<Reader>(options_, stats_, sink, std::move(responder), std::move(wake));
  thread_ = std::thread([reader = reader_.get()] { reader->run(); });
  spdlog::debug("fanotify: watching {} filesystem(s), measure_before_use={}", options_.mount_points.size(),
                options_.measure_before_use);
  return {};
}

void FanotifySource::stop() {
  if (!reader_) return;
  // Allow what was delivered, stop new events, and allow what is queued
  // while the reader may still be inside the sink.
  reader_->request_stop();
  reader_->remove_marks();
  reader_->drain();
  if (thread_.joinable()) thread_.join();
  // Events that were on their way while the marks were removed.
  reader_->drain();
  reader_->responder().close_group();
  reader_.reset();
}

size_t FanotifySource::pending_permission_events() const { return reader_ ? reader_->pending() : 0; }

}  // namespace imarotd
