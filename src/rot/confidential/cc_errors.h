// Errors and small helpers shared by the confidential-computing backends.
#pragma once

#include <string>

#include "imarot/hash.h"
#include "imarot/rot.h"

namespace imarot::cc {

using rot::RotError;
using rot::RotResult;
using rot::Status;

RotError invalid_error(std::string message);
RotError failed_error(std::string message);

// An error for a system call that failed with `err` (an errno value):
// `context` followed by strerror. EAGAIN, EBUSY and EINTR become
// Status::retry; ENOENT, ENODEV, ENXIO and ESHUTDOWN become
// Status::unavailable; EINVAL, E2BIG and EFBIG become Status::invalid.
RotError errno_error(int err, const std::string& context);

// `count` bytes from the kernel's random number generator (getrandom), used
// as the nonce of a report or token request.
RotResult<Bytes> random_bytes(size_t count);

}  // namespace imarot::cc
