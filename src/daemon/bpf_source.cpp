#include "bpf_source.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <map>
#include <mutex>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "fanotify_source.h"
#include "imarotd_event.h"
#include "securityfs.h"
#include "imarotd.skel.h"

namespace imarotd {

static_assert(static_cast<int>(Hook::bprm_check) == IMAROTD_HOOK_BPRM_CHECK);
static_assert(static_cast<int>(Hook::mmap_check) == IMAROTD_HOOK_MMAP_CHECK);
static_assert(static_cast<int>(Hook::mmap_check_reqprot) == IMAROTD_HOOK_MMAP_CHECK_REQPROT);
static_assert(static_cast<int>(Hook::file_check) == IMAROTD_HOOK_FILE_CHECK);
static_assert(static_cast<int>(Hook::module_check) == IMAROTD_HOOK_MODULE_CHECK);
static_assert(static_cast<int>(Hook::firmware_check) == IMAROTD_HOOK_FIRMWARE_CHECK);
static_assert(static_cast<int>(Hook::kexec_kernel_check) == IMAROTD_HOOK_KEXEC_KERNEL_CHECK);
static_assert(static_cast<int>(Hook::kexec_initramfs_check) == IMAROTD_HOOK_KEXEC_INITRAMFS_CHECK);
static_assert(static_cast<int>(Hook::policy_check) == IMAROTD_HOOK_POLICY_CHECK);
static_assert(BpfFilter::kMaxUidRanges == IMAROTD_UID_RANGES);
static_assert(std::tuple_size_v<decltype(BpfFilter::uid_ranges)> == IMAROTD_HOOK_COUNT);

namespace {

constexpr std::string_view kDeletedSuffix = " (deleted)";
// Kernel IMA's fallback name is d_name cut by strscpy() to NAME_MAX bytes
// with the NUL, so at most 254 bytes.
constexpr size_t kMaxFallbackName = 254;

std::string errno_text(int error) { return std::strerror(error < 0 ? -error : error); }

dev_t user_dev(uint32_t kernel_dev) { return makedev(kernel_dev >> 20, kernel_dev & 0xfffff); }

uint32_t kernel_dev(dev_t dev) { return (major(dev) << 20) | (minor(dev) & 0xfffff); }

std::string bounded_string(const char* text, size_t capacity) {
  return std::string(text, ::strnlen(text, capacity));
}

FileIdentity identity_of(const imarotd_file_identity& id) {
  FileIdentity file;
  file.dev = user_dev(id.dev);
  file.ino = static_cast<ino_t>(id.ino);
  file.generation = id.generation;
  file.change_counter = id.change_counter;
  file.fsmagic = id.fsmagic;
  std::array<uint8_t, 16> uuid{};
  std::copy(std::begin(id.fs_uuid), std::end(id.fs_uuid), uuid.begin());
  if (std::any_of(uuid.begin(), uuid.end(), [](uint8_t b) { return b != 0; })) file.fs_uuid = uuid;
  file.owner = id.uid;
  file.group = id.gid;
  file.mode = id.mode;
  return file;
}

// Opens `path` read-only and returns it only if it is the file `id`
// describes: same device, inode and (where the filesystem has one)
// generation.
UniqueFd open_matching(const std::string& path, const FileIdentity& id) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK));
  if (!fd) return {};
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0 || st.st_dev != id.dev || st.st_ino != id.ino) return {};
  if (id.generation != 0) {
    // FS_IOC_GETVERSION stores an int, whatever size its number encodes.
    uint32_t generation[2] = {0, 0};
    if (::ioctl(fd.get(), FS_IOC_GETVERSION, generation) == 0 && generation[0] != id.generation) return {};
  }
  return fd;
}

std::string read_text(const std::string& path) {
  std::ifstream in(path);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

// libbpf's messages go to spdlog at debug level. The first warning since
// the last phase is kept, because it names the program and the kernel's
// reason, while later ones only repeat that loading failed.
std::mutex g_libbpf_log_mutex;
std::string g_libbpf_first_warning;

int log_libbpf(enum libbpf_print_level level, const char* format, va_list args) {
  // A verifier log arrives as one message of up to several MiB.
  va_list copy;
  va_copy(copy, args);
  int n = std::vsnprintf(nullptr, 0, format, copy);
  va_end(copy);
  if (n < 0) return n;
  std::string line(static_cast<size_t>(n) + 1, '\0');
  std::vsnprintf(line.data(), line.size(), format, args);
  line.resize(static_cast<size_t>(n));
  std::string_view text(line);
  if (text.rfind("libbpf: ", 0) == 0) text.remove_prefix(8);
  while (!text.empty() && text.back() == '\n') text.remove_suffix(1);
  if (level == LIBBPF_WARN) {
    std::lock_guard lock(g_libbpf_log_mutex);
    if (g_libbpf_first_warning.empty()) g_libbpf_first_warning = std::string(text);
  }
  if (level == LIBBPF_DEBUG) {
    spdlog::trace("libbpf: {}", text);
  } else {
    spdlog::debug("libbpf: {}", text);
  }
  return n;
}

std::string take_libbpf_warning() {
  std::lock_guard lock(g_libbpf_log_mutex);
  return std::exchange(g_libbpf_first_warning, {});
}

imarot::Error phase_error(const char* phase, int error) {
  std::string detail = take_libbpf_warning();
  std::string message = fmt::format("eBPF LSM source: {} failed: {}", phase, errno_text(error));
  if (!detail.empty()) message += fmt::format(" (libbpf: {})", detail);
  return imarot::Error{message, error < 0 ? -error : error};
}

size_t round_ring_size(size_t bytes) {
  size_t page = static_cast<size_t>(::sysconf(_SC_PAGESIZE));
  size_t size = page;
  while (size < bytes) size <<= 1;
  return size;
}

}  // namespace

// ---------------------------------------------------------------------------
// Record decoding

FileEvent decode_access_record(const imarotd_access_record& record) {
  FileEvent event;
  event.kind = EventKind::access;
  event.hook = static_cast<Hook>(record.hook);
  event.mask = record.mask;
  event.write_access = (record.flags & IMAROTD_FLAG_WRITE_ACCESS) != 0;
  event.pid = static_cast<pid_t>(record.pid);
  event.tgid = static_cast<pid_t>(record.tgid);
  event.comm = bounded_string(record.comm, sizeof record.comm);
  event.creds.uid = record.creds.uid;
  event.creds.euid = record.creds.euid;
  event.creds.suid = record.creds.suid;
  event.creds.fsuid = record.creds.fsuid;
  event.creds.gid = record.creds.gid;
  event.creds.egid = record.creds.egid;
  event.creds.sgid = record.creds.sgid;
  event.creds.fsgid = record.creds.fsgid;
  event.creds.cap_setgid = (record.creds.cap_effective_low & (1u << 6)) != 0;
  event.creds.cap_setuid = (record.creds.cap_effective_low & (1u << 7)) != 0;
  event.creds.known = true;
  event.file = identity_of(record.file);

  std::string name = bounded_string(record.name, sizeof record.name);
  std::string fallback = name.substr(0, kMaxFallbackName);
  bool printed = record.path_length > 0 && (record.flags & IMAROTD_FLAG_NO_PATH) == 0;
  if ((record.flags & IMAROTD_FLAG_DETACHED) != 0) {
    // d_absolute_path() fails on a mount in no namespace (memfd, shmem,
    // pipes), and kernel IMA names such a file by its dentry name.
    event.path = fallback;
  } else if (printed) {
    size_t length = std::min(static_cast<size_t>(record.path_length - 1), sizeof record.path - 1);
    event.path = bounded_string(record.path, length);
    // bpf_d_path() is d_path(), which appends " (deleted)" to an unlinked
    // name; d_absolute_path(), which kernel IMA uses, does not.
    std::string_view view(event.path);
    if ((record.flags & IMAROTD_FLAG_UNLINKED) != 0 && view.size() >= kDeletedSuffix.size() &&
        view.substr(view.size() - kDeletedSuffix.size()) == kDeletedSuffix) {
      event.path.resize(event.path.size() - kDeletedSuffix.size());
      event.deleted = true;
    }
  } else {
    // bpf_d_path() failed (ENAMETOOLONG beyond PATH_MAX), or the hook cannot
    // call it; the reader may still find the path in /proc.
    event.path = fallback;
    event.deleted = (record.flags & IMAROTD_FLAG_UNLINKED) != 0;
  }
  return event;
}

FileEvent decode_close_record(const imarotd_close_record& record) {
  FileEvent event;
  event.kind = record.type == IMAROTD_RECORD_WRITE_CLOSE ? EventKind::write_close : EventKind::read_close;
  event.file.dev = user_dev(record.dev);
  event.file.ino = static_cast<ino_t>(record.ino);
  event.pid = static_cast<pid_t>(record.pid);
  event.tgid = static_cast<pid_t>(record.tgid);
  return event;
}

// ---------------------------------------------------------------------------
// Skeleton

struct BpfSource::Skeleton {
  imarotd_bpf* bpf = nullptr;
  ~Skeleton() {
    if (bpf != nullptr) imarotd_bpf__destroy(bpf);
  }
};

// The measured map, shared with the events' on_measured callbacks, which
// may run after the source stopped.
class MeasuredMap {
 public:
  explicit MeasuredMap(int fd) : fd_(::fcntl(fd, F_DUPFD_CLOEXEC, 0)) {}
  int update(const FileIdentity& file) const {
    imarotd_inode_key key{};
    key.dev = kernel_dev(file.dev);
    key.ino = file.ino;
    imarotd_measured_state state{};
    state.change_counter = file.change_counter;
    state.generation = file.generation;
    return ::bpf_map_update_elem(fd_.get(), &key, &state, BPF_ANY);
  }

 private:
  UniqueFd fd_;
};

// ---------------------------------------------------------------------------
// Reader

class BpfSource::Reader {
 public:
  Reader(BpfSource& source, EventSink& sink, int records_fd, bool use_cache)
      : source_(source), sink_(sink), use_cache_(use_cache) {
    ring_ = ring_buffer__new(records_fd, &Reader::on_record, this, nullptr);
    if (use_cache_) measured_ = std::make_shared<MeasuredMap>(::bpf_map__fd(source_.skeleton_->bpf->maps.measured));
  }
  ~Reader() {
    if (ring_ != nullptr) ring_buffer__free(ring_);
  }
  bool ok() const { return ring_ != nullptr; }
  void request_stop() { stopping_.store(true); }

  void run() {
    while (!stopping_.load()) {
      int n = ring_buffer__poll(ring_, 100);
      if (n < 0 && n != -EINTR) {
        spdlog::error("eBPF LSM source: reading the ring buffer failed: {}", errno_text(n));
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
      }
      report_lost();
    }
    // Deliver what arrived before the programs were detached.
    ring_buffer__consume(ring_);
    report_lost();
  }

 private:
  static int on_record(void* context, void* data, size_t size) {
    static_cast<Reader*>(context)->handle(data, size);
    return 0;
  }

  void handle(const void* data, size_t size) {
    uint32_t type = 0;
    if (size < sizeof type) return;
    std::memcpy(&type, data, sizeof type);
    if (type == IMAROTD_RECORD_ACCESS && size >= sizeof(imarotd_access_record)) {
      handle_access(*static_cast<const imarotd_access_record*>(data));
    } else if ((type == IMAROTD_RECORD_WRITE_CLOSE || type == IMAROTD_RECORD_READ_CLOSE) &&
               size >= sizeof(imarotd_close_record)) {
      deliver(decode_close_record(*static_cast<const imarotd_close_record*>(data)));
    } else {
      spdlog::warn("eBPF LSM source: ignored a record of type {} and {} bytes", type, size);
    }
  }

  void handle_access(const imarotd_access_record& record) {
    FileEvent event = decode_access_record(record);
    if ((record.flags & IMAROTD_FLAG_NO_PATH) != 0) resolve_mapping_path(record, event);
    // A write open is measured only under a rule that matches its mask,
    // which is rare. An early read open of a file open for writing would
    // also be one more reader for kernel IMA's open-writers check. So the
    // pipeline opens those files itself when it measures them.
    if (!event.write_access) event.fd = open_file(record, event);

    // Readers the kernel cache kept back are still open: show them to the
    // pipeline as one read open just before the write open, so ToMToU finds
    // a measured reader, and close it right after.
    // NOTE: the stand-in reader carries the writer's credentials, so a
    // policy rule on the reader's uid is judged on the writer's.
    if (event.write_access && record.cached_readers > 0) {
      FileEvent reader = copy_event_header(event, EventKind::access);
      reader.write_access = false;
      reader.mask = kMayRead;
      FileEvent close = copy_event_header(event, EventKind::read_close);
      deliver(std::move(reader));
      deliver(std::move(event));
      deliver(std::move(close));
      return;
    }
    deliver(std::move(event));
  }

  // file_mprotect cannot call bpf_d_path: the mapping's link in map_files
  // prints the same d_path.
  void resolve_mapping_path(const imarotd_access_record& record, FileEvent& event) {
    std::string link = fmt::format("/proc/{}/map_files/{:x}-{:x}", record.tgid, record.vma_start, record.vma_end);
    std::string target(IMAROTD_PATH_MAX, '\0');
    ssize_t n = ::readlink(link.c_str(), target.data(), target.size());
    if (n <= 0 || static_cast<size_t>(n) >= target.size()) return;
    target.resize(static_cast<size_t>(n));
    if ((record.flags & IMAROTD_FLAG_DETACHED) != 0) return;
    std::string_view view(target);
    if ((record.flags & IMAROTD_FLAG_UNLINKED) != 0 && view.size() >= kDeletedSuffix.size() &&
        view.substr(view.size() - kDeletedSuffix.size()) == kDeletedSuffix) {
      target.resize(target.size() - kDeletedSuffix.size());
      event.deleted = true;
    }
    event.path = std::move(target);
  }

  // Opens the file the record is about, trying its path first. An exec's
  // file is also /proc/<tgid>/exe once the exec has replaced the image,
  // which covers unlinked binaries and memfds. The wait for that is short
  // and only taken when the path fails. Then come the descriptors the task
  // and its parent have open (fexecve, a memfd, a path beyond PATH_MAX),
  // then a file handle.
  UniqueFd open_file(const imarotd_access_record& record, const FileEvent& event) {
    UniqueFd fd = open_by_path_or_exe(record, event);
    if (!fd) fd = open_from_descriptors(static_cast<pid_t>(record.tgid), event.file);
    if (!fd) fd = open_from_descriptors(parent_of(static_cast<pid_t>(record.tgid)), event.file);
    if (!fd) fd = open_by_identity(event.file);
    return fd;
  }

  // The parent process of `pid`, from field 4 of /proc/<pid>/stat; 0 when
  // unknown. The command name in field 2 may contain spaces and ')', so the
  // fields are counted from the last ')'.
  static pid_t parent_of(pid_t pid) {
    if (pid <= 0) return 0;
    std::string stat = read_text(fmt::format("/proc/{}/stat", pid));
    size_t end = stat.rfind(')');
    if (end == std::string::npos) return 0;
    char state = 0;
    int parent = 0;
    if (std::sscanf(stat.c_str() + end + 1, " %c %d", &state, &parent) != 2) return 0;
    return parent > 1 ? parent : 0;
  }

  // Looks through the open descriptors of process `pid` for the file.
  static UniqueFd open_from_descriptors(pid_t pid, const FileIdentity& file) {
    if (pid <= 0) return {};
    std::string directory = fmt::format("/proc/{}/fd", pid);
    DIR* listing = ::opendir(directory.c_str());
    if (listing == nullptr) return {};
    UniqueFd found;
    while (dirent* entry = ::readdir(listing)) {
      if (entry->d_name[0] == '.') continue;
      std::string link = directory + "/" + entry->d_name;
      struct stat st {};
      if (::stat(link.c_str(), &st) != 0 || st.st_dev != file.dev || st.st_ino != file.ino) continue;
      found = open_matching(link, file);
      if (found) break;
    }
    ::closedir(listing);
    return found;
  }

  UniqueFd open_by_path_or_exe(const imarotd_access_record& record, const FileEvent& event) {
    if (!event.deleted && (record.flags & IMAROTD_FLAG_DETACHED) == 0 && !event.path.empty() &&
        event.path.front() == '/') {
      if (UniqueFd fd = open_matching(event.path, event.file)) return fd;
    }
    if (record.hook == IMAROTD_HOOK_MMAP_CHECK_REQPROT && record.vma_end != 0) {
      std::string link = fmt::format("/proc/{}/map_files/{:x}-{:x}", record.tgid, record.vma_start, record.vma_end);
      if (UniqueFd fd = open_matching(link, event.file)) return fd;
    }
    if (record.hook == IMAROTD_HOOK_BPRM_CHECK) {
      std::string exe = fmt::format("/proc/{}/exe", record.tgid);
      for (int attempt = 0; attempt < 20; ++attempt) {
        if (UniqueFd fd = open_matching(exe, event.file)) return fd;
        if (::access(fmt::format("/proc/{}", record.tgid).c_str(), F_OK) != 0) break;
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
      }
    }
    return {};
  }

  // Opens the inode by a file handle of type FILEID_INO32_GEN (inode and
  // generation), which ext4 and other filesystems with 32-bit inode numbers
  // decode. It reaches files whose path is longer than PATH_MAX. A file
  // with no link left is not found (ESTALE).
  UniqueFd open_by_identity(const FileIdentity& file) {
    constexpr int kFileIdIno32Gen = 1;
    if (file.generation == 0 || file.ino > UINT32_MAX) return {};
    int mount_fd = mount_fd_for(file.dev);
    if (mount_fd < 0) return {};
    const uint32_t words[2] = {static_cast<uint32_t>(file.ino), file.generation};
    alignas(file_handle) unsigned char buffer[sizeof(file_handle) + sizeof words] = {};
    auto* handle = reinterpret_cast<file_handle*>(buffer);
    handle->handle_bytes = sizeof words;
    handle->handle_type = kFileIdIno32Gen;
    std::memcpy(buffer + sizeof(file_handle), words, sizeof words);
    UniqueFd fd(::open_by_handle_at(mount_fd, handle, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK));
    if (!fd) return {};
    struct stat st {};
    if (::fstat(fd.get(), &st) != 0 || st.st_dev != file.dev || st.st_ino != file.ino) return {};
    return fd;
  }

  // A descriptor of a mount of the filesystem `dev`, kept for later
  // handles; -1 when this mount namespace has none.
  int mount_fd_for(dev_t dev) {
    auto it = mount_fds_.find(dev);
    if (it != mount_fds_.end()) return it->second.get();
    auto mounts = list_mounted_filesystems();
    if (!mounts) return -1;
    for (const auto& mount : *mounts) {
      if (mount.dev != dev || !mount.reachable) continue;
      // open_by_handle_at() rejects an O_PATH descriptor (EBADF).
      UniqueFd fd(::open(mount.mount_point.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
      struct stat st {};
      if (!fd || ::fstat(fd.get(), &st) != 0 || st.st_dev != dev) continue;
      int raw = fd.get();
      mount_fds_.emplace(dev, std::move(fd));
      return raw;
    }
    return -1;
  }

  void deliver(FileEvent event) {
    if (event.kind == EventKind::access && use_cache_) {
      auto map = measured_;
      FileIdentity file = event.file;
      event.on_measured = [map, file] {
        if (map->update(file) != 0) {
          spdlog::debug("eBPF LSM source: caching {}:{} failed: {}", major(file.dev), minor(file.dev),
                        errno_text(errno));
        }
      };
    }
    source_.stats_.events.fetch_add(1, std::memory_order_relaxed);
    sink_.submit(std::move(event));
  }

  void report_lost() {
    BpfKernelCounters counters = source_.kernel_counters();
    uint64_t lost = counters.lost + counters.lost_closes;
    if (lost <= reported_lost_) return;
    FileEvent event;
    event.kind = EventKind::lost;
    event.lost_count = lost - reported_lost_;
    event.lost_reason = "eBPF ring buffer full";
    reported_lost_ = lost;
    source_.stats_.lost.fetch_add(event.lost_count, std::memory_order_relaxed);
    sink_.submit(std::move(event));
  }

  BpfSource& source_;
  EventSink& sink_;
  bool use_cache_;
  ring_buffer* ring_ = nullptr;
  std::shared_ptr<MeasuredMap> measured_;
  std::atomic<bool> stopping_{false};
  uint64_t reported_lost_ = 0;
  std::map<dev_t, UniqueFd> mount_fds_;
};

// ---------------------------------------------------------------------------
// Phases

BpfSource::BpfSource(BpfSourceOptions options) : options_(std::move(options)) {}

BpfSource::~BpfSource() { stop(); }

imarot::Result<void> BpfSource::probe_bpf_lsm(const std::string& lsm_path) {
  auto listed = read_lsm_list(lsm_path);
  if (!listed) {
    return imarot::Error{fmt::format("{}, so the BPF LSM cannot be confirmed", listed.error().message)};
  }
  std::string lsm = std::move(*listed);
  while (!lsm.empty() && (lsm.back() == '\n' || lsm.back() == '\0')) lsm.pop_back();
  size_t start = 0;
  while (start <= lsm.size()) {
    size_t end = lsm.find(',', start);
    if (end == std::string::npos) end = lsm.size();
    if (lsm.compare(start, end - start, "bpf") == 0) return imarot::Ok{};
    start = end + 1;
  }
  return imarot::Error{fmt::format("the BPF LSM is not active: {} lists \"{}\" without \"bpf\" (add bpf to the "
                                   "lsm= boot parameter)",
                                   lsm_path, lsm)};
}

imarot::Result<void> BpfSource::open() {
  if (phase_ >= 1) return imarot::Ok{};
  libbpf_set_print(log_libbpf);
  take_libbpf_warning();
  skeleton_ = std::make_unique<Skeleton>();
  skeleton_->bpf = imarotd_bpf__open();
  if (skeleton_->bpf == nullptr) {
    int error = errno;
    skeleton_.reset();
    return phase_error("open", error);
  }
  phase_ = 1;
  return imarot::Ok{};
}

imarot::Result<void> BpfSource::configure() {
  if (auto opened = open(); !opened) return opened;
  if (phase_ >= 2) return imarot::Ok{};
  size_t size = round_ring_size(std::max<size_t>(options_.ring_buffer_bytes, 1));
  if (size > (1u << 30)) return imarot::Error{fmt::format("eBPF LSM source: ring buffer size {} is above 1 GiB", size)};
  if (int rc = bpf_map__set_max_entries(skeleton_->bpf->maps.records, static_cast<uint32_t>(size)); rc != 0) {
    return phase_error("configure (ring buffer size)", rc);
  }
  phase_ = 2;
  return imarot::Ok{};
}

imarot::Result<void> BpfSource::load() {
  if (auto configured = configure(); !configured) return configured;
  if (phase_ >= 3) return imarot::Ok{};
  take_libbpf_warning();
  if (!options_.load_programs) {
    bpf_program* program = nullptr;
    bpf_object__for_each_program(program, skeleton_->bpf->obj) bpf_program__set_autoload(program, false);
  } else {
    skip_missing_hooks();
  }
  if (int rc = imarotd_bpf__load(skeleton_->bpf); rc != 0) return phase_error("load", rc);
  phase_ = 3;
  BpfFilter filter = options_.filter;
  filter.use_cache = filter.use_cache && options_.use_cache;
  return set_filter(filter);
}

// Hooks a kernel may be built without: path_truncate needs
// CONFIG_SECURITY_PATH. A missing one is skipped with a warning, because
// loading it would fail the whole object.
void BpfSource::skip_missing_hooks() {
  btf* kernel_btf = btf__load_vmlinux_btf();
  if (kernel_btf == nullptr) return;  // load() reports what is wrong
  bpf_program* program = nullptr;
  bpf_object__for_each_program(program, skeleton_->bpf->obj) {
    std::string_view section = bpf_program__section_name(program);
    size_t slash = section.find('/');
    if (slash == std::string_view::npos) continue;
    std::string hook = "bpf_lsm_" + std::string(section.substr(slash + 1));
    if (btf__find_by_name_kind(kernel_btf, hook.c_str(), BTF_KIND_FUNC) < 0) {
      spdlog::warn("eBPF LSM source: the kernel has no {} hook; {} is not loaded", hook,
                   bpf_program__name(program));
      bpf_program__set_autoload(program, false);
    }
  }
  btf__free(kernel_btf);
}

imarot::Result<void> BpfSource::attach() {
  if (auto loaded = load(); !loaded) return loaded;
  if (phase_ >= 4) return imarot::Ok{};
  take_libbpf_warning();
  if (int rc = imarotd_bpf__attach(skeleton_->bpf); rc != 0) return phase_error("attach", rc);
  phase_ = 4;
  return imarot::Ok{};
}

imarot::Result<void> BpfSource::policy_changed(const imarot::Policy& policy) {
  // The register of rules without pcr= is the backend's, unknown here, so
  // it counts as a register of its own when rules are compared.
  options_.filter = derive_bpf_filter(policy, UINT32_MAX);
  return set_filter(options_.filter);
}

imarot::Result<void> BpfSource::set_filter(const BpfFilter& filter) {
  if (phase_ < 3) return imarot::Error{"eBPF LSM source: the filter can be set only after load"};
  imarotd_settings settings{};
  settings.hooks = filter.hooks;
  settings.ignored_tgid = static_cast<uint32_t>(options_.ignored_tgid != 0 ? options_.ignored_tgid : ::getpid());
  settings.use_cache = filter.use_cache && options_.use_cache ? 1 : 0;
  settings.filter_fsmagic = filter.ignored_fsmagic.empty() ? 0 : 1;
  for (size_t hook = 0; hook < IMAROTD_HOOK_COUNT; ++hook) settings.masks[hook] = filter.masks[hook];
  for (size_t hook = 0; hook < IMAROTD_HOOK_COUNT; ++hook) {
    const auto& ranges = filter.uid_ranges[hook];
    if (ranges.size() > IMAROTD_UID_RANGES) continue;  // more than the kernel checks: every uid
    settings.uid_range_count[hook] = static_cast<uint32_t>(ranges.size());
    for (size_t i = 0; i < ranges.size(); ++i) {
      settings.uid_ranges[hook][i].first = ranges[i].first;
      settings.uid_ranges[hook][i].last = ranges[i].last;
    }
  }

  int fsmagic_fd = bpf_map__fd(skeleton_->bpf->maps.ignored_fsmagic);
  uint64_t key = 0;
  uint64_t next = 0;
  std::vector<uint64_t> old;
  while (::bpf_map_get_next_key(fsmagic_fd, old.empty() ? nullptr : &key, &next) == 0) {
    old.push_back(next);
    key = next;
  }
  for (uint64_t magic : old) ::bpf_map_delete_elem(fsmagic_fd, &magic);
  for (uint64_t magic : filter.ignored_fsmagic) {
    uint8_t one = 1;
    if (int rc = ::bpf_map_update_elem(fsmagic_fd, &magic, &one, BPF_ANY); rc != 0) {
      return phase_error("setting the fsmagic filter", errno);
    }
  }
  if (!settings.use_cache) {
    // Entries from an earlier policy would keep accesses back that the
    // new one measures.
    int measured_fd = bpf_map__fd(skeleton_->bpf->maps.measured);
    imarotd_inode_key inode{};
    while (::bpf_map_get_next_key(measured_fd, nullptr, &inode) == 0) ::bpf_map_delete_elem(measured_fd, &inode);
  }

  uint32_t zero = 0;
  if (::bpf_map_update_elem(bpf_map__fd(skeleton_->bpf->maps.settings), &zero, &settings, BPF_ANY) != 0) {
    return phase_error("setting the filter", errno);
  }
  return imarot::Ok{};
}

imarot::Result<void> BpfSource::start(EventSink& sink) {
  if (reader_) return imarot::Error{"eBPF LSM source: already started"};
  if (auto attached = attach(); !attached) return attached;
  reader_ = std::make_unique<Reader>(*this, sink, bpf_map__fd(skeleton_->bpf->maps.records),
                                     options_.use_cache && options_.filter.use_cache);
  if (!reader_->ok()) {
    int error = errno;
    reader_.reset();
    return phase_error("creating the ring buffer reader", error);
  }
  thread_ = std::thread([this] { reader_->run(); });
  return imarot::Ok{};
}

void BpfSource::stop() {
  bool attached = skeleton_ && phase_ >= 4;
  if (attached) {
    imarotd_bpf__detach(skeleton_->bpf);
    phase_ = 3;
  }
  if (reader_) {
    reader_->request_stop();
    if (thread_.joinable()) thread_.join();
    reader_.reset();
  }
  if (attached) {
    BpfKernelCounters counters = kernel_counters();
    spdlog::info("eBPF LSM source stopped: {} records sent, {} access and {} close records lost (ring buffer "
                 "full), {} accesses kept back by the measured cache, {} filtered, {} opens untracked",
                 counters.sent, counters.lost, counters.lost_closes, counters.cached, counters.filtered,
                 counters.untracked);
  }
}

BpfKernelCounters BpfSource::kernel_counters() const {
  BpfKernelCounters result;
  if (!skeleton_ || phase_ < 3) return result;
  int cpus = libbpf_num_possible_cpus();
  if (cpus <= 0) return result;
  std::vector<uint64_t> values(static_cast<size_t>(cpus));
  int fd = bpf_map__fd(skeleton_->bpf->maps.counters);
  auto sum = [&](uint32_t index) {
    if (::bpf_map_lookup_elem(fd, &index, values.data()) != 0) return uint64_t{0};
    uint64_t total = 0;
    for (uint64_t value : values) total += value;
    return total;
  };
  result.sent = sum(IMAROTD_COUNTER_SENT);
  result.lost = sum(IMAROTD_COUNTER_LOST);
  result.lost_closes = sum(IMAROTD_COUNTER_LOST_CLOSES);
  result.cached = sum(IMAROTD_COUNTER_CACHED);
  result.filtered = sum(IMAROTD_COUNTER_FILTERED);
  result.untracked = sum(IMAROTD_COUNTER_UNTRACKED);
  return result;
}

size_t BpfSource::ring_buffer_bytes() const {
  if (!skeleton_) return 0;
  return bpf_map__max_entries(skeleton_->bpf->maps.records);
}

imarot::Result<void> BpfSource::mark_measured(const FileIdentity& file) {
  if (!skeleton_ || phase_ < 3) return imarot::Error{"eBPF LSM source: the measured map exists only after load"};
  MeasuredMap map(bpf_map__fd(skeleton_->bpf->maps.measured));
  if (map.update(file) != 0) return phase_error("updating the measured map", errno);
  return imarot::Ok{};
}

imarot::Result<std::pair<uint64_t, uint32_t>> BpfSource::lookup_measured(dev_t dev, ino_t ino) const {
  if (!skeleton_ || phase_ < 3) return imarot::Error{"eBPF LSM source: the measured map exists only after load"};
  imarotd_inode_key key{};
  key.dev = kernel_dev(dev);
  key.ino = ino;
  imarotd_measured_state state{};
  if (::bpf_map_lookup_elem(bpf_map__fd(skeleton_->bpf->maps.measured), &key, &state) != 0) {
    return imarot::Error{fmt::format("no measured entry for {}:{} inode {}: {}", major(dev), minor(dev), ino,
                                     errno_text(errno)),
                         errno};
  }
  return std::pair<uint64_t, uint32_t>(state.change_counter, state.generation);
}

}  // namespace imarotd
