#include "cc_errors.h"

#include <sys/random.h>

#include <cerrno>
#include <cstring>

#include <fmt/format.h>

namespace imarot::cc {

RotError invalid_error(std::string message) { return RotError{Status::invalid, 0, std::move(message)}; }

RotError failed_error(std::string message) { return RotError{Status::failed, 0, std::move(message)}; }

RotError errno_error(int err, const std::string& context) {
  Status status = Status::failed;
  switch (err) {
    case EAGAIN:
    case EBUSY:
    case EINTR:
      status = Status::retry;
      break;
    case ENOENT:
    case ENODEV:
    case ENXIO:
    case ESHUTDOWN:
      status = Status::unavailable;
      break;
    case EINVAL:
    case E2BIG:
    case EFBIG:
      status = Status::invalid;
      break;
    default:
      break;
  }
  return RotError{status, err, fmt::format("{}: {}", context, std::strerror(err))};
}

RotResult<Bytes> random_bytes(size_t count) {
  Bytes out(count);
  size_t filled = 0;
  while (filled < count) {
    ssize_t got = ::getrandom(out.data() + filled, count - filled, 0);
    if (got < 0) {
      if (errno == EINTR) continue;
      return errno_error(errno, "getrandom for a request nonce failed");
    }
    filled += static_cast<size_t>(got);
  }
  return out;
}

}  // namespace imarot::cc
