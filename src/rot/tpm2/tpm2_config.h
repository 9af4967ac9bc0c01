// The tpm2 backend's JSON config section.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <string_view>

#include "imarot/rot.h"

namespace imarot::tpm2 {

struct Config {
  // TCTI configuration string for Tss2_TctiLdr_Initialize, such as
  // "device:/dev/tpmrm0", "swtpm:path=/run/swtpm.sock",
  // "swtpm:host=127.0.0.1,port=2321", "mssim:port=2321" or
  // "tabrmd:bus_type=system". nullopt selects /dev/tpmrm0, or /dev/tpm0 on
  // kernels without the resource manager.
  std::optional<std::string> tcti;
  // The TPM is the one kernel IMA extends, so a PCR that the kernel's list
  // uses is rejected. Defaults to true except for the swtpm, mssim and
  // libtpms simulators.
  bool kernel_tpm = true;
  // Attempts after ESAPI's own resubmissions when the TPM returns
  // TPM_RC_RETRY, YIELDED or TESTING, with the delay doubling each time.
  unsigned retry_attempts = 3;
  std::chrono::milliseconds retry_delay{10};
};

// Parses `{"tcti": "...", "kernel_tpm": bool, "retry_attempts": N,
// "retry_delay_ms": N}`; every key is optional and any other key is an
// error.
rot::RotResult<Config> parse_config(std::string_view json_text);

// The part of a TCTI string before ':' ("device", "swtpm", ...).
std::string_view tcti_name(std::string_view tcti);

}  // namespace imarot::tpm2
