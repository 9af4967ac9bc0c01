// imarotd's D-Bus service: the name org.imarot1 with the object /org/imarot1
// and the interface org.imarot1.Manager (properties, methods and the
// EntriesCommitted signal), served with sd-bus from the daemon's poll loop.
// docs/dbus-api.md describes the interface for callers.
#pragma once

#include <poll.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "committed_list.h"
#include "list_file.h"
#include "imarot/hash.h"
#include "imarot/result.h"
#include "imarot/rot.h"

typedef struct sd_bus sd_bus;
typedef struct sd_bus_slot sd_bus_slot;
typedef struct sd_bus_message sd_bus_message;

namespace imarotd {

struct LiveVerifyRequest;
struct BackendReference;
struct LiveVerifyResult;

inline constexpr const char* kBusName = "org.imarot1";
inline constexpr const char* kObjectPath = "/org/imarot1";
inline constexpr const char* kManagerInterface = "org.imarot1.Manager";

// Error names the service returns besides the standard
// org.freedesktop.DBus.Error.InvalidArgs and AccessDenied.
inline constexpr const char* kErrorUnallocated = "org.imarot1.Error.BankUnallocated";
inline constexpr const char* kErrorBackendFailed = "org.imarot1.Error.BackendFailed";
inline constexpr const char* kErrorPolicyInvalid = "org.imarot1.Error.PolicyInvalid";
inline constexpr const char* kErrorFailed = "org.imarot1.Error.Failed";
inline constexpr const char* kErrorBusy = "org.imarot1.Error.Busy";

// Kinds of failure a ManagerModel reports in imarot::Error::code, each sent
// as its own D-Bus error name.
enum ModelErrorCode : int {
  kModelInvalidArgument = 1,  // org.freedesktop.DBus.Error.InvalidArgs
  kModelUnallocated = 2,      // kErrorUnallocated
  kModelBackendFailed = 3,    // kErrorBackendFailed
  kModelPolicyInvalid = 4,    // kErrorPolicyInvalid
};

// One root of trust as the Backends property lists it.
struct BackendView {
  std::string id;
  std::string plugin;
  std::string register_kind;  // "PCR", "RTMR", ...
  uint32_t register_index = 0;
  uint32_t register_count = 0;
  std::vector<imarot::HashAlgo> banks;  // the banks an extend covers
  std::string state;                    // ok, degraded or refused
  uint64_t pending = 0;                 // entries submitted but not yet extended into it
  std::string last_error;
  bool operator==(const BackendView&) const = default;
};

// Values fixed for the life of the daemon process.
struct ManagerInfo {
  std::string event_source;
  std::string template_name;
  std::string hash_algorithm;
  std::string boot_id;
  bool measure_before_use = false;
};

// The data and actions of the running daemon that the service uses, apart
// from the list itself. Called on the daemon's main thread only.
class ManagerModel {
 public:
  virtual ~ManagerModel() = default;
  virtual std::string policy_source() const = 0;
  virtual uint64_t lost_events() const = 0;
  virtual std::vector<BackendView> backends() const = 0;
  // Reads `registers` of `bank` from the backend with id `backend`.
  virtual imarot::Result<imarot::rot::BankRead> read_registers(const std::string& backend, imarot::HashAlgo bank,
                                                               const std::vector<uint32_t>& registers) = 0;
  virtual imarot::Result<imarot::rot::BootAggregate> boot_aggregate(const std::string& backend,
                                                                    imarot::HashAlgo ima_hash) = 0;
  // Loads the configured policy again and returns its source.
  virtual imarot::Result<std::string> reload_policy() = 0;
};

struct DBusServiceOptions {
  // "system", "session", or a D-Bus address such as unix:path=/run/x.sock.
  std::string bus = "system";
  // EntriesCommitted and the counter PropertiesChanged are sent at most
  // once per interval, carrying the count at that time.
  std::chrono::milliseconds signal_interval{250};
  // How often the Backends property is compared for a PropertiesChanged.
  std::chrono::milliseconds backends_interval{1000};
  // Delay between attempts to reach a bus that is not reachable. Short,
  // because at boot imarotd starts before dbus.service and rotctl cannot
  // reach it until it has connected, while a failed connect costs little.
  std::chrono::milliseconds reconnect_interval{2000};
  // Upper bounds of one ReadEntries reply.
  uint32_t max_read_count = 4096;
  size_t max_read_bytes = 8 << 20;
  // The export files of a format (the last one sent and the next one,
  // kept current by appends) are kept this long after the last Export call
  // for that format.
  std::chrono::milliseconds export_cache_time{30000};
};

class DBusService {
 public:
  DBusService(DBusServiceOptions options, ManagerInfo info, const CommittedList& list, ManagerModel& model);
  ~DBusService();
  DBusService(const DBusService&) = delete;
  DBusService& operator=(const DBusService&) = delete;

  // Connects to the bus and requests the name. A bus that cannot be reached
  // or a name that cannot be had is logged as a warning and tried again
  // every reconnect_interval; the daemon keeps measuring meanwhile.
  void start();

  // Poll integration: the descriptors to wait on, appended to `fds`; the
  // poll timeout in milliseconds (-1 for none); and the work after poll
  // returns, given the revents of the descriptors added.
  void add_poll_fds(std::vector<struct pollfd>& fds) const;
  int poll_timeout_ms() const;
  void dispatch(std::span<const struct pollfd> fds);

  // Records that the list now has `count` entries. Safe from any thread;
  // the signal itself is sent from dispatch().
  void entries_committed(uint64_t count);
  // Sends PropertiesChanged for PolicySource after a reload by other means.
  void policy_changed();

  bool connected() const { return bus_ != nullptr; }

 private:
  using Clock = std::chrono::steady_clock;

  bool connect();
  void disconnect(const std::string& reason);
  void process_bus();
  void flush_signals(Clock::time_point now);
  void check_backends(Clock::time_point now);

  friend struct ServiceCallbacks;

  DBusServiceOptions options_;
  ManagerInfo info_;
  const CommittedList& list_;
  ManagerModel& model_;

  sd_bus* bus_ = nullptr;
  sd_bus_slot* vtable_slot_ = nullptr;
  int wake_fd_ = -1;  // eventfd written by entries_committed()

  std::atomic<uint64_t> committed_count_{0};
  uint64_t signaled_count_ = 0;
  Clock::time_point last_signal_{};
  Clock::time_point next_backends_check_{};
  Clock::time_point next_connect_{};
  std::vector<BackendView> last_backends_;
  bool warned_unreachable_ = false;

  // Work that would stall the poll loop (building export files, replaying
  // the list for Verify) runs on one worker thread. A job returns the step
  // that completes it, which dispatch() runs on the main thread.
  using Completion = std::function<void()>;
  void run_in_background(std::function<Completion()> job);
  void run_completions();
  void worker_loop();
  std::thread worker_;
  std::mutex worker_mutex_;
  std::condition_variable worker_wake_;
  std::deque<std::function<Completion()>> jobs_;
  std::vector<Completion> completions_;
  bool worker_stop_ = false;

  // Method calls whose reply is sent later, by id. A disconnect drops them,
  // and a completion whose call is gone sends nothing.
  uint64_t next_call_id_ = 1;
  std::map<uint64_t, sd_bus_message*> held_calls_;
  uint64_t hold_call(sd_bus_message* m);
  sd_bus_message* take_call(uint64_t id);
  void drop_held_calls();

  // Export files of one format. `sealed` is the last file sent, and it is
  // sent again while the list has not grown. `next` is private to the daemon and
  // is extended as the list grows, so that an Export after growth only
  // appends the newest entries and seals it. After a file is sent, the
  // worker prepares a new `next` from a copy of an earlier file. Both files
  // are dropped export_cache_time after the last Export of the format.
  struct ExportFiles {
    std::optional<ListFile> sealed;
    std::optional<ListFile> next;
    bool preparing = false;       // a worker job owns `next`
    std::vector<uint64_t> waiting;  // held Export calls
    Clock::time_point expires{};
  };
  ExportFiles exports_[2];  // indexed by CommittedList::Format
  void export_list(sd_bus_message* m, CommittedList::Format format);
  // Replies to the held Export call `id` with the current list, or keeps it
  // waiting until the worker has prepared a file.
  void serve_export(uint64_t id, CommittedList::Format format);
  // Starts the worker on a new `next` file, copied from `retired` (the file
  // sent before the current one) or from `sealed`, or rendered anew.
  void prepare_export(CommittedList::Format format, std::optional<ListFile> retired = std::nullopt);
  void maintain_exports(Clock::time_point now);

  void finish_export_preparation(CommittedList::Format format, std::shared_ptr<ListFile> next, int error_code);
  void reply_held_error(uint64_t id, const std::string& failure, int code);
  size_t outstanding_jobs_ = 0;  // jobs whose completion has not run yet

  // Replies to Verify once the worker has replayed the list.
  void verify(sd_bus_message* m, LiveVerifyRequest request, std::vector<BackendReference> references);
  void reply_verify(uint64_t id, const LiveVerifyResult& result);
  size_t verify_calls_ = 0;  // Verify calls whose replay has not finished
};

// Opens the bus that `bus` names: "system", "session", or an address.
// Returns a negative errno on failure.
int open_bus(const std::string& bus, sd_bus** out);

}  // namespace imarotd
