#include "daemon.h"

#include <poll.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <span>
#include <vector>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <spdlog/spdlog.h>

#include "committed_list.h"
#include "daemon_model.h"
#include "dbus_service.h"
#include "exporter.h"
#include "log_store.h"
#include "pipeline.h"
#include "running_programs.h"
#include "rot_target.h"
#include "imarot/rot.h"
#include "text_file.h"

namespace imarotd {
namespace {

// Every measure rule's pcr= must be the register the backends extend: one
// register per backend is extended, and an entry recorded with another PCR
// would be in the list but in no register.
imarot::Result<void> check_policy_registers(const imarot::Policy& policy, uint32_t default_register) {
  for (size_t i = 0; i < policy.rules.size(); ++i) {
    const auto& rule = policy.rules[i];
    if (rule.action != imarot::PolicyAction::measure || !rule.pcr || *rule.pcr == default_register) continue;
    return imarot::Error{fmt::format("{}:{}: pcr={} differs from register {} that the backends extend; imarotd "
                                     "extends one register per backend, so remove pcr= or set the first backend's "
                                     "\"register\" to {}",
                                     policy.source, policy.rule_lines[i], *rule.pcr, default_register, *rule.pcr)};
  }
  return imarot::Ok{};
}

// Whether a measure rule sets pcr=, which only a known register can check.
bool policy_sets_pcr(const imarot::Policy& policy) {
  for (const auto& rule : policy.rules) {
    if (rule.action == imarot::PolicyAction::measure && rule.pcr) return true;
  }
  return false;
}

std::string no_backends_warning(const DaemonConfig& config) {
  return fmt::format("no backends configured in {}: the list is kept, but no entry is extended into a root of trust "
                     "and boot_aggregate is zeros; add a \"backends\" entry such as {{\"name\": \"tpm2\"}}",
                     config.source_path);
}

nlohmann::json status_json(const DaemonConfig& config, const std::string& source_name, const LogStore& log,
                           const Pipeline& pipeline, const RotTarget& rot, const std::string& policy_source) {
  const PipelineCounters& counters = pipeline.counters();
  nlohmann::json status;
  status["pid"] = ::getpid();
  status["boot_id"] = log.boot_id();
  status["list"] = log.path();
  status["entries"] = log.size();
  status["measured"] = counters.measured.load();
  status["violations"] = counters.violations.load();
  status["lost_events"] = counters.lost_events.load();
  status["duplicates"] = counters.duplicates.load();
  status["events"] = counters.events.load();
  status["cached"] = counters.cached.load();
  status["completed_from_identity"] = counters.completed_from_identity.load();
  status["event_source"] = source_name;
  status["policy"] = policy_source;
  status["template"] = std::string(config.default_template->list_name());
  status["hash_algorithm"] = std::string(imarot::hash_name(config.hash_algorithm));
  status["measure_before_use"] = config.measure_before_use;
  if (source_name == "fanotify") {
    status["fanotify_events"] = config.fanotify_notification_events ? "notification" : "permission";
  }
  status["backends"] = nlohmann::json::array();
  for (const auto& backend : rot.status()) {
    nlohmann::json item;
    item["id"] = backend.id;
    item["backend"] = backend.backend;
    item["register"] = backend.register_index;
    item["state"] = std::string(imarot::rot::backend_state_name(backend.state));
    item["pending"] = backend.pending;
    item["last_error"] = backend.last_error;
    status["backends"].push_back(item);
  }
  return status;
}

// "1 entry", "2 entries".
std::string counted(uint64_t count, std::string_view singular, std::string_view plural) {
  return fmt::format("{} {}", count, count == 1 ? singular : plural);
}

std::string status_line(const LogStore& log, const Pipeline& pipeline, const RotTarget& rot) {
  size_t degraded = 0;
  for (const auto& backend : rot.status()) degraded += backend.state != imarot::rot::BackendState::ok ? 1 : 0;
  return fmt::format("{}, {}, {}{}", counted(log.size(), "entry", "entries"),
                     counted(pipeline.counters().violations.load(), "violation", "violations"),
                     counted(pipeline.counters().lost_events.load(), "lost event", "lost events"),
                     degraded > 0 ? ", " + counted(degraded, "backend", "backends") + " not ok" : std::string());
}

}  // namespace

sigset_t daemon_signals() {
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGHUP);
  return signals;
}

imarot::Result<std::shared_ptr<imarot::Policy>> load_configured_policy(const DaemonConfig& config) {
  if (config.policy.rfind("builtin:", 0) == 0) {
    auto policy = imarot::builtin_policy(config.policy.substr(8));
    if (!policy) {
      return imarot::Error{fmt::format("{}: \"policy\": {}", config.source_path, policy.error().message)};
    }
    return std::make_shared<imarot::Policy>(std::move(*policy));
  }
  auto text = read_text_file(config.policy);
  if (!text && text.error().code == EISDIR) {
    return imarot::Error{fmt::format("{}: is a directory, expected a policy file; set \"policy\" in {} to a "
                                     "policy file or builtin:NAME",
                                     config.policy, config.source_path),
                         EISDIR};
  }
  if (!text) {
    return imarot::Error{fmt::format("cannot read the policy file '{}' named in {}: {}", config.policy,
                                     config.source_path, text.error().message),
                         text.error().code};
  }
  auto policy = imarot::load_policy(*text, config.policy);
  if (!policy) return policy.error();
  return std::make_shared<imarot::Policy>(std::move(*policy));
}

imarot::Result<std::vector<std::string>> check_configuration(const DaemonConfig& config,
                                                             const imarot::Policy& policy) {
  std::vector<std::string> warnings;
  if (config.backends.empty()) warnings.push_back(no_backends_warning(config));

  // The backends are not opened here, because opening one opens its
  // device. Each plugin is loaded and checks its config section.
  std::vector<std::string> available = imarot::rot::list_plugins(config.plugin_directory);
  for (size_t i = 0; i < config.backends.size(); ++i) {
    const BackendConfig& backend = config.backends[i];
    if (std::find(available.begin(), available.end(), backend.name) == available.end()) {
      return imarot::Error{fmt::format("{}: backends[{}]: no RoT plugin named '{}' in '{}'; available: {}",
                                       config.source_path, i, backend.name, config.plugin_directory,
                                       available.empty() ? "none" : fmt::format("{}", fmt::join(available, ", ")))};
    }
    auto checked = imarot::rot::RotBackend::check_config(backend.name, backend.config.dump(),
                                                         config.plugin_directory);
    if (!checked) {
      return imarot::Error{fmt::format("{}: backends[{}]: {}", config.source_path, i, checked.error().message)};
    }
    if (!*checked) {
      warnings.push_back(fmt::format("{}: backends[{}]: plugin '{}' cannot check its config without opening its "
                                     "device; the config is checked when imarotd starts",
                                     config.source_path, i, backend.name));
    }
  }

  // NOTE: a plugin reports its default register only through describe(),
  // which needs its device open, so pcr= is checked here only against an
  // explicit "register". Otherwise the start checks it after opening.
  if (!config.backends.empty() && config.backends[0].register_index) {
    if (auto checked = check_policy_registers(policy, *config.backends[0].register_index); !checked) {
      return checked.error();
    }
  } else if (!config.backends.empty() && policy_sets_pcr(policy)) {
    warnings.push_back(fmt::format("{}: pcr= in {} is checked against the register of backends[0] when imarotd "
                                   "starts, because plugin '{}' reports its default register only with its device "
                                   "open; set \"register\" in backends[0] to check it here",
                                   config.source_path, policy.source, config.backends[0].name));
  }

  if (auto checked = check_filesystems(config); !checked) return checked.error();
  return warnings;
}

int run_daemon(const DaemonConfig& config) {
  auto policy = load_configured_policy(config);
  if (!policy) {
    spdlog::error("{}", policy.error().message);
    return kExitInvalidConfig;
  }
  if (auto checked = check_configuration(config, **policy); !checked) {
    spdlog::error("{}", checked.error().message);
    return kExitInvalidConfig;
  }

  std::error_code ec;
  std::filesystem::create_directories(config.state_directory, ec);
  if (ec) {
    spdlog::error("cannot create the state directory '{}': {}", config.state_directory, ec.message());
    return 1;
  }
  auto boot_id = read_boot_id();
  if (!boot_id) {
    spdlog::error("{}", boot_id.error().message);
    return 1;
  }
  auto log = LogStore::open(config.state_directory, *boot_id);
  if (!log) {
    spdlog::error("{}", log.error().message);
    return 1;
  }
  if ((*log)->recovery_note()) spdlog::warn("{}", *(*log)->recovery_note());
  spdlog::info("measurement list '{}' for boot {}: {} entries", (*log)->path(), *boot_id, (*log)->size());

  RotTargetOptions rot_options;
  rot_options.plugin_directory = config.plugin_directory;
  rot_options.state_directory = config.state_directory;
  auto rot = RotTarget::open(config.backends, **log, rot_options);
  if (!rot) {
    spdlog::error("{}", rot.error().message);
    return 1;
  }
  if (config.backends.empty()) spdlog::warn("{}", no_backends_warning(config));
  if (auto checked = check_policy_registers(**policy, (*rot)->default_register()); !checked) {
    spdlog::error("{}", checked.error().message);
    return kExitInvalidConfig;
  }

  auto exporter = Exporter::open(config.runtime_directory, **log, **rot);
  if (!exporter) {
    spdlog::error("{}", exporter.error().message);
    return 1;
  }

  // The list as the D-Bus service reads it, fed from the commit path.
  CommittedList committed((*log)->entries());
  (*exporter)->set_commit_hook([&committed](const std::vector<imarot::Entry>& entries, uint64_t first_index) {
    committed.append(entries, first_index);
  });

  PipelineOptions options;
  options.hash_algorithm = config.hash_algorithm;
  options.default_template = config.default_template;
  options.default_pcr = (*rot)->default_register();
  options.queue_size = config.queue_size;
  options.hash_threads = config.hash_threads;
  Pipeline pipeline(options, *policy, **log, **exporter);
  pipeline.start();
  // Reconciliation, the exporter, the D-Bus list and the pipeline have read
  // the loaded entries. Keeping every entry in memory as well would cost
  // about 200 bytes per entry.
  (*log)->release_entries();

  if ((*log)->size() == 0) {
    auto boot_aggregate = (*rot)->boot_aggregate_entry(config.hash_algorithm, *config.default_template);
    if (!boot_aggregate) {
      spdlog::error("{}", boot_aggregate.error().message);
      pipeline.stop();
      return 1;
    }
    pipeline.submit_entry(std::move(*boot_aggregate));
    pipeline.wait_idle();
  }

  auto choice = select_event_source(config, **policy);
  if (!choice) {
    spdlog::error("{}", choice.error().message);
    pipeline.stop();
    return 1;
  }
  spdlog::info("event source: {} ({}){}", choice->source->name(), choice->reason,
               choice->source->name() == "fanotify" && config.fanotify_notification_events
                   ? "; notification events: no access waits for imarotd, open flags are not known"
                   : "");

  // Signals arrive through a signalfd so the loop below handles them in
  // order with the timer. main() blocked them before any thread started,
  // so every thread inherited the mask.
  sigset_t signals = daemon_signals();
  UniqueFd signal_fd(::signalfd(-1, &signals, SFD_CLOEXEC));
  UniqueFd timer_fd(::timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC));
  struct itimerspec interval {};
  interval.it_interval.tv_nsec = 500 * 1000 * 1000;
  interval.it_value.tv_nsec = 500 * 1000 * 1000;
  ::timerfd_settime(timer_fd.get(), 0, &interval, nullptr);

  if (auto started = choice->source->start(pipeline); !started) {
    spdlog::error("cannot start the {} event source: {}", choice->source->name(), started.error().message);
    pipeline.stop();
    return 1;
  }
  // Programs started before the source, earlier in boot or before a
  // restart, are measured now. The list's duplicate check keeps a restart
  // from adding entries that are in the list already.
  RunningProgramsScan scan = submit_running_programs(pipeline, *choice->source);
  spdlog::info("submitted {} files of {} running processes ({} not readable) for measurement", scan.files,
               scan.processes, scan.skipped);

  std::string policy_source = (*policy)->source;
  auto reload_policy = [&]() -> imarot::Result<std::string> {
    auto reloaded = load_configured_policy(config);
    if (!reloaded) return reloaded.error();
    if (auto checked = check_policy_registers(**reloaded, (*rot)->default_register()); !checked) {
      return checked.error();
    }
    policy_source = (*reloaded)->source;
    pipeline.set_policy(*reloaded);
    if (auto filtered = choice->source->policy_changed(**reloaded); !filtered) {
      spdlog::error("the {} event source keeps its old filter: {}", choice->source->name(), filtered.error().message);
    }
    spdlog::info("policy reloaded from {}: {} {}", policy_source, (*reloaded)->rules.size(),
                 (*reloaded)->rules.size() == 1 ? "rule" : "rules");
    return policy_source;
  };

  // The D-Bus service, unless "dbus" is "none". It runs in the loop below.
  DaemonModel model(pipeline, **rot, reload_policy, [&] { return policy_source; });
  std::unique_ptr<DBusService> dbus;
  if (config.dbus != "none") {
    ManagerInfo info{choice->source->name(), std::string(config.default_template->list_name()),
                     std::string(imarot::hash_name(config.hash_algorithm)), (*log)->boot_id(),
                     config.measure_before_use};
    DBusServiceOptions dbus_options;
    dbus_options.bus = config.dbus;
    dbus = std::make_unique<DBusService>(dbus_options, info, committed, model);
    committed.set_listener([service = dbus.get()](uint64_t count) { service->entries_committed(count); });
    dbus->start();
  }

  auto publish = [&] {
    (*exporter)->write_status(status_json(config, choice->source->name(), **log, pipeline, **rot, policy_source));
  };
  publish();
  std::string line = status_line(**log, pipeline, **rot);
  sd_notifyf(0, "READY=1\nSTATUS=Measuring on %s: %s", choice->source->name().c_str(), line.c_str());
  spdlog::info("imarotd ready: measuring on {}, {}", choice->source->name(), line);

  uint64_t watchdog_usec = 0;
  bool watchdog = sd_watchdog_enabled(0, &watchdog_usec) > 0;
  int exit_code = 0;
  for (bool running = true; running;) {
    std::vector<struct pollfd> fds = {{signal_fd.get(), POLLIN, 0}, {timer_fd.get(), POLLIN, 0}};
    if (dbus) dbus->add_poll_fds(fds);  // after the first two
    if (::poll(fds.data(), fds.size(), dbus ? dbus->poll_timeout_ms() : -1) < 0) {
      if (errno == EINTR) continue;
      spdlog::error("poll failed: {}", std::strerror(errno));
      exit_code = 1;
      break;
    }
    if (dbus) dbus->dispatch(std::span<const struct pollfd>(fds).subspan(2));
    if (fds[1].revents & POLLIN) {
      uint64_t expirations = 0;
      (void)::read(timer_fd.get(), &expirations, sizeof expirations);
      (*rot)->pump();
      pipeline.log_suppressed_violations();
      publish();
      std::string now = status_line(**log, pipeline, **rot);
      if (now != line) {
        line = now;
        sd_notifyf(0, "STATUS=Measuring on %s: %s", choice->source->name().c_str(), line.c_str());
      }
      if (watchdog) sd_notify(0, "WATCHDOG=1");
    }
    if (fds[0].revents & POLLIN) {
      struct signalfd_siginfo info {};
      if (::read(signal_fd.get(), &info, sizeof info) != sizeof info) continue;
      if (info.ssi_signo == SIGHUP) {
        sd_notify(0, "RELOADING=1");
        if (auto reloaded = reload_policy(); !reloaded) {
          spdlog::error("policy reload failed, keeping the current policy: {}", reloaded.error().message);
        } else if (dbus) {
          dbus->policy_changed();
        }
        sd_notify(0, "READY=1");
      } else {
        spdlog::info("received {}, stopping", strsignal(static_cast<int>(info.ssi_signo)));
        running = false;
      }
    }
  }

  sd_notify(0, "STOPPING=1");
  choice->source->stop();
  pipeline.stop();
  pipeline.log_suppressed_violations(/*flush=*/true);
  (*rot)->pump();
  publish();
  spdlog::info("imarotd stopped: {}", status_line(**log, pipeline, **rot));
  return exit_code;
}

}  // namespace imarotd
