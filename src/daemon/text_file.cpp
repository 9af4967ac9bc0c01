#include "text_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace imarotd {
namespace {

imarot::Error errno_error(int error) { return imarot::Error{std::strerror(error), error}; }

}  // namespace

imarot::Result<std::string> read_text_file(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return errno_error(errno);
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    int error = errno;
    ::close(fd);
    return errno_error(error);
  }
  // open(2) succeeds on a directory with O_RDONLY, and read(2) then fails
  // with EISDIR; checking here gives the same error before any read.
  if (S_ISDIR(st.st_mode)) {
    ::close(fd);
    return errno_error(EISDIR);
  }
  std::string text;
  char buffer[65536];
  for (;;) {
    ssize_t n = ::read(fd, buffer, sizeof buffer);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      int error = errno;
      ::close(fd);
      return errno_error(error);
    }
    if (n == 0) break;
    text.append(buffer, static_cast<size_t>(n));
  }
  ::close(fd);
  return text;
}

}  // namespace imarotd
