// rotctl status: the running daemon's state, read from its D-Bus properties.
#include <iostream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "daemon_client.h"
#include "rotctl.h"

namespace rotctl {
namespace {

struct StatusOptions {
  std::string bus = "system";
  bool json = false;
};

std::string join(const std::vector<std::string>& items) {
  std::string text;
  for (const auto& item : items) text += (text.empty() ? "" : ",") + item;
  return text;
}

void print_human(const DaemonStatus& status, const std::string& bus) {
  std::string text = fmt::format("imarotd on the {} bus\n", bus);
  text += fmt::format("  event source:       {}\n", status.event_source);
  text += fmt::format("  policy:             {}\n", status.policy_source);
  text += fmt::format("  template:           {}\n", status.template_name);
  text += fmt::format("  hash algorithm:     {}\n", status.hash_algorithm);
  text += fmt::format("  measure before use: {}\n", status.measure_before_use ? "yes" : "no");
  text += fmt::format("  boot id:            {}\n", status.boot_id);
  text += fmt::format("  entries:            {} ({}, {})\n", status.entries,
                      count_of(status.violations, "violation", "violations"),
                      count_of(status.lost_events, "lost event", "lost events"));
  text += fmt::format("backends: {}\n", status.backends.empty() ? "none" : std::to_string(status.backends.size()));
  for (const auto& backend : status.backends) {
    text += fmt::format("  {} ({}): {} {}, banks {}, {}, {} pending\n", backend.id, backend.plugin,
                        backend.register_kind.empty() ? "register" : backend.register_kind, backend.register_index,
                        backend.banks.empty() ? "unknown" : join(backend.banks), backend.state, backend.pending);
    if (!backend.last_error.empty()) text += fmt::format("    last error: {}\n", backend.last_error);
  }
  std::cout << text;
}

void print_json(const DaemonStatus& status) {
  nlohmann::ordered_json out;
  out["event_source"] = status.event_source;
  out["policy"] = status.policy_source;
  out["template"] = status.template_name;
  out["hash_algorithm"] = status.hash_algorithm;
  out["measure_before_use"] = status.measure_before_use;
  out["boot_id"] = status.boot_id;
  out["entries"] = status.entries;
  out["violations"] = status.violations;
  out["lost_events"] = status.lost_events;
  out["backends"] = nlohmann::ordered_json::array();
  for (const auto& backend : status.backends) {
    out["backends"].push_back({{"id", backend.id},
                               {"plugin", backend.plugin},
                               {"register_kind", backend.register_kind},
                               {"register", backend.register_index},
                               {"banks", backend.banks},
                               {"state", backend.state},
                               {"pending", backend.pending},
                               {"last_error", backend.last_error}});
  }
  std::cout << out.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) << '\n';
}

void run_status(const StatusOptions& options) {
  DaemonClient client(options.bus);
  DaemonStatus status = client.status();
  if (options.json) {
    print_json(status);
  } else {
    print_human(status, options.bus);
  }
  std::cout.flush();
  for (const auto& backend : status.backends) {
    if (backend.state != "ok") throw CLI::RuntimeError(kExitCheckFailed);
  }
}

}  // namespace

void add_status_command(CLI::App& app) {
  auto options = std::make_shared<StatusOptions>();
  CLI::App* status = app.add_subcommand(
      "status", "Show the running imarotd: event source, policy, list counters and each root of trust; exits 1 when "
                "a backend is not ok");
  add_bus_option(status, options->bus);
  status->add_flag("--json", options->json, "Print the status as JSON");
  status->callback([options] { run_status(*options); });
}

}  // namespace rotctl
