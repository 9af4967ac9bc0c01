// Child processes and temporary directories for the integration tests and
// benchmarks. Every process is started here and ended by its pid.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <string>
#include <vector>

#include "imarot/result.h"

namespace imarot::test {

struct CommandResult {
  int exit_code = -1;  // -1 when killed by a signal or timed out
  bool timed_out = false;
  std::string out;
  std::string err;
};

// Runs argv[0] (searched in PATH when it has no '/') with stdin from
// /dev/null, collects its output, and kills it by pid after `timeout`.
CommandResult run_command(const std::vector<std::string>& argv,
                          std::chrono::milliseconds timeout = std::chrono::seconds(60));

// Starts argv[0] with stdout and stderr appended to `log_path`; returns the
// pid.
Result<pid_t> spawn_logged(const std::vector<std::string>& argv, const std::string& log_path);

// Ends a child started by spawn_logged: `signal` first, SIGKILL after
// `grace`, then reaps it.
void stop_child(pid_t pid, int signal, std::chrono::milliseconds grace);

// True while `pid` (a child of this process) has not exited. A child that
// has exited is reaped here, so the caller must not signal its pid again.
bool child_running(pid_t pid);

// The absolute path of a tool: `configured` when CMake found it, else a
// search of PATH. Empty when neither has it.
std::string find_tool(const std::string& name, const std::string& configured);

// A directory under /tmp, removed with its contents on destruction. The
// path is short enough for unix socket names inside it.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string file(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

std::string read_text_file(const std::string& path);
void write_text_file(const std::string& path, const std::string& text);

}  // namespace imarot::test
