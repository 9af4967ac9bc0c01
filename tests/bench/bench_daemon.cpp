// The daemon's cost to the system it measures, on the fanotify source with
// swtpm as the TPM, over a private tmpfs (needs root):
//  - exec overhead: fork+exec of a small binary with imarotd off, on, on
//    with measure_before_use, and on with notification events, after the
//    binary was measured once. Four tmpfs mounts hold a copy each: one
//    unwatched and one for each daemon (each daemon with its own swtpm).
//    The cases take turns in blocks of BLOCK execs, because load
//    from other processes changes within seconds and must shift every case
//    alike. The ratios printed are medians of the per-block ratios.
//  - first measurement of a tree of files, timed from the start of the `cat`
//    that reads them. It ends at the last entry in the durable list, and at
//    the last entry in the ascii list, which the daemon writes after the
//    extend. The time is compared with sha256sum over the same files. The
//    same `cat` run while no daemon watches the tmpfs gives the floor.
//
// Usage: bench_daemon [--tree-only] [--tree-notification] [--hold SECONDS] [EXECS] [SMALL_FILES] [BLOCK]
//        (defaults 5000 execs per case, 2000 files, blocks of 100 execs)
//   --tree-only     run only the first measurement of the tree
//   --tree-notification
//                   the tree's daemon runs on fanotify notification events
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
#include <memory>
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
  bool tree_notification = false;
  int hold_seconds = 0;
  std::vector<std::string> positional;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--tree-only") {
      tree_only = true;
    } else if (arg == "--tree-notification") {
      tree_notification = true;
    } else if (arg == "--hold") {
      if (i + 1 == argc) {
        std::fprintf(stderr, "bench_daemon: --hold needs a number of seconds\n");
        return 2;
      }
      hold_seconds = std::max(0, std::atoi(argv[++i]));
    } else if (arg.rfind("--", 0) == 0) {
      std::fprintf(stderr, "bench_daemon: unknown option '%s'; expected --tree-only, --tree-notification or --hold SECONDS\n", arg.c_str());
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
  // swtpm serves one client at a time: each daemon of the exec cases gets
  // its own.
  std::vector<std::unique_ptr<imarot::test::Swtpm>> exec_swtpms;
  for (const char* name : {"tpm-mbu", "tpm-notify"}) {
    ::mkdir(dir.file(name).c_str(), 0700);
    auto started = imarot::test::Swtpm::start(*tools, dir.file(name), swtpm_options);
    if (!started) {
      std::fprintf(stderr, "bench_daemon: %s\n", started.error().message.c_str());
      return 1;
    }
    exec_swtpms.push_back(std::move(*started));
  }

  // fs: watched by the daemon and later by the tree measurement; fs-mbu and
  // fs-notify: watched by the measure_before_use and the notification-event
  // daemons; fs-off: unwatched.
  std::vector<std::string> mounted;
  for (const char* name : {"fs", "fs-mbu", "fs-notify", "fs-off"}) {
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
  auto config = [&](const std::string& name, const std::string& filesystem, const std::string& tcti) {
    return nlohmann::json{
        {"policy", dir.file("policy")},
        {"state_directory", dir.file(name + "-state")},
        {"runtime_directory", dir.file(name + "-run")},
        {"plugin_directory", imarot::test::plugin_dir()},
        {"event_source", "fanotify"},
        {"filesystems", {filesystem}},
        {"dbus", "none"},
        {"backends", {{{"name", "tpm2"}, {"register", 11}, {"config", {{"tcti", tcti}}}}}},
    };
  };

  // Exec overhead, steady state: 100 execs of each copy measure it (or find
  // it unchanged) before the timed blocks.
  if (!tree_only) {
    struct Case {
      const char* label;
      const char* name;  // of the daemon's files; empty: no daemon
      std::string program;
      nlohmann::json config;
      std::unique_ptr<Daemon> daemon;
      double total = 0;
      double cpu = 0;
      std::vector<double> ratios;
    };
    std::vector<Case> cases;
    cases.push_back({"imarotd off (unwatched tmpfs)", "", dir.file("fs-off") + "/true", {}, nullptr});
    cases.push_back({"imarotd on", "exec", fs + "/true", config("exec", fs, (*swtpm)->tcti()), nullptr});
    cases.push_back({"imarotd on, measure_before_use", "exec-mbu", dir.file("fs-mbu") + "/true",
                     config("exec-mbu", dir.file("fs-mbu"), exec_swtpms[0]->tcti()), nullptr});
    cases.back().config["measure_before_use"] = true;
    cases.push_back({"imarotd on, notification events", "exec-notify", dir.file("fs-notify") + "/true",
                     config("exec-notify", dir.file("fs-notify"), exec_swtpms[1]->tcti()), nullptr});
    cases.back().config["fanotify_events"] = "notification";
    for (auto& c : cases) {
      if (c.name[0] != '\0') c.daemon = std::make_unique<Daemon>(dir, c.name, c.config);
    }
    for (auto& c : cases) exec_loop(c.program, 100);
    for (auto& c : cases) c.cpu = c.daemon ? -c.daemon->cpu_seconds() : 0;

    const int count = static_cast<int>(cases.size());
    for (int done = 0; done < execs; done += block) {
      // Every other block runs the cases in reverse order.
      std::vector<double> seconds(cases.size());
      for (int step = 0; step < count; ++step) {
        int index = (done / block) % 2 == 0 ? step : count - 1 - step;
        seconds[index] = exec_loop(cases[index].program, block);
        cases[index].total += seconds[index];
      }
      for (int i = 1; i < count; ++i) cases[i].ratios.push_back(seconds[i] / seconds[0]);
    }
    for (auto& c : cases) c.cpu += c.daemon ? c.daemon->cpu_seconds() : 0;
    const int per_case = static_cast<int>(cases[1].ratios.size()) * block;
    auto per_exec = [&](double value) { return value / per_case * 1e6; };

    auto median = [](std::vector<double> values) {
      std::sort(values.begin(), values.end());
      size_t middle = values.size() / 2;
      return values.size() % 2 == 1 ? values[middle] : (values[middle - 1] + values[middle]) / 2;
    };
    std::printf("exec loop, fork+exec+wait of a copy of /bin/true on a tmpfs, %d blocks of %d per case, interleaved:\n",
                per_case / block, block);
    for (const auto& c : cases) {
      std::printf("  %-34s %8.1f us/exec", c.label, per_exec(c.total));
      if (c.daemon) {
        double ratio = median(c.ratios);
        std::printf(", daemon CPU %5.1f us/exec, median of per-block ratios to off %.3f, overhead %+.1f%%",
                    per_exec(c.cpu), ratio, (ratio - 1) * 100);
      }
      std::printf("\n");
    }
    std::printf("  target: overhead <= 2%% in steady state\n");
    for (const auto& c : cases) {
      if (!c.daemon) continue;
      nlohmann::json status = c.daemon->status(c.config);
      std::printf("  daemon %-11s events %llu, for measured files %llu, completed before any /proc read %llu\n", c.name,
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
    nlohmann::json tree_config = config("tree", fs, (*swtpm)->tcti());
    if (tree_notification) tree_config["fanotify_events"] = "notification";
    Daemon daemon(dir, "tree", tree_config);
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
  std::printf("first measurement of %zu files, %.0f MiB, read once by cat, fanotify %s events:\n", files.size(),
              static_cast<double>(bytes) / (1 << 20), tree_notification ? "notification" : "permission");
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
  for (auto& extra : exec_swtpms) extra->stop();
  return 0;
}
