// imarotd's life cycle: validate, open the list and the roots of trust,
// start the pipeline and the event source, serve signals until stopped.
#pragma once

#include <signal.h>

#include <memory>
#include <string>
#include <vector>

#include "config.h"
#include "event.h"
#include "imarot/policy.h"
#include "imarot/result.h"

namespace imarotd {

// Loads the policy a configuration names: a file, or "builtin:NAME" for a
// kernel built-in policy such as builtin:tcb. Errors list every problem as
// FILE:LINE:COLUMN.
imarot::Result<std::shared_ptr<imarot::Policy>> load_configured_policy(const DaemonConfig& config);

// Checks each "filesystems" entry: it must exist and, after symlinks are
// resolved, be a mount point listed in `mountinfo_path`. fanotify marks
// whole filesystems (FAN_MARK_FILESYSTEM), so a directory would stand for
// the whole filesystem that contains it.
imarot::Result<void> check_filesystems(const DaemonConfig& config,
                                       const std::string& mountinfo_path = "/proc/self/mountinfo");

// Checks what can be checked without opening a backend's device: that each
// backend's plugin exists and accepts its config, that the policy's pcr=
// values match the first backend's explicit "register", and "filesystems".
// Returns warnings for what only a start can check. Both imarotd --check and
// a start run it, so --check accepts only what a start accepts.
imarot::Result<std::vector<std::string>> check_configuration(const DaemonConfig& config,
                                                             const imarot::Policy& policy);

// Chooses the event source: the eBPF LSM where the kernel has it active and
// the programs load, else fanotify. `reason` explains the choice.
struct SourceChoice {
  std::unique_ptr<EventSource> source;
  std::string reason;
};
imarot::Result<SourceChoice> select_event_source(const DaemonConfig& config, const imarot::Policy& policy);

// SIGTERM, SIGINT and SIGHUP: the signals the daemon reads from a signalfd.
// They must be blocked before the first thread starts.
sigset_t daemon_signals();

// Exit code of imarotd for a configuration or policy that --check or a start
// rejects. Other failures to start or run exit with 1.
inline constexpr int kExitInvalidConfig = 2;

// Runs the daemon until SIGTERM or SIGINT; returns the process exit code:
// 0 after a signal, kExitInvalidConfig for a rejected configuration, 1 for
// other failures.
int run_daemon(const DaemonConfig& config);

}  // namespace imarotd
