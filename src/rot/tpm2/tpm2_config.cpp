#include "tpm2_config.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

namespace imarot::tpm2 {
namespace {

rot::RotError invalid(std::string message) { return rot::RotError{rot::Status::invalid, 0, std::move(message)}; }

}  // namespace

std::string_view tcti_name(std::string_view tcti) { return tcti.substr(0, tcti.find(':')); }

rot::RotResult<Config> parse_config(std::string_view json_text) {
  nlohmann::json root;
  try {
    root = nlohmann::json::parse(json_text);
  } catch (const nlohmann::json::parse_error& e) {
    return invalid(fmt::format("config is not valid JSON: {}", e.what()));
  }
  if (!root.is_object()) return invalid(fmt::format("config must be a JSON object, got {}", root.type_name()));

  Config config;
  std::optional<bool> kernel_tpm;
  for (const auto& [key, value] : root.items()) {
    if (key == "tcti") {
      if (!value.is_string() || value.get<std::string>().empty()) {
        return invalid(fmt::format("tcti: expected a TCTI string such as \"device:/dev/tpmrm0\" or "
                                   "\"swtpm:path=/run/swtpm.sock\", got {}",
                                   value.dump()));
      }
      config.tcti = value.get<std::string>();
    } else if (key == "kernel_tpm") {
      if (!value.is_boolean()) return invalid(fmt::format("kernel_tpm: expected true or false, got {}", value.dump()));
      kernel_tpm = value.get<bool>();
    } else if (key == "retry_attempts") {
      if (!value.is_number_unsigned() || value.get<uint64_t>() > 20) {
        return invalid(fmt::format("retry_attempts: expected a number from 0 to 20, got {}", value.dump()));
      }
      config.retry_attempts = value.get<unsigned>();
    } else if (key == "retry_delay_ms") {
      if (!value.is_number_unsigned() || value.get<uint64_t>() > 10000) {
        return invalid(fmt::format("retry_delay_ms: expected milliseconds from 0 to 10000, got {}", value.dump()));
      }
      config.retry_delay = std::chrono::milliseconds(value.get<unsigned>());
    } else {
      return invalid(fmt::format("unknown key '{}'; expected tcti, kernel_tpm, retry_attempts or retry_delay_ms", key));
    }
  }

  if (kernel_tpm) {
    config.kernel_tpm = *kernel_tpm;
  } else if (config.tcti) {
    std::string_view name = tcti_name(*config.tcti);
    config.kernel_tpm = !(name == "swtpm" || name == "mssim" || name == "libtpms");
  }
  return config;
}

}  // namespace imarot::tpm2
