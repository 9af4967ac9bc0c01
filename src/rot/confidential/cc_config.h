// The JSON config sections of the confidential-computing plugins, and
// opening a backend from them.
#pragma once

#include <memory>
#include <string_view>

#include "cc_backend.h"

namespace imarot::cc {

enum class PluginKind {
  tsm_mr,   // any tsm-mr measurements directory, with the "tdx" or "cca" preset or none
  tdx,      // TDX: tsm-mr on Linux 6.16 and later, else read-only from TDREPORTs
  cca,      // Arm CCA: tsm-mr where the kernel has it, else read-only from configfs-tsm tokens
  virtcca,  // VirtCCA: read-only from /dev/tsi tokens, or tsm-mr when a directory is configured
};

std::string_view plugin_name(PluginKind kind);

// Default paths. The Arm CCA tsm-mr directory is taken from a driver variant
// that is not known to be upstream.
inline constexpr std::string_view kTdxMeasurementsDir = "/sys/class/misc/tdx_guest/measurements";
inline constexpr std::string_view kTdxGuestDevice = "/dev/tdx_guest";
inline constexpr std::string_view kCcaMeasurementsDir = "/sys/class/misc/arm_cca_guest/measurements";
inline constexpr std::string_view kTsmReportDir = "/sys/kernel/config/tsm/report";
inline constexpr std::string_view kTsiDevice = "/dev/tsi";

// Parses `json_config` (a JSON object) for `kind` and opens the backend. Each
// key is checked, and an unknown key is an error that lists the known ones.
RotResult<std::unique_ptr<Backend>> open_plugin(PluginKind kind, std::string_view json_config);

// Parses `json_config` for `kind` as open_plugin does, without opening
// anything.
RotResult<void> check_plugin_config(PluginKind kind, std::string_view json_config);

}  // namespace imarot::cc
