// The daemon's cost to the system it measures, on the fanotify source with
// swtpm as the TPM, over a private tmpfs (needs root):
//  - exec overhead: fork+exec of a small binary with imarotd off, on, and on
//    with measure_before_use, after the binary was measured once. Three
//    tmpfs mounts hold a copy each: one unwatched, one watched by a daemon,
//    one by a second daemon with measure_before_use (each with its own
//    swtpm). The cases take turns in blocks of BLOCK execs, because load
//    from other processes changes within seconds and must shift every case
//    alike. The ratios printed are medians of the per-block ratios.
//  - first measurement of a tree of files, timed from the start of the `cat`
//    that reads them. It ends at the last entry in the durable list, and at
//    the last entry in the ascii list, which the daemon writes after the
//    extend. The time is compared with sha256sum over the same files. The
//    same `cat` run while no daemon watches the tmpfs gives the floor.
//
// Usage: bench_daemon [--tree-only] [--hold SECONDS] [EXECS] [SMALL_FILES] [BLOCK]
//        (defaults 5000 execs per case, 2000 files, blocks of 100 execs)
//   --tree-only     run only the first measurement of the tree
//   --hold SECONDS  print the tree daemon's pid and wait SECONDS before the
//                   `cat` starts, to attach perf or strace to the daemon
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
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

// Counts the records of a list file that grows while it is watched. Each
// poll() reads only the bytes added since the last one, so that polling
// every few milliseconds takes little of the CPU time the daemon needs.
class GrowingList {
 public:
  GrowingList(std::string path, bool ascii) : path_(std::move(path)), ascii_(ascii) {}

  size_t poll() {
    std::ifstream in(path_, std::ios::binary);
    in.seekg(static_cast<std::streamoff>(consumed_));
    imarot::Bytes data((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (ascii_) {
      size_t last_newline = 0;
      for (size_t i = 0; i < data.size(); ++i) {
        if (data[i] == '\n') {
          ++records_;
          last_newline = i + 1;
        }
      }
      consumed_ += last_newline;
    } else {
      // A record cut short at the end is counted once it is complete.
      imarot::ParsedList list = imarot::parse_binary_list(data);
      records_ += list.entries.size();
      consumed_ += list.error ? list.error->offset : data.size();
    }
    return records_;
  }

 private:
  std::string path_;
  bool ascii_;
  size_t consumed_ = 0;
  size_t records_ = 0;
};

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

  pid_t pid() const { return pid_; }

  // CPU time the daemon has used so far (user and system), from
  // /proc/<pid>/stat, in seconds.
  double cpu_seconds() const {
    std::string stat = imarot::test::read_text_file("/proc/" + std::to_string(pid_) + "/stat");
    // The fields after the parenthesized name: state is field 3, utime 14, stime 15.
    std::istringstream fields(stat.substr(stat.rfind(')') + 2));
    std::string field;
    unsigned long long utime = 0;
    unsigned long long stime = 0;
    for (int number = 3; number <= 15 && fields >> field; ++number) {
      if (number == 14) utime = std::stoull(field);
      if (number == 15) stime = std::stoull(field);
    }
    return static_cast<double>(utime + stime) / static_cast<double>(::sysconf(_SC_CLK_TCK));
  }

  // status.json as the daemon last wrote it; it rewrites the file every
  // half second.
  nlohmann::json status(const nlohmann::json& config) const {
    std::this_thread::sleep_for(std::chrono::milliseconds(700));
    std::string path = config["runtime_directory"].get<std::string>() + "/status.json";
    return nlohmann::json::parse(imarot::test::read_text_file(path));
  }

 private:
  const TempDir& dir_;
  std::string name_;
  pid_t pid_ = -1;
};

}  // namespace

int main(int argc, char** argv) {
  bool tree_only = false;
  int hold_seconds = 0;
  std::vector<std::string> positional;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--tree-only") {
      tree_only = true;
    } else if (arg == "--hold") {
      if (i + 1 == argc) {
        std::fprintf(stderr, "bench_daemon: --hold needs a number of seconds\n");
        return 2;
      }
      hold_seconds = std::max(0, std::atoi(argv[++i]));
    } else if (arg.rfind("--", 0) == 0) {
      std::fprintf(stderr, "bench_daemon: unknown option '%s'; expected --tree-only or --hold SECONDS\n", arg.c_str());
      return 2;
    } else {
      positional.push_back(arg);
    }
  }
  const int execs = positional.size() > 0 ? std::atoi(positional[0].c_str()) : 5000;
  const int small_files = positional.size() > 1 ? std::atoi(positional[1].c_str()) : 2000;
  const int block = positional.size() > 2 ? std::max(1, std::atoi(positional[2].c_str())) : 100;
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
  // swtpm serves one client at a time: the second daemon gets its own.
  ::mkdir(dir.file("tpm-mbu").c_str(), 0700);
  auto swtpm_mbu = imarot::test::Swtpm::start(*tools, dir.file("tpm-mbu"), swtpm_options);
  if (!swtpm_mbu) {
    std::fprintf(stderr, "bench_daemon: %s\n", swtpm_mbu.error().message.c_str());
    return 1;
  }

  // fs: watched by the daemon and later by the tree measurement;
  // fs-mbu: watched by the measure_before_use daemon; fs-off: unwatched.
  std::vector<std::string> mounted;
  for (const char* name : {"fs", "fs-mbu", "fs-off"}) {
    std::string path = dir.file(name);
    ::mkdir(path.c_str(), 0755);
    if (::mount("imarotd-bench", path.c_str(), "tmpfs", 0, "size=1g") != 0) {
      std::perror("bench_daemon: mount");
      for (const auto& done : mounted) ::umount2(done.c_str(), MNT_DETACH);
      return 1;
    }
    mounted.push_back(path);
    std::filesystem::copy_file("/bin/true", path + "/true");
  }
  std::string fs = dir.file("fs");
  imarot::test::write_text_file(dir.file("policy"),
                                "measure func=BPRM_CHECK mask=MAY_EXEC\nmeasure func=FILE_CHECK mask=^MAY_READ uid=0\n");
  auto config = [&](const std::string& name, bool measure_before_use) {
    const std::string& tcti = measure_before_use ? (*swtpm_mbu)->tcti() : (*swtpm)->tcti();
    return nlohmann::json{
        {"policy", dir.file("policy")},
        {"state_directory", dir.file(name + "-state")},
        {"runtime_directory", dir.file(name + "-run")},
        {"plugin_directory", imarot::test::plugin_dir()},
        {"event_source", "fanotify"},
        {"filesystems", {measure_before_use ? dir.file("fs-mbu") : fs}},
        {"measure_before_use", measure_before_use},
        {"dbus", "none"},
        {"backends", {{{"name", "tpm2"}, {"register", 11}, {"config", {{"tcti", tcti}}}}}},
    };
  };

  // Exec overhead, steady state: 100 execs of each copy measure it (or find
  // it unchanged) before the timed blocks.
  if (!tree_only) {
    nlohmann::json on_config = config("exec", false);
    nlohmann::json before_use_config = config("exec-mbu", true);
    Daemon on_daemon(dir, "exec", on_config);
    Daemon before_use_daemon(dir, "exec-mbu", before_use_config);
    const std::string programs[3] = {dir.file("fs-off") + "/true", fs + "/true", dir.file("fs-mbu") + "/true"};
    for (const auto& program : programs) exec_loop(program, 100);

    double totals[3] = {0, 0, 0};
    std::vector<double> on_ratios;
    std::vector<double> before_use_ratios;
    double on_cpu = on_daemon.cpu_seconds();
    double before_use_cpu = before_use_daemon.cpu_seconds();
    for (int done = 0; done < execs; done += block) {
      // Every other block runs the cases in reverse order.
      double seconds[3] = {0, 0, 0};
      for (int step = 0; step < 3; ++step) {
        int which = (done / block) % 2 == 0 ? step : 2 - step;
        seconds[which] = exec_loop(programs[which], block);
        totals[which] += seconds[which];
      }
      on_ratios.push_back(seconds[1] / seconds[0]);
      before_use_ratios.push_back(seconds[2] / seconds[0]);
    }
    on_cpu = on_daemon.cpu_seconds() - on_cpu;
    before_use_cpu = before_use_daemon.cpu_seconds() - before_use_cpu;
    const int blocks = static_cast<int>(on_ratios.size());
    const int per_case = blocks * block;
    auto per_exec = [&](double value) { return value / per_case * 1e6; };

    auto median = [](std::vector<double> values) {
      std::sort(values.begin(), values.end());
      size_t middle = values.size() / 2;
      return values.size() % 2 == 1 ? values[middle] : (values[middle - 1] + values[middle]) / 2;
    };
    std::printf("exec loop, fork+exec+wait of a copy of /bin/true on a tmpfs, %d blocks of %d per case, interleaved:\n",
                blocks, block);
    std::printf("  imarotd off (unwatched tmpfs)    %8.1f us/exec\n", per_exec(totals[0]));
    std::printf("  imarotd on                       %8.1f us/exec, daemon CPU %.1f us/exec\n", per_exec(totals[1]),
                per_exec(on_cpu));
    std::printf("  imarotd on, measure_before_use   %8.1f us/exec, daemon CPU %.1f us/exec\n", per_exec(totals[2]),
                per_exec(before_use_cpu));
    std::printf("  median of per-block ratios, on/off:                 %.3f  overhead %+.1f%% (target <= 2%%)\n",
                median(on_ratios), (median(on_ratios) - 1) * 100);
    std::printf("  median of per-block ratios, measure_before_use/off: %.3f  overhead %+.1f%%\n",
                median(before_use_ratios), (median(before_use_ratios) - 1) * 100);
    std::printf("  ratio of the totals: on/off %.3f, measure_before_use/off %.3f\n", totals[1] / totals[0],
                totals[2] / totals[0]);
    for (const auto& [daemon_config, name] : {std::pair{on_config, "on"}, std::pair{before_use_config, "mbu"}}) {
      const Daemon& daemon = name == std::string("on") ? on_daemon : before_use_daemon;
      nlohmann::json status = daemon.status(daemon_config);
      std::printf("  daemon %-3s events %llu, for measured files %llu, completed before any /proc read %llu\n", name,
                  status.value("events", 0ULL), status.value("cached", 0ULL),
                  status.value("completed_from_identity", 0ULL));
    }
  }

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
  // The floor: the same `cat` while no daemon watches the tmpfs.
  std::vector<std::string> cat = {"cat"};
  cat.insert(cat.end(), files.begin(), files.end());
  double cat_alone = bench::time_command(cat);

  double in_list = 0;
  double extended = 0;
  double cat_watched = 0;
  double daemon_cpu = 0;
  {
    Daemon daemon(dir, "tree", config("tree", false));
    GrowingList binary_list(dir.file("tree-state/current.bin"), false);
    GrowingList ascii_list(dir.file("tree-run/ascii_runtime_measurements"), true);
    const size_t expected_binary = binary_list.poll() + files.size();
    const size_t expected_ascii = ascii_list.poll() + files.size();
    if (hold_seconds > 0) {
      std::printf("tree daemon pid %d; the cat starts in %d s\n", daemon.pid(), hold_seconds);
      std::fflush(stdout);
      std::this_thread::sleep_for(std::chrono::seconds(hold_seconds));
    }
    double cpu_before = daemon.cpu_seconds();
    double start = bench::now_seconds();
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
    bool cat_running = true;
    while (in_list == 0 || extended == 0 || cat_running) {
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
      double now = bench::now_seconds();
      if (cat_running && ::waitpid(pid, nullptr, WNOHANG) == pid) {
        cat_running = false;
        cat_watched = now - start;
      }
      if (in_list == 0 && binary_list.poll() >= expected_binary) in_list = now - start;
      if (extended == 0 && ascii_list.poll() >= expected_ascii) extended = now - start;
    }
    daemon_cpu = daemon.cpu_seconds() - cpu_before;
  }
  std::printf("first measurement of %zu files, %.0f MiB, read once by cat:\n", files.size(),
              static_cast<double>(bytes) / (1 << 20));
  std::printf("  imarotd (hash threads: one per CPU, %u CPUs), until the last entry is\n",
              std::thread::hardware_concurrency());
  std::printf("    in the durable list                      %6.3f s\n", in_list);
  std::printf("    extended (in the ascii list)             %6.3f s\n", extended);
  std::printf("  daemon CPU time (user and system, 10 ms steps) %5.2f s\n", daemon_cpu);
  std::printf("  cat with the daemon watching               %6.3f s\n", cat_watched);
  std::printf("  cat alone, unwatched                       %6.3f s\n", cat_alone);
  std::printf("  sha256sum over the same files              %6.3f s\n", coreutils);
  std::printf("  ratio imarotd / sha256sum: %.2f in the list, %.2f extended (target <= 0.3)\n", in_list / coreutils,
              extended / coreutils);

  for (const auto& path : mounted) ::umount2(path.c_str(), MNT_DETACH);
  (*swtpm)->stop();
  (*swtpm_mbu)->stop();
  return 0;
}
