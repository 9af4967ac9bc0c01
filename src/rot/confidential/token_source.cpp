#include "token_source.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>

#include <fmt/format.h>
#include <linux/ioctl.h>

namespace imarot::cc {
namespace {

static_assert(_IOWR('T', 1, TsiTokenRequest) == kTmmGetAttestationToken);

// Upper bound on an outblob: a CCA token with its platform token is a few
// kilobytes, so anything near this is not a token.
constexpr size_t kMaxOutblobSize = 1024 * 1024;

RotResult<Bytes> read_file(const std::string& path, size_t limit) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return errno_error(errno, fmt::format("cannot open '{}'", path));
  Bytes out;
  uint8_t buffer[4096];
  for (;;) {
    ssize_t got = ::read(fd, buffer, sizeof buffer);
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) {
      int err = errno;
      ::close(fd);
      return errno_error(err, fmt::format("cannot read '{}'", path));
    }
    if (got == 0) break;
    out.insert(out.end(), buffer, buffer + got);
    if (out.size() > limit) {
      ::close(fd);
      return failed_error(fmt::format("'{}' holds more than {} bytes", path, limit));
    }
  }
  ::close(fd);
  return out;
}

RotResult<std::string> read_text(const std::string& path) {
  auto bytes = read_file(path, 4096);
  if (!bytes) return bytes.error();
  std::string text(bytes->begin(), bytes->end());
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.pop_back();
  return text;
}

// Removes the report directory when the request ends, however it ends.
class ReportEntry {
 public:
  explicit ReportEntry(std::string path) : path_(std::move(path)) {}
  ReportEntry(const ReportEntry&) = delete;
  ReportEntry& operator=(const ReportEntry&) = delete;
  ~ReportEntry() { ::rmdir(path_.c_str()); }
  std::string file(std::string_view name) const { return fmt::format("{}/{}", path_, name); }

 private:
  std::string path_;
};

}  // namespace

RotResult<Bytes> TsiTokenSource::request(ByteView challenge) {
  if (challenge.size() != kTsiChallengeSize) {
    return invalid_error(fmt::format("a TSI token challenge is {} bytes, not {}", kTsiChallengeSize, challenge.size()));
  }
  auto request = std::make_unique<TsiTokenRequest>();
  std::memcpy(request->challenge, challenge.data(), kTsiChallengeSize);
  auto* raw = reinterpret_cast<uint8_t*>(request.get());
  int err = device_->call(kTmmGetAttestationToken, std::span<uint8_t>(raw, sizeof *request));
  if (err != 0) return errno_error(err, fmt::format("TMM_GET_ATTESTATION_TOKEN on '{}' failed", device_->path()));
  if (request->token_size == 0 || request->token_size > kTsiMaxTokenSize) {
    return failed_error(fmt::format("'{}' returned a token size of {} bytes; expected 1 to {}", device_->path(),
                                    request->token_size, kTsiMaxTokenSize));
  }
  return Bytes(request->token, request->token + request->token_size);
}

RotResult<Bytes> ConfigfsTsmSource::request(ByteView challenge) {
  static std::atomic<unsigned> counter{0};
  std::string path = fmt::format("{}/imarotd-{}-{}", report_root_, ::getpid(), counter++);
  if (::mkdir(path.c_str(), 0700) != 0) {
    int err = errno;
    if (err == ENOENT) {
      return RotError{Status::unavailable, err,
                      fmt::format("configfs-tsm report directory '{}' not found: the kernel has no configfs-tsm "
                                  "report support, or configfs is not mounted",
                                  report_root_)};
    }
    return errno_error(err, fmt::format("cannot create the configfs-tsm report '{}'", path));
  }
  ReportEntry entry(path);

  auto provider = read_text(entry.file("provider"));
  if (!provider) return provider.error();
  if (std::find(providers_.begin(), providers_.end(), *provider) == providers_.end()) {
    return RotError{Status::unavailable, 0,
                    fmt::format("configfs-tsm report provider is '{}', expected {}: this is not the guest type "
                                "the backend reads",
                                *provider, fmt::join(providers_, " or "))};
  }

  // configfs takes a binary attribute's content when the file is closed.
  int fd = ::open(entry.file("inblob").c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) return errno_error(errno, fmt::format("cannot open '{}'", entry.file("inblob")));
  ssize_t written;
  do {
    written = ::write(fd, challenge.data(), challenge.size());
  } while (written < 0 && errno == EINTR);
  int write_errno = errno;
  int close_result = ::close(fd);
  int close_errno = errno;
  if (written < 0) return errno_error(write_errno, fmt::format("writing the challenge to '{}' failed", entry.file("inblob")));
  if (close_result != 0) {
    return errno_error(close_errno, fmt::format("writing the challenge to '{}' failed", entry.file("inblob")));
  }
  if (static_cast<size_t>(written) != challenge.size()) {
    return failed_error(fmt::format("'{}' took {} of the {} challenge bytes", entry.file("inblob"), written,
                                    challenge.size()));
  }

  auto before = read_text(entry.file("generation"));
  if (!before) return before.error();
  auto token = read_file(entry.file("outblob"), kMaxOutblobSize);
  if (!token) return token.error();
  auto after = read_text(entry.file("generation"));
  if (!after) return after.error();
  if (*before != *after) {
    return RotError{Status::retry, 0,
                    fmt::format("configfs-tsm report '{}' changed while its token was read (generation {} then {})",
                                path, *before, *after)};
  }
  if (token->empty()) return failed_error(fmt::format("'{}' returned an empty token", entry.file("outblob")));
  return std::move(*token);
}

}  // namespace imarot::cc
