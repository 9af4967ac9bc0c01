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
  const std::string default_config_path = "/etc/imarotd/imarotd.json";
  std::string config_path = default_config_path;
  bool check_only = false;
  app.add_option("--config,-c", config_path, "Configuration file (imarotd.json(5))")
      ->type_name("FILE")
      ->capture_default_str();
  app.add_flag("--check", check_only, "Validate the configuration and the policy, then exit");
  app.set_version_flag("--version", "imarotd 0.1.0");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : imarotd::kExitInvalidConfig;
  }

  setup_logging("info");
  auto config = imarotd::load_config(config_path, imarot::rot::default_plugin_dir());
  if (!config) {
    // A code is set only when reading the file failed, not for its content.
    if (config.error().code != 0 && app.count("--config") == 0) {
      spdlog::error("{}; pass --config FILE to use another configuration file", config.error().message);
    } else {
      spdlog::error("{}", config.error().message);
    }
    return imarotd::kExitInvalidConfig;
  }
  setup_logging(config->log_level);

  if (check_only) {
    auto policy = imarotd::load_configured_policy(*config);
    if (!policy) {
      spdlog::error("{}", policy.error().message);
      return imarotd::kExitInvalidConfig;
    }
    auto checked = imarotd::check_configuration(*config, **policy);
    if (!checked) {
      spdlog::error("{}", checked.error().message);
      return imarotd::kExitInvalidConfig;
    }
    for (const std::string& warning : *checked) spdlog::warn("{}", warning);
    size_t rules = (*policy)->rules.size();
    std::printf("%s: configuration valid; policy %s has %zu %s\n", config_path.c_str(), (*policy)->source.c_str(),
                rules, rules == 1 ? "rule" : "rules");
    return 0;
  }
  return imarotd::run_daemon(*config);
}
