// rotctl's connection to a running imarotd over D-Bus (sd-bus): the calls
// of the org.imarot1.Manager interface, with errors turned into rotctl's
// exit codes.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "imarot/measurement_list.h"
#include "imarot/replay.h"
#include "rotctl.h"

typedef struct sd_bus sd_bus;

namespace rotctl {

// Adds --bus to a subcommand that talks to the daemon.
void add_bus_option(CLI::App* command, std::string& bus);

struct RemoteBackend {
  std::string id;
  std::string plugin;
  std::string register_kind;
  uint32_t register_index = 0;
  uint32_t register_count = 0;
  std::vector<std::string> banks;
  std::string state;
  uint64_t pending = 0;
  std::string last_error;
};

struct DaemonStatus {
  std::vector<RemoteBackend> backends;
  std::string event_source;
  std::string template_name;
  std::string hash_algorithm;
  std::string boot_id;
  std::string policy_source;
  bool measure_before_use = false;
  uint64_t entries = 0;
  uint64_t violations = 0;
  uint64_t lost_events = 0;
};

// One backend's part of the daemon's Verify result.
struct RemoteVerifyBackend {
  std::string id;
  std::string register_kind;
  uint32_t register_index = 0;
  std::string state;
  imarot::VerifyReport report;
};

struct RemoteVerify {
  bool ok = false;
  uint64_t entries = 0;  // entries of the list the daemon replayed
  std::vector<RemoteVerifyBackend> backends;
};

// A D-Bus connection to imarotd. Every failure ends the program through
// fail(): kExitUnreachable when the bus or the daemon cannot be reached or
// the caller is denied, kExitUsage for arguments the daemon rejects.
class DaemonClient {
 public:
  // Connects to `bus`: "system", "session" or a D-Bus address.
  explicit DaemonClient(const std::string& bus);
  ~DaemonClient();
  DaemonClient(const DaemonClient&) = delete;
  DaemonClient& operator=(const DaemonClient&) = delete;

  DaemonStatus status();
  // Entries from list index `offset` (zero-based); fewer than `count` at
  // the end of the list or when the reply size limit is reached.
  std::vector<imarot::Entry> read_entries(uint64_t offset, uint32_t count);
  // Every entry from `offset` to `end`, read in pages.
  std::vector<imarot::Entry> read_range(uint64_t offset, uint64_t end);
  // The whole list in "binary" or "ascii" as a sealed memfd, and its number
  // of entries. The caller owns the descriptor.
  std::pair<int, uint64_t> export_list(const std::string& format);
  // Register values of one bank; nullopt when the bank is not allocated.
  std::optional<std::vector<std::pair<uint32_t, imarot::Digest>>> read_registers(
      const std::string& backend, imarot::HashAlgo bank, const std::vector<uint32_t>& registers);
  std::pair<std::string, std::string> boot_aggregate(const std::string& backend, const std::string& ima_hash);
  // Asks the daemon to replay its list against its backends' registers
  // (Verify). An empty `backend`, `banks` or `pcr` checks every one.
  RemoteVerify verify(const std::string& backend, const std::vector<std::string>& banks, std::optional<uint32_t> pcr);

  // Calls `on_count` with the count of each EntriesCommitted signal until it
  // returns false. Subscribe first, then read, so that no signal is missed.
  void subscribe_entries_committed();
  void wait_entries_committed(const std::function<bool(uint64_t)>& on_count);

 private:
  sd_bus* bus_ = nullptr;
  std::string bus_name_;
  std::vector<uint64_t> received_counts_;
  void* match_slot_ = nullptr;
};

// Writes every byte of `fd` from offset 0 to standard output.
void copy_fd_to_stdout(int fd);

// Prints `list` from entry `first` (zero-based) in ascii, binary or json.
// `base` is the list index of list.entries[0], used for the JSON "index";
// `json_lines` prints one compact JSON object per line instead of an array.
// Defined in log_command.cpp.
void print_entries(const imarot::ParsedList& list, size_t first, const std::string& format, size_t base,
                   bool json_lines);

// Reads every entry from the daemon as a ParsedList with a sha1 column.
imarot::ParsedList daemon_list(DaemonClient& client);

// The backend `id` of the daemon, or with an empty `id` the first whose
// plugin is `plugin` (any backend when `plugin` is empty). Ends the program
// with kExitUsage naming the daemon's backends when there is none.
RemoteBackend find_remote_backend(const DaemonStatus& status, const std::string& id, const std::string& plugin);

void add_status_command(CLI::App& app);

}  // namespace rotctl
