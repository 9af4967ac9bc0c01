// The list of active LSMs in securityfs, which decides whether the eBPF LSM
// source can run.
#pragma once

#include <string>

#include "imarot/result.h"

namespace imarotd {

// Reads `lsm_path` (normally /sys/kernel/security/lsm). When it cannot be
// read, the error gives the reason: securityfs is not mounted at the
// directory of `lsm_path` when statfs(2) finds another filesystem there, else
// the errno text.
imarot::Result<std::string> read_lsm_list(const std::string& lsm_path);

}  // namespace imarotd
