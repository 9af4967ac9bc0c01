// The daemon's cost to the system it measures, on the fanotify source with
// swtpm as the TPM, over a private tmpfs (needs root):
//  - exec overhead: a loop of fork+exec of a small binary with imarotd off,
//    on, and on with measure_before_use, after the binary was measured once;
//  - first measurement of a tree of files: from the first read to the last
//    entry in the list, against sha256sum over the same files.
//
// Usage: bench_daemon [EXECS] [SMALL_FILES]   (defaults 2000 and 2000)
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "bench_util.h"
#include "imarot/measurement_list.h"
#include "process.h"
#include "rot_test_util.h"
#include "swtpm.h"

namespace {

using imarot::test::TempDir;

size_t list_entries(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  imarot::Bytes data((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  return imarot::parse_binary_list(data).entries.size();
}

// Runs `program` `count` times, one fork+exec+wait after the other.
double exec_loop(const std::string& program, int count) {
  double start = bench::now_seconds();
  for (int i = 0; i < count; ++i) {
    pid_t pid = ::fork();
    if (pid == 0) {
      ::execl(program.c_str(), program.c_str(), static_cast<char*>(nullptr));
      ::_exit(127);
    }
    int status = 0;
    ::waitpid(pid, &status, 0);
  }
  return bench::now_seconds() - start;
}

class Daemon {
 public:
  Daemon(const TempDir& dir, const std::string& name, const nlohmann::json& config) : dir_(dir), name_(name) {
    imarot::test::write_text_file(dir.file(name + ".json"), config.dump());
    auto pid = imarot::test::spawn_logged({IMAROTD_PATH, "--config", dir.file(name + ".json")},
                                          dir.file(name + ".log"));
    if (!pid) throw std::runtime_error(pid.error().message);
    pid_ = *pid;
    std::string status = config["runtime_directory"].get<std::string>() + "/status.json";
    while (!std::filesystem::exists(status)) {
      if (!imarot::test::child_running(pid_)) {
        throw std::runtime_error("imarotd exited:\n" + imarot::test::read_text_file(dir.file(name + ".log")));
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  }
  ~Daemon() { imarot::test::stop_child(pid_, SIGTERM, std::chrono::seconds(10)); }

 private:
  const TempDir& dir_;
  std::string name_;
  pid_t pid_ = -1;
};

}  // namespace

int main(int argc, char** argv) {
  const int execs = argc > 1 ? std::atoi(argv[1]) : 2000;
  const int small_files = argc > 2 ? std::atoi(argv[2]) : 2000;
  if (::geteuid() != 0) {
    std::fprintf(stderr, "bench_daemon: needs root for fanotify and mount\n");
    return 2;
  }

  TempDir dir;
  auto tools = imarot::test::SwtpmTools::find();
  if (!tools) {
    std::fprintf(stderr, "bench_daemon: %s\n", tools.error().message.c_str());
    return 1;
  }
  ::mkdir(dir.file("tpm").c_str(), 0700);
  imarot::test::SwtpmOptions swtpm_options;
  swtpm_options.pcr_banks = "sha1,sha256";
  auto swtpm = imarot::test::Swtpm::start(*tools, dir.file("tpm"), swtpm_options);
  if (!swtpm) {
    std::fprintf(stderr, "bench_daemon: %s\n", swtpm.error().message.c_str());
    return 1;
  }

  std::string fs = dir.file("fs");
  ::mkdir(fs.c_str(), 0755);
  if (::mount("imarotd-bench", fs.c_str(), "tmpfs", 0, "size=1g") != 0) {
    std::perror("bench_daemon: mount");
    return 1;
  }

  std::string program = fs + "/true";
  std::filesystem::copy_file("/bin/true", program);
  imarot::test::write_text_file(dir.file("policy"),
                                "measure func=BPRM_CHECK mask=MAY_EXEC\nmeasure func=FILE_CHECK mask=^MAY_READ uid=0\n");
  auto config = [&](const std::string& name, bool measure_before_use) {
    return nlohmann::json{
        {"policy", dir.file("policy")},
        {"state_directory", dir.file(name + "-state")},
        {"runtime_directory", dir.file(name + "-run")},
        {"plugin_directory", imarot::test::plugin_dir()},
        {"event_source", "fanotify"},
        {"filesystems", {fs}},
        {"measure_before_use", measure_before_use},
        {"dbus", "none"},
        {"backends", {{{"name", "tpm2"}, {"register", 11}, {"config", {{"tcti", (*swtpm)->tcti()}}}}}},
    };
  };

  // Exec overhead, steady state: the binary is measured before the loop.
  exec_loop(program, 100);
  double off = exec_loop(program, execs);
  double on = 0;
  double before_use = 0;
  {
    Daemon daemon(dir, "exec", config("exec", false));
    exec_loop(program, 100);
    on = exec_loop(program, execs);
  }
  {
    Daemon daemon(dir, "exec-mbu", config("exec-mbu", true));
    exec_loop(program, 100);
    before_use = exec_loop(program, execs);
  }
  auto per_exec = [&](double seconds) { return seconds / execs * 1e6; };
  std::printf("exec loop, %d fork+exec+wait of a copy of /bin/true on the watched tmpfs:\n", execs);
  std::printf("  imarotd off                      %8.1f us/exec\n", per_exec(off));
  std::printf("  imarotd on                       %8.1f us/exec  overhead %+.1f%% (target <= 2%%)\n", per_exec(on),
              (on / off - 1) * 100);
  std::printf("  imarotd on, measure_before_use   %8.1f us/exec  overhead %+.1f%%\n", per_exec(before_use),
              (before_use / off - 1) * 100);

  // First measurement of a tree: small files and a few large ones.
  std::vector<std::string> files;
  size_t bytes = 0;
  std::mt19937_64 random(7);
  auto make = [&](const std::string& name, size_t size) {
    std::string content(size, '\0');
    for (auto& c : content) c = static_cast<char>(random());
    imarot::test::write_text_file(fs + "/" + name, content);
    files.push_back(fs + "/" + name);
    bytes += size;
  };
  for (int i = 0; i < small_files; ++i) make("small" + std::to_string(i), 4096 + static_cast<size_t>(i % 16) * 4096);
  for (int i = 0; i < 4; ++i) make("large" + std::to_string(i), 64u << 20);

  std::vector<std::string> sha256sum = {"sha256sum"};
  sha256sum.insert(sha256sum.end(), files.begin(), files.end());
  double coreutils = bench::time_command(sha256sum);

  double tree = 0;
  {
    Daemon daemon(dir, "tree", config("tree", false));
    std::string list = dir.file("tree-state/current.bin");
    size_t expected = list_entries(list) + files.size();
    double start = bench::now_seconds();
    std::vector<std::string> cat = {"cat"};
    cat.insert(cat.end(), files.begin(), files.end());
    pid_t pid = ::fork();
    if (pid == 0) {
      int null_fd = ::open("/dev/null", O_WRONLY);
      ::dup2(null_fd, 1);
      std::vector<char*> args;
      for (auto& arg : cat) args.push_back(arg.data());
      args.push_back(nullptr);
      ::execvp("cat", args.data());
      ::_exit(127);
    }
    while (list_entries(list) < expected) std::this_thread::sleep_for(std::chrono::milliseconds(5));
    tree = bench::now_seconds() - start;
    ::waitpid(pid, nullptr, 0);
  }
  std::printf("first measurement of %zu files, %.0f MiB, read once by cat, until the last entry is in the list:\n",
              files.size(), static_cast<double>(bytes) / (1 << 20));
  std::printf("  imarotd (hash threads: one per CPU, %u CPUs)  %6.3f s\n", std::thread::hardware_concurrency(),
              tree);
  std::printf("  sha256sum over the same files              %6.3f s\n", coreutils);
  std::printf("  ratio imarotd / sha256sum: %.2f (target <= 0.3)\n", tree / coreutils);

  ::umount2(fs.c_str(), MNT_DETACH);
  (*swtpm)->stop();
  return 0;
}
