// Several roots of trust extended from one measurement list: each entry goes
// into every backend in list order, and a backend that fails keeps its
// entries queued until it recovers.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "imarot/rot.h"

namespace imarot::rot {

// One backend of the configuration.
struct BackendSpec {
  std::string backend;                // plugin name
  std::string id;                     // unique name in status and logs; defaults to `backend`
  std::optional<uint32_t> register_index;  // defaults to the backend's default register
  std::string config_json = "{}";     // the plugin's own section
};

// Parses the root-of-trust section of a config:
//   {"plugin_dir": "...", "backends": [{"backend": "tpm2", "id": "vtpm",
//     "register": 10, "config": {"tcti": "device:/dev/tpmrm0"}}, ...]}
// A bare array of backend objects is accepted too. Errors name `source`, the
// line and column of a JSON syntax error, or the offending key.
struct RotConfig {
  std::optional<std::string> plugin_dir;
  std::vector<BackendSpec> backends;
};
Result<RotConfig> parse_rot_config(std::string_view json_text, std::string_view source);

enum class BackendState {
  ok,        // extending
  degraded,  // the last operation failed; retried with backoff, entries stay queued
  refused,   // stopped for good: configuration error, or the register matches no state of the list
};
std::string_view backend_state_name(BackendState state);

struct BackendStatus {
  std::string id;
  std::string backend;
  uint32_t register_index = 0;
  BackendState state = BackendState::ok;
  // List index of the last entry known to be in the register; nullopt when
  // none has been extended since the set was opened.
  std::optional<uint64_t> last_extended;
  uint64_t pending = 0;  // entries submitted but not yet in this backend
  uint64_t extends = 0;  // successful extend calls
  uint64_t failures = 0;  // failed operations, extends and reconciling reads
  // Times the register was found one entry ahead after a failed extend: the
  // device had applied it before the connection dropped.
  uint64_t applied_in_doubt = 0;
  // Times the register was found at an earlier entry of the list: the device
  // lost extends (for example a TPM that resumed older saved state), and the
  // lost entries were extended again.
  uint64_t rollbacks = 0;
  std::string last_error;
  std::optional<std::chrono::steady_clock::time_point> next_retry;
};

struct BackendSetOptions {
  std::string plugin_dir;  // empty: default_plugin_dir()
  std::string securityfs_root = "/sys/kernel/security";
  // List index of the first entry submit() will receive, so that indexes
  // match the durable log's.
  uint64_t first_index = 0;
  std::chrono::milliseconds initial_backoff{50};
  std::chrono::milliseconds max_backoff{5000};
  // Number of recent entries kept per backend to reconcile a register that
  // lost its latest extends. A register further behind is refused.
  size_t history = 1024;
  // A backend that has not been used for this long has its register read
  // back before its next extend. Some transports (tpm2-tss's swtpm TCTI)
  // open a connection per command, so a device that restarted from older
  // saved state between two commands shows no error. The read-back finds
  // such a restart before anything is extended on top. Zero reads back
  // before every extend.
  // NOTE: a restart that completes within this gap while extends are
  // flowing is found only by the next read-back, by which time the
  // register no longer matches the list and the backend is refused.
  std::chrono::milliseconds verify_after_idle{20};
};

class BackendSet {
 public:
  using Clock = std::chrono::steady_clock;

  explicit BackendSet(BackendSetOptions options);
  BackendSet(BackendSet&&) noexcept;
  BackendSet& operator=(BackendSet&&) noexcept;
  ~BackendSet();

  // Loads and adds every backend of `specs`; fails on the first that cannot
  // be used.
  static RotResult<BackendSet> open(const std::vector<BackendSpec>& specs, BackendSetOptions options);

  // Adds an open backend that will extend `register_index` (its default
  // register when nullopt). Rejects a register the backend cannot extend, a
  // register kernel IMA extends on a shared TPM, a duplicate id, and a
  // backend added after entries were submitted. The register's current value
  // becomes the starting point: entries are extended on top of it.
  RotResult<void> add(std::string id, std::unique_ptr<RotBackend> backend, std::optional<uint32_t> register_index);

  // Queues an entry for every backend and returns its list index. Nothing is
  // extended until pump() or drain().
  uint64_t submit(Entry entry);

  // Extends every queued entry into every backend that is ok, in list order,
  // after retrying degraded backends whose backoff has expired and reading
  // back the register of backends idle for verify_after_idle. Never sleeps.
  void pump();

  // Pumps, sleeping between retries, until every backend that is not refused
  // has extended every submitted entry, or `timeout` passes. Returns true
  // when caught up.
  bool drain(std::chrono::milliseconds timeout);

  // The earliest time a degraded backend is due for a retry.
  std::optional<Clock::time_point> next_retry() const;

  std::vector<BackendStatus> status() const;
  size_t size() const;
  RotBackend& backend(size_t index);
  uint64_t next_index() const;

 private:
  struct Member;
  struct Queued;

  void extend_one(Member& member, uint64_t index);
  void reconcile(Member& member);
  void fail(Member& member, const RotError& error, std::string_view operation);
  void refuse(Member& member, std::string message);
  std::string last_extended_text(const Member& member) const;
  // The extend digests of entry `index` in `banks`, cached per entry.
  Result<std::vector<Digest>> entry_digests(uint64_t index, const std::vector<HashAlgo>& banks);
  void trim();

  BackendSetOptions options_;
  std::vector<std::unique_ptr<Member>> members_;
  std::deque<Queued> queue_;
  uint64_t queue_base_ = 0;  // list index of queue_.front()
  uint64_t next_index_ = 0;
};

}  // namespace imarot::rot
