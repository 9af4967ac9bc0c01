#include "daemon_harness.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <thread>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

namespace imarotd::test {
namespace {

using namespace std::chrono_literals;

// The parts of the system bus's policy (dbus 1.14, system.conf) that decide
// who may call what: method calls are denied unless a policy allows them,
// replies and signals flow. The service's own policy is included after it.
constexpr const char* kBusConfig = R"(<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-BUS Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <listen>unix:path={socket}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <deny own="*"/>
    <deny send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_requested_reply="true" send_type="method_return"/>
    <allow send_requested_reply="true" send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_type="signal"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Introspectable"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Properties"/>
    <deny send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus"
          send_member="UpdateActivationEnvironment"/>
  </policy>
  <include>{service_policy}</include>
  <!-- A bus policy that lets one unprivileged uid call everything, so that
       the daemon's own credential check is what stands in its way. -->
  <policy user="{unrestricted}">
    <allow send_destination="org.imarot1"/>
  </policy>
</busconfig>
)";

std::string replace_all(std::string text, const std::string& from, const std::string& to) {
  for (size_t at = text.find(from); at != std::string::npos; at = text.find(from, at + to.size())) {
    text.replace(at, from.size(), to);
  }
  return text;
}

}  // namespace

std::string source_path(const std::string& relative) { return std::string(IMAROT_SOURCE_DIR) + "/" + relative; }

bool wait_until(const std::function<bool()>& done, std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!done()) {
    if (std::chrono::steady_clock::now() >= deadline) return done();
    std::this_thread::sleep_for(20ms);
  }
  return true;
}

CommandResult run_as(uid_t uid, const std::vector<std::string>& argv) {
  std::vector<std::string> command = {SETPRIV_PATH, fmt::format("--reuid={}", uid), fmt::format("--regid={}", uid),
                                      "--clear-groups"};
  command.insert(command.end(), argv.begin(), argv.end());
  return imarot::test::run_command(command, 60s);
}

CommandResult busctl(const std::string& address, const std::vector<std::string>& arguments) {
  std::vector<std::string> command = {BUSCTL_PATH, "--address=" + address};
  command.insert(command.end(), arguments.begin(), arguments.end());
  return imarot::test::run_command(command, 60s);
}

DaemonHarness::~DaemonHarness() {
  stop_daemon();
  if (dbus_pid_ > 0) imarot::test::stop_child(dbus_pid_, SIGTERM, 5s);
  swtpm_.reset();
  if (mounted_) ::umount2(mount_point().c_str(), MNT_DETACH);
}

std::string DaemonHarness::daemon_log() const { return imarot::test::read_text_file(dir_->file("imarotd.log")); }

bool DaemonHarness::daemon_running() { return imarotd_pid_ > 0 && imarot::test::child_running(imarotd_pid_); }

void DaemonHarness::stop_daemon() {
  if (imarotd_pid_ > 0) imarot::test::stop_child(imarotd_pid_, SIGTERM, 10s);
  imarotd_pid_ = -1;
}

imarot::Result<void> DaemonHarness::start(HarnessOptions options) {
  if (::geteuid() != 0) {
    return imarot::Error{"the D-Bus tests need root: fanotify, mount and running programs as other users"};
  }
  dir_ = std::make_unique<TempDir>();
  // Programs run as other users must reach the bus socket and the mount.
  ::chmod(dir_->path().c_str(), 0755);

  std::string mnt = mount_point();
  ::mkdir(mnt.c_str(), 0755);
  if (::mount("imarotd-dbus-test", mnt.c_str(), "tmpfs", 0, "size=64m,mode=0755") != 0) {
    return imarot::Error{fmt::format("mounting a tmpfs on {} failed: {}", mnt, std::strerror(errno))};
  }
  mounted_ = true;

  if (options.start_bus) {
    if (auto bus = start_bus(); !bus) return bus;
  }
  if (options.tpm) {
    ::setenv("TSS2_LOG", "all+none", 0);
    auto tools = imarot::test::SwtpmTools::find();
    if (!tools) return tools.error();
    std::string tpm_dir = dir_->file("tpm");
    ::mkdir(tpm_dir.c_str(), 0700);
    auto swtpm = imarot::test::Swtpm::start(*tools, tpm_dir, imarot::test::SwtpmOptions{.pcr_banks = "sha1,sha256"});
    if (!swtpm) return swtpm.error();
    swtpm_ = std::move(*swtpm);
  }

  imarot::test::write_text_file(policy_path(), options.policy);
  if (auto written = write_daemon_config(options); !written) return written;
  options_ = options;
  auto pid = imarot::test::spawn_logged({IMAROTD_PATH, "--config", dir_->file("imarotd.json")},
                                        dir_->file("imarotd.log"));
  if (!pid) return pid.error();
  imarotd_pid_ = *pid;
  return wait_for_daemon(options);
}

imarot::Result<void> DaemonHarness::restart_daemon() {
  stop_daemon();
  auto pid = imarot::test::spawn_logged({IMAROTD_PATH, "--config", dir_->file("imarotd.json")},
                                        dir_->file("imarotd.log"));
  if (!pid) return pid.error();
  imarotd_pid_ = *pid;
  return wait_for_daemon(options_);
}

imarot::Result<void> DaemonHarness::start_bus() {
  std::string service_policy = imarot::test::read_text_file(source_path("systemd/org.imarot1.conf"));
  if (service_policy.find("group=\"imarot\"") == std::string::npos) {
    return imarot::Error{"systemd/org.imarot1.conf has no policy for the group imarot"};
  }
  imarot::test::write_text_file(dir_->file("org.imarot1.conf"),
                                replace_all(service_policy, "group=\"imarot\"", "group=\"nogroup\""));
  std::string config = kBusConfig;
  config = replace_all(config, "{socket}", dir_->file("bus.sock"));
  config = replace_all(config, "{service_policy}", dir_->file("org.imarot1.conf"));
  config = replace_all(config, "{unrestricted}", kUnrestrictedUser);
  imarot::test::write_text_file(dir_->file("bus.conf"), config);

  auto pid = imarot::test::spawn_logged(
      {DBUS_DAEMON_PATH, "--config-file=" + dir_->file("bus.conf"), "--nofork", "--nopidfile"},
      dir_->file("dbus.log"));
  if (!pid) return pid.error();
  dbus_pid_ = *pid;
  bool up = wait_until(
      [&] {
        TestBus bus(address());
        return bus.connected();
      },
      10s);
  if (!up) {
    return imarot::Error{fmt::format("dbus-daemon did not accept connections on {}: {}", address(),
                                     imarot::test::read_text_file(dir_->file("dbus.log")))};
  }
  return imarot::Ok{};
}

imarot::Result<void> DaemonHarness::write_daemon_config(const HarnessOptions& options) {
  nlohmann::json config;
  config["policy"] = policy_path();
  config["state_directory"] = dir_->file("state");
  config["runtime_directory"] = runtime_directory();
  config["event_source"] = "fanotify";
  config["filesystems"] = {mount_point()};
  config["plugin_directory"] = IMAROT_PLUGIN_BUILD_DIR;
  config["hash_threads"] = 2;
  config["dbus"] = options.dbus_setting.empty() ? address() : options.dbus_setting;
  config["backends"] = nlohmann::json::array();
  if (swtpm_) config["backends"].push_back({{"name", "tpm2"}, {"config", {{"tcti", swtpm_->tcti()}}}});
  imarot::test::write_text_file(dir_->file("imarotd.json"), config.dump(2));
  return imarot::Ok{};
}

imarot::Result<void> DaemonHarness::wait_for_daemon(const HarnessOptions& options) {
  bool serving_bus = options.start_bus && options.dbus_setting.empty();
  bool ready = wait_until(
      [&] {
        if (!daemon_running()) return true;
        if (serving_bus) {
          TestBus bus(address());
          if (!bus.connected()) return false;
          auto reply = bus.call_interface("org.freedesktop.DBus.Peer", "Ping");
          return reply->ok();
        }
        return !imarot::test::read_text_file(runtime_directory() + "/ascii_runtime_measurements").empty();
      },
      30s);
  if (!daemon_running()) return imarot::Error{"imarotd exited during start: " + daemon_log()};
  if (!ready) return imarot::Error{"imarotd did not become ready within 30 s: " + daemon_log()};
  return imarot::Ok{};
}

void DaemonHarness::measure_file(const std::string& name, const std::string& content) {
  std::string path = mount_point() + "/" + name;
  imarot::test::write_text_file(path, content);
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return;
  char buffer[256];
  while (::read(fd, buffer, sizeof buffer) > 0) {
  }
  ::close(fd);
}

Reply::~Reply() {
  sd_bus_message_unref(message);
  sd_bus_error_free(&error);
}

TestBus::TestBus(const std::string& address) {
  sd_bus* bus = nullptr;
  int r = sd_bus_new(&bus);
  if (r >= 0) r = sd_bus_set_address(bus, address.c_str());
  if (r >= 0) r = sd_bus_set_bus_client(bus, 1);
  if (r >= 0) r = sd_bus_negotiate_fds(bus, 1);
  if (r >= 0) r = sd_bus_start(bus);
  if (r < 0) {
    sd_bus_unref(bus);
    return;
  }
  bus_ = bus;
}

TestBus::~TestBus() { sd_bus_flush_close_unref(bus_); }

std::unique_ptr<Reply> TestBus::call(const std::string& member, const std::function<int(sd_bus_message*)>& append) {
  return call_interface("org.imarot1.Manager", member, append);
}

std::unique_ptr<Reply> TestBus::call_interface(const std::string& interface, const std::string& member,
                                               const std::function<int(sd_bus_message*)>& append) {
  auto reply = std::make_unique<Reply>();
  sd_bus_message* call = nullptr;
  reply->r = sd_bus_message_new_method_call(bus_, &call, "org.imarot1", "/org/imarot1", interface.c_str(),
                                            member.c_str());
  if (reply->r >= 0 && append) reply->r = append(call);
  if (reply->r >= 0) reply->r = sd_bus_call(bus_, call, 30 * 1000 * 1000, &reply->error, &reply->message);
  sd_bus_message_unref(call);
  return reply;
}

uint64_t TestBus::entry_count() {
  uint64_t count = 0;
  sd_bus_error error = SD_BUS_ERROR_NULL;
  int r = sd_bus_get_property_trivial(bus_, "org.imarot1", "/org/imarot1", "org.imarot1.Manager", "EntryCount",
                                      &error, 't', &count);
  sd_bus_error_free(&error);
  return r < 0 ? 0 : count;
}

bool TestBus::process_until(const std::function<bool()>& done, std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!done()) {
    auto now = std::chrono::steady_clock::now();
    if (now >= deadline) return done();
    int r = sd_bus_process(bus_, nullptr);
    if (r < 0) return done();
    if (r > 0) continue;
    auto left = std::chrono::duration_cast<std::chrono::microseconds>(deadline - now);
    sd_bus_wait(bus_, static_cast<uint64_t>(left.count()));
  }
  return true;
}

}  // namespace imarotd::test
