#include "tsm_mr.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>

#include <fmt/format.h>

namespace imarot::cc {
namespace {

// Closes a file descriptor on scope exit.
class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  int get() const { return fd_; }

 private:
  int fd_;
};

}  // namespace

RotResult<std::vector<MrFile>> list_measurement_files(const std::string& dir) {
  DIR* stream = ::opendir(dir.c_str());
  if (stream == nullptr) {
    return errno_error(errno, fmt::format("cannot open the measurement register directory '{}'", dir));
  }
  std::vector<MrFile> files;
  errno = 0;
  while (const dirent* item = ::readdir(stream)) {
    std::string file_name = item->d_name;
    if (file_name == "." || file_name == "..") continue;
    MrFile file;
    file.path = fmt::format("{}/{}", dir, file_name);
    struct stat info {};
    if (::stat(file.path.c_str(), &info) != 0 || !S_ISREG(info.st_mode)) continue;
    size_t colon = file_name.find(':');
    file.name = file_name.substr(0, colon);
    if (colon != std::string::npos) {
      file.hash_name = file_name.substr(colon + 1);
      file.algo = hash_algo_from_name(file.hash_name);
    }
    file.size = static_cast<size_t>(info.st_size);
    file.writable = (info.st_mode & (S_IWUSR | S_IWGRP | S_IWOTH)) != 0;
    files.push_back(std::move(file));
  }
  int read_errno = errno;
  ::closedir(stream);
  if (read_errno != 0) {
    return errno_error(read_errno, fmt::format("cannot list the measurement register directory '{}'", dir));
  }
  std::sort(files.begin(), files.end(), [](const MrFile& a, const MrFile& b) { return a.path < b.path; });
  return files;
}

RotResult<Digest> read_measurement(const MrFile& file, size_t size) {
  Fd fd(::open(file.path.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0) return errno_error(errno, fmt::format("cannot open '{}' for reading", file.path));

  // One byte more than expected shows a file that is larger than the
  // register.
  std::array<uint8_t, kMaxDigestSize + 1> buffer{};
  size_t filled = 0;
  while (filled <= size) {
    ssize_t got = ::pread(fd.get(), buffer.data() + filled, size + 1 - filled, static_cast<off_t>(filled));
    if (got < 0) {
      if (errno == EINTR) continue;
      return errno_error(errno, fmt::format("cannot read '{}'", file.path));
    }
    if (got == 0) break;
    filled += static_cast<size_t>(got);
  }
  if (filled != size) {
    return failed_error(fmt::format("'{}' holds {} bytes; expected a {}-byte register value", file.path,
                                    filled > size ? fmt::format("more than {}", size) : std::to_string(filled),
                                    size));
  }
  return Digest(ByteView(buffer.data(), size));
}

RotResult<void> extend_measurement(const MrFile& file, const Digest& input) {
  if (input.size() != file.size) {
    return invalid_error(fmt::format("a {}-byte value cannot extend '{}', whose register is {} bytes", input.size(),
                                     file.path, file.size));
  }
  Fd fd(::open(file.path.c_str(), O_WRONLY | O_CLOEXEC));
  if (fd.get() < 0) {
    int err = errno;
    if (err == EACCES && !file.writable) {
      return RotError{Status::read_only, err,
                      fmt::format("'{}' is read-only: the kernel exposes it without write permission", file.path)};
    }
    return errno_error(err, fmt::format("cannot open '{}' for writing", file.path));
  }
  for (;;) {
    ssize_t written = ::pwrite(fd.get(), input.data(), input.size(), 0);
    if (written < 0 && errno == EINTR) continue;
    if (written < 0) {
      return errno_error(errno, fmt::format("extending '{}' with a {}-byte write failed", file.path, input.size()));
    }
    if (static_cast<size_t>(written) != input.size()) {
      return failed_error(fmt::format("extending '{}': the kernel took {} of {} bytes", file.path, written,
                                      input.size()));
    }
    return Ok{};
  }
}

}  // namespace imarot::cc
