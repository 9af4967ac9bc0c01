#include "cc_config.h"

#include <sys/stat.h>

#include <algorithm>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

namespace imarot::cc {
namespace {

using nlohmann::json;

enum class Interface { automatic, tsm_mr, report };

struct PluginConfig {
  std::optional<std::string> path;
  std::optional<std::string> device;
  std::optional<std::string> report_dir;
  std::vector<std::string> providers;
  std::optional<std::string> preset;
  std::optional<HashAlgo> hash;
  std::vector<std::string> registers;
  std::optional<std::string> default_register;
  Interface interface = Interface::automatic;
};

bool is_directory(const std::string& path) {
  struct stat info {};
  return ::stat(path.c_str(), &info) == 0 && S_ISDIR(info.st_mode);
}

bool exists(const std::string& path) {
  struct stat info {};
  return ::stat(path.c_str(), &info) == 0;
}

RotResult<std::string> string_value(const json& value, std::string_view key) {
  if (!value.is_string() || value.get<std::string>().empty()) {
    return invalid_error(fmt::format("\"{}\": expected a non-empty string, got {}", key, value.dump()));
  }
  return value.get<std::string>();
}

// The keys each plugin accepts, with the name of the "report" interface.
struct KeySet {
  std::vector<std::string_view> keys;
  std::string_view report_interface;  // "tdreport" or "token"; empty for tsm-mr
};

KeySet keys_of(PluginKind kind) {
  switch (kind) {
    case PluginKind::tsm_mr: return {{"path", "preset", "hash", "registers", "default_register"}, ""};
    case PluginKind::tdx: return {{"path", "device", "interface"}, "tdreport"};
    case PluginKind::cca: return {{"path", "report_dir", "provider", "interface", "hash"}, "token"};
    case PluginKind::virtcca: return {{"path", "device", "interface", "hash"}, "token"};
  }
  return {};
}

RotResult<PluginConfig> parse_config(PluginKind kind, std::string_view text) {
  json root;
  try {
    root = json::parse(text);
  } catch (const json::parse_error& e) {
    return invalid_error(fmt::format("config is not valid JSON: {}", e.what()));
  }
  if (!root.is_object()) return invalid_error(fmt::format("config must be a JSON object, got {}", root.type_name()));

  KeySet known = keys_of(kind);
  PluginConfig config;
  for (const auto& [key, value] : root.items()) {
    if (std::find(known.keys.begin(), known.keys.end(), key) == known.keys.end()) {
      return invalid_error(fmt::format("unknown config key '{}'; the {} backend accepts {}", key, plugin_name(kind),
                                       fmt::join(known.keys, ", ")));
    }
    if (key == "registers") {
      if (!value.is_array()) return invalid_error(fmt::format("\"registers\": expected an array of register names"));
      for (const json& item : value) {
        auto name = string_value(item, "registers");
        if (!name) return name.error();
        config.registers.push_back(std::move(*name));
      }
      continue;
    }
    if (key == "provider") {
      std::vector<json> items = value.is_array() ? value.get<std::vector<json>>() : std::vector<json>{value};
      for (const json& item : items) {
        auto name = string_value(item, "provider");
        if (!name) return name.error();
        config.providers.push_back(std::move(*name));
      }
      if (config.providers.empty()) return invalid_error("\"provider\": expected a provider name or a list of them");
      continue;
    }
    auto text_value = string_value(value, key);
    if (!text_value) return text_value.error();
    if (key == "path") {
      config.path = *text_value;
    } else if (key == "device") {
      config.device = *text_value;
    } else if (key == "report_dir") {
      config.report_dir = *text_value;
    } else if (key == "preset") {
      if (*text_value != "tdx" && *text_value != "cca") {
        return invalid_error(fmt::format("\"preset\": '{}' is unknown; expected \"tdx\" or \"cca\"", *text_value));
      }
      config.preset = *text_value;
    } else if (key == "default_register") {
      config.default_register = *text_value;
    } else if (key == "hash") {
      config.hash = hash_algo_from_name(*text_value);
      if (!config.hash) {
        return invalid_error(fmt::format("\"hash\": '{}' is not a hash algorithm name such as sha256 or sha384",
                                         *text_value));
      }
    } else if (key == "interface") {
      if (*text_value == "auto") {
        config.interface = Interface::automatic;
      } else if (*text_value == "tsm-mr") {
        config.interface = Interface::tsm_mr;
      } else if (*text_value == known.report_interface) {
        config.interface = Interface::report;
      } else {
        return invalid_error(fmt::format("\"interface\": '{}' is unknown; expected \"auto\", \"tsm-mr\" or \"{}\"",
                                         *text_value, known.report_interface));
      }
    }
  }
  return config;
}

RotResult<std::unique_ptr<Backend>> open_tsm_mr_plugin(const PluginConfig& config) {
  TsmMrOptions options;
  options.hash = config.hash;
  if (config.preset) {
    options.preset = *config.preset == "tdx" ? Preset::tdx : Preset::cca;
    if (!config.registers.empty() || config.default_register) {
      return invalid_error("\"registers\" and \"default_register\" apply only without a \"preset\"");
    }
  }
  options.registers = config.registers;
  options.default_register = config.default_register;
  if (config.path) {
    options.path = *config.path;
  } else if (options.preset == Preset::tdx) {
    options.path = kTdxMeasurementsDir;
  } else if (options.preset == Preset::cca) {
    options.path = kCcaMeasurementsDir;
  } else {
    return invalid_error("missing \"path\", the measurements directory (/sys/class/misc/<device>/measurements), or "
                         "\"preset\" (\"tdx\" or \"cca\") for a known device");
  }
  return open_tsm_mr("tsm-mr", options);
}

RotResult<std::unique_ptr<Backend>> open_tdx_plugin(const PluginConfig& config) {
  std::string path = config.path.value_or(std::string(kTdxMeasurementsDir));
  std::string device = config.device.value_or(std::string(kTdxGuestDevice));
  TsmMrOptions options;
  options.path = path;
  options.preset = Preset::tdx;
  if (config.interface == Interface::tsm_mr || (config.interface == Interface::automatic && is_directory(path))) {
    return open_tsm_mr("tdx", options);
  }
  if (config.interface == Interface::automatic && !exists(device)) {
    return RotError{Status::unavailable, 0,
                    fmt::format("no TDX guest interface: neither the tsm-mr directory '{}' (Linux 6.16 and later) "
                                "nor the TDX guest device '{}' exists",
                                path, device)};
  }
  std::string reason =
      config.interface == Interface::report
          ? fmt::format("interface \"tdreport\" only reads RTMRs, from TDREPORTs of '{}'", device)
          : fmt::format("'{}' not found: the kernel predates tsm-mr (Linux 6.16) and has no user-space RTMR extend; "
                        "RTMRs are read from TDREPORTs of '{}'",
                        path, device);
  return open_tdreport("tdx", std::make_unique<CharDeviceIoctl>(device), std::move(reason));
}

RotResult<std::unique_ptr<Backend>> open_cca_plugin(const PluginConfig& config) {
  std::string path = config.path.value_or(std::string(kCcaMeasurementsDir));
  std::string report_dir = config.report_dir.value_or(std::string(kTsmReportDir));
  TsmMrOptions options;
  options.path = path;
  options.preset = Preset::cca;
  options.hash = config.hash;
  if (config.interface == Interface::tsm_mr || (config.interface == Interface::automatic && is_directory(path))) {
    return open_tsm_mr("cca", options);
  }
  // NOTE: the provider name is the guest driver's module name, which was
  // arm_cca_guest in the driver read and may be arm_cca where the driver
  // file is arm-cca.c, so both are accepted by default.
  std::vector<std::string> providers = config.providers;
  if (providers.empty()) providers = {"arm_cca_guest", "arm_cca"};
  std::string reason =
      fmt::format("'{}' not found: the kernel exposes no REMs through tsm-mr, and configfs-tsm reports cannot extend "
                  "them; REMs are read from attestation tokens",
                  path);
  return open_token("cca", std::make_unique<ConfigfsTsmSource>(report_dir, providers), TokenFormat::arm_cca,
                    std::move(reason));
}

RotResult<std::unique_ptr<Backend>> open_virtcca_plugin(const PluginConfig& config) {
  std::string device = config.device.value_or(std::string(kTsiDevice));
  if (config.interface == Interface::tsm_mr && !config.path) {
    return invalid_error("interface \"tsm-mr\" needs \"path\", the measurements directory: VirtCCA has no known "
                         "default one");
  }
  if (config.path && (config.interface == Interface::tsm_mr ||
                      (config.interface == Interface::automatic && is_directory(*config.path)))) {
    TsmMrOptions options;
    options.path = *config.path;
    options.preset = Preset::cca;
    options.hash = config.hash;
    return open_tsm_mr("virtcca", options);
  }
  std::string reason =
      fmt::format("VirtCCA's '{}' has no extend ioctl; REMs are read from attestation tokens", device);
  return open_token("virtcca", std::make_unique<TsiTokenSource>(std::make_unique<CharDeviceIoctl>(device)),
                    TokenFormat::virtcca, std::move(reason));
}

}  // namespace

std::string_view plugin_name(PluginKind kind) {
  switch (kind) {
    case PluginKind::tsm_mr: return "tsm-mr";
    case PluginKind::tdx: return "tdx";
    case PluginKind::cca: return "cca";
    case PluginKind::virtcca: return "virtcca";
  }
  return "unknown";
}

RotResult<std::unique_ptr<Backend>> open_plugin(PluginKind kind, std::string_view json_config) {
  auto config = parse_config(kind, json_config);
  if (!config) return config.error();
  switch (kind) {
    case PluginKind::tsm_mr: return open_tsm_mr_plugin(*config);
    case PluginKind::tdx: return open_tdx_plugin(*config);
    case PluginKind::cca: return open_cca_plugin(*config);
    case PluginKind::virtcca: return open_virtcca_plugin(*config);
  }
  return invalid_error("unknown plugin kind");
}

RotResult<void> check_plugin_config(PluginKind kind, std::string_view json_config) {
  auto config = parse_config(kind, json_config);
  if (!config) return config.error();
  return Ok{};
}

}  // namespace imarot::cc
