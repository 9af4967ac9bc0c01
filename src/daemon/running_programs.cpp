#include "running_programs.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string_view>
#include <utility>
#include <vector>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "fanotify_source.h"
#include "proc_info.h"

namespace imarotd {
namespace {

std::vector<pid_t> list_processes(const std::string& proc_root) {
  std::vector<pid_t> pids;
  DIR* dir = ::opendir(proc_root.c_str());
  if (dir == nullptr) {
    spdlog::warn("cannot list {}: {}; programs started before imarotd are not measured", proc_root,
                 std::strerror(errno));
    return pids;
  }
  while (const struct dirent* entry = ::readdir(dir)) {
    char* end = nullptr;
    long pid = std::strtol(entry->d_name, &end, 10);
    if (end != entry->d_name && *end == '\0' && pid > 0) pids.push_back(static_cast<pid_t>(pid));
  }
  ::closedir(dir);
  return pids;
}

// Mount ids of the mount namespace of `pid`, from /proc/PID/mountinfo.
std::unordered_set<uint64_t> mount_ids_of(const std::string& proc_root, pid_t pid) {
  std::unordered_set<uint64_t> ids;
  std::ifstream in(fmt::format("{}/{}/mountinfo", proc_root, pid));
  std::string line;
  while (std::getline(in, line)) {
    uint64_t id = std::strtoull(line.c_str(), nullptr, 10);
    if (id != 0) ids.insert(id);
  }
  return ids;
}

// "START-END" of the executable file mappings in /proc/PID/maps.
std::vector<std::string> executable_mappings(const std::string& maps_path) {
  std::vector<std::string> ranges;
  std::ifstream in(maps_path);
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    std::string range, perms, offset, dev, inode;
    fields >> range >> perms >> offset >> dev >> inode;
    // Anonymous mappings have inode 0; [vdso] and the like are not files.
    if (perms.size() < 3 || perms[2] != 'x' || inode == "0") continue;
    ranges.push_back(range);
  }
  return ranges;
}

}  // namespace

RunningProgramsScan submit_running_programs(EventSink& sink, const EventSource& source,
                                            const std::string& proc_root) {
  RunningProgramsScan scan;
  const pid_t self = ::getpid();
  // Mount ids by mount namespace. A file is named by its full path when its
  // mount is in the namespace of the process that runs it, as kernel IMA
  // would have named it then. imarotd itself may run in a namespace of its
  // own (the unit's sandboxing), so its own mount ids do not decide.
  std::map<std::string, std::unordered_set<uint64_t>> mount_ids_by_namespace;
  const std::unordered_set<uint64_t>* attached = nullptr;
  std::set<std::pair<std::pair<dev_t, ino_t>, Hook>> submitted;

  auto submit_file = [&](pid_t pid, const TaskInfo& task, const std::string& link, Hook hook) {
    int fd = ::open(link.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) {
      ++scan.skipped;
      return false;
    }
    UniqueFd file(fd);
    auto described = describe_open_file(file.get(), *attached);
    if (!described || !S_ISREG(described->file.mode)) {
      ++scan.skipped;
      return false;
    }
    if (!source.watches(described->file)) return true;
    auto key = std::make_pair(std::make_pair(described->file.dev, described->file.ino), hook);
    if (!submitted.insert(key).second) return true;

    FileEvent event;
    event.kind = EventKind::access;
    event.hook = hook;
    event.mask = kMayExec;
    event.pid = pid;
    event.tgid = task.tgid;
    event.comm = task.comm;
    event.creds = task.creds;
    event.file = described->file;
    event.path = std::move(described->path);
    event.deleted = described->deleted;
    event.fd = std::move(file);
    sink.submit(std::move(event));
    ++scan.files;
    return true;
  };

  for (pid_t pid : list_processes(proc_root)) {
    if (pid == self) continue;
    TaskInfo task = read_task_info(pid, proc_root);
    // Kernel threads have no executable; a process that exited has no task.
    if (task.tgid != pid) continue;
    std::string base = fmt::format("{}/{}", proc_root, pid);
    char mount_namespace[64] = {};
    ssize_t n = ::readlink((base + "/ns/mnt").c_str(), mount_namespace, sizeof mount_namespace - 1);
    if (n <= 0) {
      ++scan.skipped;
      continue;
    }
    auto known = mount_ids_by_namespace.find(mount_namespace);
    if (known == mount_ids_by_namespace.end()) {
      known = mount_ids_by_namespace.emplace(mount_namespace, mount_ids_of(proc_root, pid)).first;
    }
    attached = &known->second;
    if (!submit_file(pid, task, base + "/exe", Hook::bprm_check)) continue;
    ++scan.processes;
    for (const std::string& range : executable_mappings(base + "/maps")) {
      submit_file(pid, task, base + "/map_files/" + range, Hook::mmap_check);
    }
  }
  return scan;
}

}  // namespace imarotd
