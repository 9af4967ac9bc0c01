// Event source selection.
#include <limits.h>
#include <stdlib.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <iterator>

#include <fmt/format.h>

#include "daemon.h"
#include "fanotify_source.h"
#include "securityfs.h"
#ifdef IMAROTD_HAVE_BPF
#include "bpf_source.h"
#endif

namespace imarotd {
namespace {

bool fs_conditions_match(const imarot::PolicyRule& rule, const MountedFilesystem& fs) {
  if (rule.fsmagic && *rule.fsmagic != fs.fsmagic) return false;
  if (rule.fsname && *rule.fsname != fs.fstype) return false;
  return true;
}

bool has_other_conditions(const imarot::PolicyRule& rule) {
  return rule.func || rule.mask || rule.fsuuid || rule.uid || rule.euid || rule.gid || rule.egid || rule.fowner ||
         rule.fgroup || rule.has_lsm_condition() || rule.keyrings || rule.labels;
}

// Whether any event on `fs` can reach a measure rule: walks the rules as
// the matcher does, and stops at the first measure-class rule that matches
// every event of the filesystem.
bool policy_may_measure(const imarot::Policy& policy, const MountedFilesystem& fs) {
  for (const auto& rule : policy.rules) {
    bool measure_class = rule.action == imarot::PolicyAction::measure ||
                         rule.action == imarot::PolicyAction::dont_measure;
    if (!measure_class || !fs_conditions_match(rule, fs)) continue;
    if (rule.action == imarot::PolicyAction::measure) return true;
    if (!has_other_conditions(rule)) return false;
  }
  return false;
}

#ifdef IMAROTD_HAVE_BPF
// Runs the eBPF LSM source's phases up to attach, so a kernel that refuses
// the programs is found here, while fanotify can still take over.
imarot::Result<std::unique_ptr<BpfSource>> open_bpf_source(const DaemonConfig& config, const imarot::Policy& policy) {
  if (auto active = BpfSource::probe_bpf_lsm(); !active) return active.error();
  BpfSourceOptions options;
  // The register of rules without pcr= is the backend's, unknown here, so
  // it counts as a register of its own when rules are compared.
  options.filter = derive_bpf_filter(policy, UINT32_MAX);
  options.ring_buffer_bytes = static_cast<size_t>(config.bpf_ring_buffer_kib) * 1024;
  auto source = std::make_unique<BpfSource>(options);
  if (auto attached = source->attach(); !attached) return attached.error();
  return source;
}
#endif

}  // namespace

imarot::Result<void> check_filesystems(const DaemonConfig& config, const std::string& mountinfo_path) {
  if (config.filesystems.empty()) return imarot::Ok{};
  auto mounts = list_mounted_filesystems(mountinfo_path);
  if (!mounts) return mounts.error();
  for (size_t i = 0; i < config.filesystems.size(); ++i) {
    const std::string& given = config.filesystems[i];
    char resolved_buffer[PATH_MAX];
    if (::realpath(given.c_str(), resolved_buffer) == nullptr) {
      return imarot::Error{fmt::format("{}: filesystems[{}]: '{}' cannot be used: {}; give the mount point of a "
                                       "filesystem to measure",
                                       config.source_path, i, given, std::strerror(errno))};
    }
    std::string resolved = resolved_buffer;

    // The mount whose mount point is the longest prefix of `resolved`
    // contains it. mountinfo lists every mount, "/" included.
    const MountedFilesystem* containing = nullptr;
    for (const auto& fs : *mounts) {
      const std::string& point = fs.mount_point;
      bool contains = resolved == point || point == "/" ||
                      (resolved.size() > point.size() && resolved.compare(0, point.size(), point) == 0 &&
                       resolved[point.size()] == '/');
      if (contains && (containing == nullptr || point.size() >= containing->mount_point.size())) containing = &fs;
    }
    if (containing != nullptr && containing->mount_point == resolved) continue;

    std::string shown = resolved == given ? fmt::format("'{}'", given)
                                          : fmt::format("'{}' (resolved to '{}')", given, resolved);
    std::string mount_point = containing != nullptr ? containing->mount_point : std::string("/");
    return imarot::Error{fmt::format("{}: filesystems[{}]: {} is not a mount point; fanotify watches whole "
                                     "filesystems, so give the mount point ('{}') instead",
                                     config.source_path, i, shown, mount_point)};
  }
  return imarot::Ok{};
}

imarot::Result<SourceChoice> select_event_source(const DaemonConfig& config, const imarot::Policy& policy) {
  SourceChoice choice;
#ifdef IMAROTD_HAVE_BPF
  if (config.event_source != EventSourceChoice::fanotify) {
    auto bpf = open_bpf_source(config, policy);
    if (bpf) {
      choice.source = std::move(*bpf);
      choice.reason = config.event_source == EventSourceChoice::bpf
                          ? "selected in the configuration"
                          : "the BPF LSM is active and its programs loaded";
      return choice;
    }
    if (config.event_source == EventSourceChoice::bpf) {
      return imarot::Error{fmt::format("{}: \"event_source\": \"bpf\" cannot start: {}; use \"auto\" to fall back "
                                       "to fanotify",
                                       config.source_path, bpf.error().message)};
    }
    choice.reason = fmt::format("the eBPF LSM source is unavailable: {}", bpf.error().message);
  } else {
    choice.reason = "selected in the configuration";
  }
#else
  if (config.event_source == EventSourceChoice::bpf) {
    return imarot::Error{fmt::format("{}: \"event_source\": \"bpf\" is not available: this imarotd was built "
                                     "without the eBPF LSM source; use \"auto\" or \"fanotify\"",
                                     config.source_path)};
  }
  if (config.event_source == EventSourceChoice::fanotify) {
    choice.reason = "selected in the configuration";
  } else {
    // This build has no eBPF LSM source, so auto always ends on fanotify.
    // The reason states what a build with it would find.
    auto lsm = read_lsm_list("/sys/kernel/security/lsm");
    if (!lsm) {
      choice.reason = fmt::format("{}, so the BPF LSM cannot be confirmed", lsm.error().message);
    } else if (lsm->find("bpf") == std::string::npos) {
      choice.reason = "the BPF LSM is not active (not in /sys/kernel/security/lsm)";
    } else {
      choice.reason = "this imarotd was built without the eBPF LSM source";
    }
  }
#endif

  FanotifyOptions options;
  options.measure_before_use = config.measure_before_use;
  options.notification_events = config.fanotify_notification_events;
  if (!config.filesystems.empty()) {
    options.mount_points = config.filesystems;
  } else {
    auto mounts = list_mounted_filesystems();
    if (!mounts) return mounts.error();
    options.mount_points = select_mount_points(*mounts, [&](const MountedFilesystem& fs) {
      return fs.fstype != "proc" && policy_may_measure(policy, fs);
    });
    if (options.mount_points.empty()) {
      return imarot::Error{fmt::format("the policy '{}' measures no mounted filesystem; nothing to watch",
                                       policy.source)};
    }
  }
  choice.source = std::make_unique<FanotifySource>(options);
  return choice;
}

}  // namespace imarotd
