// Extend throughput on tsm-mr measurement files served by ccrot-fs (FUSE),
// measured two ways on the same RTMR2 file. The tdx backend goes through
// RotBackend::extend, which computes the SHA-384 template digest of each
// entry and writes it with one pwrite. The shell loop runs
// `cat INPUT > rtmr2:sha384` once per extend, as a script would.
//
// Usage: bench_tsm_mr_extend [SECONDS] [SHELL_ITERATIONS] (defaults 2 and
// 300). Needs root and /dev/fuse. Prints extends per second and the ratio
// against the target of 10 times the shell loop. Both numbers include the
// FUSE round trips of the emulator, which a real sysfs file does not have.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "ccrot_mount.h"
#include "imarot/rot.h"
#include "rot_test_util.h"

namespace {

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

[[noreturn]] void fail(const std::string& message) {
  std::fprintf(stderr, "bench_tsm_mr_extend: %s\n", message.c_str());
  std::exit(1);
}

}  // namespace

int main(int argc, char** argv) {
  double seconds = argc > 1 ? std::atof(argv[1]) : 2.0;
  int shell_iterations = argc > 2 ? std::atoi(argv[2]) : 300;
  if (seconds <= 0 || shell_iterations <= 0) fail("usage: bench_tsm_mr_extend [SECONDS] [SHELL_ITERATIONS]");

  auto mount = imarot::test::CcrotMount::tsm_mr(
      {"mrtd:sha384=ro", "rtmr0:sha384=rw", "rtmr1:sha384=rw", "rtmr2:sha384=rw", "rtmr3:sha384=rw"});
  if (!mount) fail(mount.error().message);
  auto backend = imarot::rot::RotBackend::load("tdx", nlohmann::json{{"path", (*mount)->path()}}.dump(),
                                               imarot::test::plugin_dir());
  if (!backend) fail(backend.error().message);

  std::vector<imarot::Entry> entries = imarot::test::make_entries(2, 512);
  size_t count = 0;
  auto start = std::chrono::steady_clock::now();
  while (seconds_since(start) < seconds) {
    for (int i = 0; i < 64; ++i, ++count) {
      auto extended = (*backend)->extend(2, entries[count % entries.size()]);
      if (!extended) fail(extended.error().message);
    }
  }
  double backend_rate = static_cast<double>(count) / seconds_since(start);

  std::string input = (*mount)->scratch("input.bin");
  imarot::test::write_text_file(input, std::string(48, '\x42'));
  std::string script = fmt::format("i=0; while [ $i -lt {} ]; do cat '{}' > '{}' || exit 1; i=$((i+1)); done",
                                   shell_iterations, input, (*mount)->file("rtmr2:sha384"));
  start = std::chrono::steady_clock::now();
  imarot::test::CommandResult shell = imarot::test::run_command({"sh", "-c", script}, std::chrono::minutes(5));
  double shell_seconds = seconds_since(start);
  if (shell.exit_code != 0) fail(fmt::format("shell loop failed: {}", shell.err));
  double shell_rate = shell_iterations / shell_seconds;

  std::printf("tdx backend on ccrot-fs: %.0f extends/s (%zu extends)\n", backend_rate, count);
  std::printf("shell loop (cat > file): %.0f extends/s (%d extends)\n", shell_rate, shell_iterations);
  std::printf("backend / shell: %.1fx (target >= 10x)\n", backend_rate / shell_rate);
  return 0;
}
