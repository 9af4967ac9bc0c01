// imarotd.json: the daemon's configuration, validated before anything starts.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "imarot/hash.h"
#include "imarot/result.h"
#include "imarot/template.h"

namespace imarotd {

struct BackendConfig {
  std::string name;                   // plugin name: "tpm2", "tsm-mr", ...
  std::optional<uint32_t> register_index;  // default: the backend's own
  nlohmann::json config = nlohmann::json::object();  // passed to the plugin
};

enum class EventSourceChoice { automatic, bpf, fanotify };

struct DaemonConfig {
  std::string source_path;  // the file this was read from, for messages
  std::string policy = "builtin:tcb";  // a file path or "builtin:NAME"
  const imarot::TemplateDescriptor* default_template = nullptr;  // ima-ng
  imarot::HashAlgo hash_algorithm = imarot::HashAlgo::sha256;
  std::string state_directory = "/var/lib/imarotd";
  std::string runtime_directory = "/run/imarotd";
  EventSourceChoice event_source = EventSourceChoice::automatic;
  bool measure_before_use = false;
  // fanotify source: notification events instead of permission events. No
  // opener waits for imarotd, but open flags are unknown (see
  // imarotd.json(5)). Cannot be combined with measure_before_use.
  bool fanotify_notification_events = false;
  uint32_t queue_size = 65536;
  uint32_t hash_threads = 0;  // 0: one per online CPU
  // Ring buffer of the eBPF LSM source in KiB, rounded up to a power of two
  // pages. A full buffer drops records, which become a violation entry.
  uint32_t bpf_ring_buffer_kib = 8192;
  std::string plugin_directory;
  std::vector<std::string> filesystems;  // empty: every filesystem the policy may measure
  std::vector<BackendConfig> backends;
  std::string log_level = "info";
  // The bus the D-Bus service joins: "system", "session", a D-Bus address
  // (unix:path=...), or "none" for no D-Bus service.
  std::string dbus = "system";
};

// Parses and validates a configuration. Errors name the file, the line and
// column of the offending value, what is wrong and what is expected.
imarot::Result<DaemonConfig> parse_config(const std::string& text, const std::string& source_path,
                                          const std::string& default_plugin_directory);
imarot::Result<DaemonConfig> load_config(const std::string& path, const std::string& default_plugin_directory);

}  // namespace imarotd
