// Measurement of the programs that were already running when imarotd
// started, so that services started earlier in boot are in the list.
#pragma once

#include <cstddef>
#include <string>

#include "event.h"

namespace imarotd {

struct RunningProgramsScan {
  size_t processes = 0;  // processes whose executable was read
  size_t files = 0;      // distinct files submitted (executables and executable mappings)
  size_t skipped = 0;    // processes or mappings that could not be read (exited, no access)
};

// Submits to `sink`, for every process under `proc_root` except imarotd
// itself, its executable as a BPRM_CHECK access and each file it maps
// executable as an MMAP_CHECK access, each distinct file once per hook.
// Each event carries the process's credentials and an open descriptor of
// the file that runs: /proc/PID/exe and /proc/PID/map_files lead to the
// mapped file even after it was unlinked or replaced. Needs CAP_SYS_PTRACE
// for processes of other users and CAP_SYS_ADMIN for map_files.
// NOTE: a program is measured as it is when imarotd starts, not when it
// was executed. A file changed in between would be written while it runs,
// which Linux refuses for executables (ETXTBSY) but not for libraries.
// Files for which `source.watches()` is false are skipped, so the scan
// measures what the source would have measured.
RunningProgramsScan submit_running_programs(EventSink& sink, const EventSource& source,
                                            const std::string& proc_root = "/proc");

}  // namespace imarotd
