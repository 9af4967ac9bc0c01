// imarotd: user-space integrity measurement daemon.
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <iostream>

#include <algorithm>
#include <vector>

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/sinks/systemd_sink.h>
#include <spdlog/spdlog.h>

#include "config.h"
#include "daemon.h"
#include "imarot/rot.h"

namespace {

// Logs to the journal when systemd started us with its journal connected
// (JOURNAL_STREAM is set), else to stderr.
void setup_logging(const std::string& level) {
  std::shared_ptr<spdlog::logger> logger;
  if (std::getenv("JOURNAL_STREAM") != nullptr) {
    logger = std::make_shared<spdlog::logger>("imarotd", std::make_shared<spdlog::sinks::systemd_sink_mt>());
    logger->set_pattern("%v");
  } else {
    logger = std::make_shared<spdlog::logger>("imarotd", std::make_shared<spdlog::sinks::stderr_color_sink_mt>());
  }
  logger->set_level(spdlog::level::from_str(level == "warning" ? "warn" : level));
  spdlog::set_default_logger(logger);
}

}  // namespace

int main(int argc, char** argv) {
  sigset_t signals = imarotd::daemon_signals();
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  CLI::App app{"imarotd: measure files as kernel IMA does and extend the measurements into roots of trust"};
  std::string config_path = "/etc/imarotd/imarotd.json";
  bool check_only = false;
  app.add_option("--config,-c", config_path, "Configuration file (imarotd.json(5))");
  app.add_flag("--check", check_only, "Validate the configuration and the policy, then exit");
  app.set_version_flag("--version", "imarotd 0.1.0");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  }

  setup_logging("info");
  auto config = imarotd::load_config(config_path, imarot::rot::default_plugin_dir());
  if (!config) {
    spdlog::error("{}", config.error().message);
    return 2;
  }
  setup_logging(config->log_level);

  if (check_only) {
    auto policy = imarotd::load_configured_policy(*config);
    if (!policy) {
      spdlog::error("{}", policy.error().message);
      return 2;
    }
    // The backends are not opened here, because opening one opens its
    // device. Each plugin is loaded and checks its config section.
    std::vector<std::string> available = imarot::rot::list_plugins(config->plugin_directory);
    for (size_t i = 0; i < config->backends.size(); ++i) {
      const imarotd::BackendConfig& backend = config->backends[i];
      if (std::find(available.begin(), available.end(), backend.name) == available.end()) {
        spdlog::error("{}: backends[{}]: no RoT plugin named '{}' in '{}'; available: {}", config_path, i,
                      backend.name, config->plugin_directory,
                      available.empty() ? "none" : fmt::format("{}", fmt::join(available, ", ")));
        return 2;
      }
      auto checked = imarot::rot::RotBackend::check_config(backend.name, backend.config.dump(),
                                                           config->plugin_directory);
      if (!checked) {
        spdlog::error("{}: backends[{}]: {}", config_path, i, checked.error().message);
        return 2;
      }
      if (!*checked) {
        spdlog::warn("{}: backends[{}]: plugin '{}' cannot check its config without opening its device; "
                     "the config is checked when imarotd starts",
                     config_path, i, backend.name);
      }
    }
    std::printf("%s: configuration valid; policy %s has %zu rules\n", config_path.c_str(), (*policy)->source.c_str(),
                (*policy)->rules.size());
    return 0;
  }
  return imarotd::run_daemon(*config);
}
