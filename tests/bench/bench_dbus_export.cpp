// Fetching a 100,000-entry list from imarotd's D-Bus service: Export by
// memfd (ascii and binary) and ReadEntries pages, against reading the
// exported ascii_runtime_measurements file.
//
// The service is the daemon's own code (DBusService over a CommittedList)
// on a private dbus-daemon, run in a thread through the poll integration
// the daemon uses. The list is appended to a real LogStore, and the ascii
// file is written by the real Exporter into a runtime directory on tmpfs
// (/dev/shm), as /run is on a booted system. Every time is the median of
// several warm runs, except the first Export, which is timed once: it
// renders the whole list into a new file.
//
// Usage: bench_dbus_export [ENTRIES] (default 100000)
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <systemd/sd-bus.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>

#include "bench_util.h"
#include "dbus_service.h"
#include "exporter.h"
#include "imarot/measurement_list.h"
#include "log_store.h"
#include "process.h"
#include "rot_target.h"

namespace {

constexpr int kRuns = 15;
constexpr uint32_t kPage = 4096;

// The service reads only the list in this benchmark; every other call
// reports that it is not part of the measurement.
class ListOnlyModel : public imarotd::ManagerModel {
 public:
  std::string policy_source() const override { return "builtin:tcb"; }
  uint64_t lost_events() const override { return 0; }
  std::vector<imarotd::BackendView> backends() const override { return {}; }
  imarot::Result<imarot::rot::BankRead> read_registers(const std::string&, imarot::HashAlgo,
                                                       const std::vector<uint32_t>&) override {
    return imarot::Error{"the benchmark has no backends", imarotd::kModelInvalidArgument};
  }
  imarot::Result<imarot::rot::BootAggregate> boot_aggregate(const std::string&, imarot::HashAlgo) override {
    return imarot::Error{"the benchmark has no backends", imarotd::kModelInvalidArgument};
  }
  imarot::Result<std::string> reload_policy() override {
    return imarot::Error{"the benchmark has no policy", imarotd::kModelPolicyInvalid};
  }
};

// What die() cleans up: the private bus and the two directories.
pid_t g_bus_pid = -1;
std::string g_runtime_directory;
std::string g_work_directory;

[[noreturn]] void die(const std::string& message) {
  std::fprintf(stderr, "bench_dbus_export: %s\n", message.c_str());
  if (g_bus_pid > 0) imarot::test::stop_child(g_bus_pid, SIGTERM, std::chrono::seconds(5));
  for (const std::string& directory : {g_runtime_directory, g_work_directory}) {
    std::error_code ignored;
    if (!directory.empty()) std::filesystem::remove_all(directory, ignored);
  }
  // NOTE: the service thread may still run; exiting ends it with the process.
  std::_Exit(1);
}

std::vector<imarot::Entry> make_entries(size_t count) {
  const imarot::TemplateDescriptor* tmpl = imarot::find_builtin_template("ima-ng");
  std::vector<imarot::Entry> entries;
  entries.reserve(count);
  for (size_t i = 0; i < count; ++i) {
    imarot::TemplateInput input;
    input.digest_algo = imarot::HashAlgo::sha256;
    std::string seed = fmt::format("content {}", i);
    input.digest = *imarot::hash_bytes(imarot::HashAlgo::sha256,
                                       imarot::ByteView(reinterpret_cast<const uint8_t*>(seed.data()), seed.size()));
    input.name = fmt::format("/usr/lib/x86_64-linux-gnu/imarot-bench/lib{:06}.so.1", i);
    auto entry = imarot::make_entry(10, *tmpl, input);
    if (!entry) die(entry.error().message);
    entries.push_back(std::move(*entry));
  }
  return entries;
}

size_t read_fd(int fd, std::string& buffer) {
  buffer.clear();
  char chunk[1 << 16];
  for (;;) {
    ssize_t n = ::read(fd, chunk, sizeof chunk);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    buffer.append(chunk, static_cast<size_t>(n));
  }
  return buffer.size();
}

double median(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  return values[values.size() / 2];
}

// Times `body` kRuns times after one warm-up run; returns the median in
// milliseconds.
template <typename Body>
double time_ms(Body body) {
  body();
  std::vector<double> times;
  for (int i = 0; i < kRuns; ++i) {
    double start = bench::now_seconds();
    body();
    times.push_back((bench::now_seconds() - start) * 1000.0);
  }
  return median(times);
}

sd_bus* connect(const std::string& address) {
  sd_bus* bus = nullptr;
  int r = sd_bus_new(&bus);
  if (r >= 0) r = sd_bus_set_address(bus, address.c_str());
  if (r >= 0) r = sd_bus_set_bus_client(bus, 1);
  if (r >= 0) r = sd_bus_negotiate_fds(bus, 1);
  if (r >= 0) r = sd_bus_start(bus);
  if (r < 0) die(fmt::format("cannot connect to {}: {}", address, std::strerror(-r)));
  return bus;
}

size_t export_fd(sd_bus* bus, const char* format, std::string& buffer) {
  sd_bus_error error = SD_BUS_ERROR_NULL;
  sd_bus_message* reply = nullptr;
  int r = sd_bus_call_method(bus, imarotd::kBusName, imarotd::kObjectPath, imarotd::kManagerInterface, "Export",
                             &error, &reply, "s", format);
  if (r < 0) die(fmt::format("Export: {}", error.message ? error.message : std::strerror(-r)));
  int fd = -1;
  uint64_t entries = 0;
  if (sd_bus_message_read(reply, "ht", &fd, &entries) < 0) die("Export: unexpected reply");
  size_t size = read_fd(fd, buffer);
  sd_bus_message_unref(reply);
  return size;
}

// Reads every entry in ReadEntries pages and decodes the fields as a
// client does; returns the number of entries.
size_t read_pages(sd_bus* bus, uint64_t total) {
  size_t read = 0;
  while (read < total) {
    sd_bus_error error = SD_BUS_ERROR_NULL;
    sd_bus_message* reply = nullptr;
    int r = sd_bus_call_method(bus, imarotd::kBusName, imarotd::kObjectPath, imarotd::kManagerInterface,
                               "ReadEntries", &error, &reply, "uu", static_cast<uint32_t>(read), kPage);
    if (r < 0) die(fmt::format("ReadEntries: {}", error.message ? error.message : std::strerror(-r)));
    size_t page = 0;
    sd_bus_message_enter_container(reply, 'a', "(ussssayayay)");
    while (sd_bus_message_enter_container(reply, 'r', "ussssayayay") > 0) {
      uint32_t pcr = 0;
      const char* strings[4] = {};
      const void* arrays[3] = {};
      size_t sizes[3] = {};
      sd_bus_message_read(reply, "ussss", &pcr, &strings[0], &strings[1], &strings[2], &strings[3]);
      for (int i = 0; i < 3; ++i) sd_bus_message_read_array(reply, 'y', &arrays[i], &sizes[i]);
      sd_bus_message_exit_container(reply);
      ++page;
    }
    sd_bus_message_unref(reply);
    if (page == 0) die("ReadEntries returned no entries before the end");
    read += page;
  }
  return read;
}

}  // namespace

int main(int argc, char** argv) {
  size_t count = argc > 1 ? std::strtoul(argv[1], nullptr, 10) : 100000;
  if (count == 0) die("ENTRIES must be a positive number");
  std::string dbus_daemon = imarot::test::find_tool("dbus-daemon", "");
  if (dbus_daemon.empty()) die("dbus-daemon not found; install the dbus package");

  imarot::test::TempDir work;
  g_work_directory = work.path();
  char runtime_pattern[] = "/dev/shm/imarot-bench-XXXXXX";
  if (::mkdtemp(runtime_pattern) == nullptr) die("mkdtemp in /dev/shm failed");
  std::string runtime = runtime_pattern;
  g_runtime_directory = runtime;

  // The list: appended to a real LogStore, published by the real Exporter.
  double start = bench::now_seconds();
  std::vector<imarot::Entry> entries = make_entries(count);
  auto log = imarotd::LogStore::open(work.file("state"), "bench-boot");
  if (!log) die(log.error().message);
  for (size_t first = 0; first < entries.size(); first += 10000) {
    std::vector<imarot::Entry> batch(entries.begin() + static_cast<ptrdiff_t>(first),
                                     entries.begin() + static_cast<ptrdiff_t>(std::min(first + 10000, entries.size())));
    if (auto appended = (*log)->append(batch); !appended) die(appended.error().message);
  }
  imarotd::RotTargetOptions rot_options;
  rot_options.state_directory = work.file("state");
  auto rot = imarotd::RotTarget::open({}, **log, rot_options);
  if (!rot) die(rot.error().message);
  auto exporter = imarotd::Exporter::open(runtime, **log, **rot);
  if (!exporter) die(exporter.error().message);
  imarotd::CommittedList committed((*log)->entries());
  std::printf("setup: %zu entries in %.1f s\n", count, bench::now_seconds() - start);

  // A private bus and the service on it, in a thread of its own.
  std::string socket = work.file("bus.sock");
  imarot::test::write_text_file(
      work.file("bus.conf"),
      fmt::format("<!DOCTYPE busconfig PUBLIC \"-//freedesktop//DTD D-BUS Bus Configuration 1.0//EN\"\n"
                  " \"http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd\">\n"
                  "<busconfig><listen>unix:path={}</listen><auth>EXTERNAL</auth>\n"
                  "<policy context=\"default\"><allow user=\"*\"/><allow own=\"*\"/><allow send_destination=\"*\"/>"
                  "<allow receive_sender=\"*\"/></policy></busconfig>\n",
                  socket));
  auto bus_pid = imarot::test::spawn_logged(
      {dbus_daemon, "--config-file=" + work.file("bus.conf"), "--nofork", "--nopidfile"}, work.file("dbus.log"));
  if (!bus_pid) die(bus_pid.error().message);
  g_bus_pid = *bus_pid;
  std::string address = "unix:path=" + socket;
  for (int i = 0; i < 250 && !std::filesystem::exists(socket); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(20));

  std::atomic<bool> stop{false};
  std::atomic<bool> ready{false};
  ListOnlyModel model;
  std::thread service_thread([&] {
    imarotd::DBusServiceOptions options;
    options.bus = address;
    imarotd::DBusService service(options, imarotd::ManagerInfo{"bench", "ima-ng", "sha256", "bench-boot", false},
                                 committed, model);
    service.start();
    ready = service.connected();
    while (!stop) {
      std::vector<struct pollfd> fds;
      service.add_poll_fds(fds);
      int timeout = service.poll_timeout_ms();
      ::poll(fds.data(), fds.size(), timeout < 0 || timeout > 100 ? 100 : timeout);
      service.dispatch(fds);
    }
  });
  for (int i = 0; i < 250 && !ready; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  if (!ready) {
    stop = true;
    service_thread.join();
    die("the service did not start on the private bus: " + imarot::test::read_text_file(work.file("dbus.log")));
  }

  sd_bus* bus = connect(address);
  std::string ascii_path = runtime + "/ascii_runtime_measurements";
  std::string buffer;
  buffer.reserve(64 << 20);

  // The measurements alternate within each round, so that load from other
  // processes on the machine falls on all of them alike.
  auto read_file = [&] {
    int fd = ::open(ascii_path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) die("cannot open " + ascii_path);
    size_t size = read_fd(fd, buffer);
    ::close(fd);
    return size;
  };
  size_t file_bytes = read_file();
  std::string file_copy = buffer;
  double first_start = bench::now_seconds();
  size_t ascii_bytes = export_fd(bus, "ascii", buffer);
  double first_ms = (bench::now_seconds() - first_start) * 1000.0;
  if (buffer != file_copy) die("the ascii export differs from the exported file");
  size_t binary_bytes = export_fd(bus, "binary", buffer);

  // The service sends its last export again while the list has not grown;
  // committing one entry before a run makes it append that entry to the
  // file it keeps ready and seal that file.
  const imarot::Entry extra = entries.back();
  std::vector<double> file_times, unchanged_times, grown_times, binary_times;
  auto timed = [](std::vector<double>& times, auto body) {
    double begin = bench::now_seconds();
    body();
    times.push_back((bench::now_seconds() - begin) * 1000.0);
  };
  for (int round = 0; round < kRuns; ++round) {
    timed(file_times, read_file);
    timed(unchanged_times, [&] { export_fd(bus, "ascii", buffer); });
    committed.append({extra}, committed.size());
    timed(grown_times, [&] { export_fd(bus, "ascii", buffer); });
    timed(binary_times, [&] { export_fd(bus, "binary", buffer); });
  }
  double file_ms = median(file_times);
  double ascii_ms = median(unchanged_times);
  double fresh_ms = median(grown_times);
  double binary_ms = median(binary_times);

  count = committed.size();
  size_t paged = 0;
  double pages_ms = time_ms([&] { paged = read_pages(bus, count); });
  if (paged != count) die(fmt::format("ReadEntries returned {} entries, expected {}", paged, count));

  sd_bus_flush_close_unref(bus);
  stop = true;
  service_thread.join();
  imarot::test::stop_child(*bus_pid, SIGTERM, std::chrono::seconds(5));
  g_bus_pid = -1;
  std::filesystem::remove_all(runtime);

  std::printf("%zu entries (%d added during the runs), median of %d warm runs each\n", count, kRuns, kRuns);
  std::printf("  %-34s %9.2f ms  %6.1f MiB   1.00x\n", "read ascii file (tmpfs)", file_ms, file_bytes / 1048576.0);
  std::printf("  %-34s %9.2f ms  %6.1f MiB  %5.2fx\n", "Export ascii, list unchanged", ascii_ms,
              ascii_bytes / 1048576.0, ascii_ms / file_ms);
  std::printf("  %-34s %9.2f ms  %6.1f MiB  %5.2fx\n", "Export ascii, list grown", fresh_ms,
              ascii_bytes / 1048576.0, fresh_ms / file_ms);
  std::printf("  %-34s %9.2f ms  %6.1f MiB  %5.2fx\n", "Export binary, list grown", binary_ms,
              binary_bytes / 1048576.0, binary_ms / file_ms);
  std::printf("  %-34s %9.2f ms  %6s      %5.2fx\n", fmt::format("ReadEntries ({} per page)", kPage).c_str(), pages_ms,
              "-", pages_ms / file_ms);
  std::printf("  %-34s %9.2f ms  %6.1f MiB  %5.2fx  (once)\n", "first Export ascii (file rendered)", first_ms,
              ascii_bytes / 1048576.0, first_ms / file_ms);
  std::printf("target: Export ascii within 2x of the file read: %s unchanged, %s after growth\n",
              ascii_ms <= 2 * file_ms ? "met" : "NOT met", fresh_ms <= 2 * file_ms ? "met" : "NOT met");
  return 0;
}
