// A running imarotd for the D-Bus tests. The harness starts a private
// dbus-daemon on a unix socket in a temporary directory, with a policy like
// the system bus's plus the project's own org.imarot1.conf. It adds swtpm as
// the TPM, a tmpfs for the fanotify source, and the real imarotd binary, and
// stops every process by its pid when it goes away.
#pragma once

#include <sys/types.h>
#include <systemd/sd-bus.h>

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "imarot/result.h"
#include "process.h"
#include "swtpm.h"

namespace imarotd::test {

using imarot::test::CommandResult;
using imarot::test::TempDir;

// Users the bus policy of the test treats differently, all accounts that
// Debian's base-passwd creates: dbus-daemon closes connections of uids
// without an account. The reader group of org.imarot1.conf ("imarot") is
// replaced by nogroup, the primary group of `nobody`, because dbus-daemon
// looks group membership up in the user database and a test must not add a
// group to the machine.
inline constexpr uid_t kReaderUid = 65534;    // the user nobody, in the reader group
inline constexpr uid_t kStrangerUid = 1;      // daemon: not in the reader group
inline constexpr uid_t kUnrestrictedUid = 2;  // bin: the test bus lets it call anything
inline constexpr const char* kUnrestrictedUser = "bin";

struct HarnessOptions {
  bool start_bus = true;
  bool tpm = true;  // a tpm2 backend on swtpm; none when false
  std::string policy = "measure func=FILE_CHECK mask=MAY_READ\n";
  // "dbus" in imarotd.json; empty means the harness's bus.
  std::string dbus_setting;
};

class DaemonHarness {
 public:
  DaemonHarness() = default;
  ~DaemonHarness();
  DaemonHarness(const DaemonHarness&) = delete;
  DaemonHarness& operator=(const DaemonHarness&) = delete;

  // Starts the bus, swtpm, the mount and imarotd, and waits until imarotd
  // owns org.imarot1 (or, without a bus, until its list has an entry).
  imarot::Result<void> start(HarnessOptions options = {});
  // Stops imarotd only, leaving the bus running.
  void stop_daemon();
  // Stops imarotd and starts it again with the same configuration, state
  // directory and TPM, as after a restart of the service.
  imarot::Result<void> restart_daemon();
  // Starts the private dbus-daemon. start() calls it unless
  // HarnessOptions::start_bus is false.
  imarot::Result<void> start_bus();

  std::string address() const { return "unix:path=" + dir_->file("bus.sock"); }
  std::string file(const std::string& name) const { return dir_->file(name); }
  std::string mount_point() const { return dir_->file("mnt"); }
  std::string policy_path() const { return dir_->file("imarotd.policy"); }
  std::string runtime_directory() const { return dir_->file("run"); }
  std::string durable_list() const { return dir_->file("state/current.bin"); }
  std::string daemon_log() const;
  pid_t daemon_pid() const { return imarotd_pid_; }
  bool daemon_running();
  const imarot::test::Swtpm* swtpm() const { return swtpm_.get(); }

  // Creates `name` on the test mount with `content` and reads it as root,
  // which the policy measures.
  void measure_file(const std::string& name, const std::string& content);

 private:
  imarot::Result<void> write_daemon_config(const HarnessOptions& options);
  imarot::Result<void> wait_for_daemon(const HarnessOptions& options);

  HarnessOptions options_;
  std::unique_ptr<TempDir> dir_;
  std::unique_ptr<imarot::test::Swtpm> swtpm_;
  pid_t dbus_pid_ = -1;
  pid_t imarotd_pid_ = -1;
  bool mounted_ = false;
};

// A reply of a method call made by the test on its own connection.
struct Reply {
  sd_bus_message* message = nullptr;
  sd_bus_error error = SD_BUS_ERROR_NULL;
  int r = 0;

  Reply() = default;
  Reply(const Reply&) = delete;
  Reply& operator=(const Reply&) = delete;
  ~Reply();
  bool ok() const { return r >= 0; }
  std::string error_name() const { return error.name != nullptr ? error.name : ""; }
  std::string error_message() const { return error.message != nullptr ? error.message : ""; }
};

// The test's own sd-bus connection to the harness's bus, as root.
class TestBus {
 public:
  explicit TestBus(const std::string& address);
  ~TestBus();
  TestBus(const TestBus&) = delete;
  TestBus& operator=(const TestBus&) = delete;

  sd_bus* get() const { return bus_; }
  bool connected() const { return bus_ != nullptr; }
  // Calls a method of org.imarot1.Manager; `append` adds the arguments.
  std::unique_ptr<Reply> call(const std::string& member, const std::function<int(sd_bus_message*)>& append = {});
  std::unique_ptr<Reply> call_interface(const std::string& interface, const std::string& member,
                                        const std::function<int(sd_bus_message*)>& append = {});
  uint64_t entry_count();
  // Runs sd_bus_process and waits until `done` returns true or `timeout`
  // passes; returns `done()`.
  bool process_until(const std::function<bool()>& done, std::chrono::milliseconds timeout);

 private:
  sd_bus* bus_ = nullptr;
};

// Runs a program as `uid` (with gid `uid` and no supplementary groups)
// through setpriv.
CommandResult run_as(uid_t uid, const std::vector<std::string>& argv);

// Runs busctl against `address` with `arguments`.
CommandResult busctl(const std::string& address, const std::vector<std::string>& arguments);

// Waits until `done` returns true, polling every 20 ms; returns done().
bool wait_until(const std::function<bool()>& done, std::chrono::milliseconds timeout);

std::string source_path(const std::string& relative);

}  // namespace imarotd::test
