// imarotd's life cycle: validate, open the list and the roots of trust,
// start the pipeline and the event source, serve signals until stopped.
#pragma once

#include <signal.h>

#include <memory>
#include <string>

#include "config.h"
#include "event.h"
#include "imarot/policy.h"
#include "imarot/result.h"

namespace imarotd {

// Loads the policy a configuration names: a file, or "builtin:NAME" for a
// kernel built-in policy such as builtin:tcb. Errors list every problem as
// FILE:LINE:COLUMN.
imarot::Result<std::shared_ptr<imarot::Policy>> load_configured_policy(const DaemonConfig& config);

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

// Runs the daemon until SIGTERM or SIGINT; returns the process exit code.
int run_daemon(const DaemonConfig& config);

}  // namespace imarotd
