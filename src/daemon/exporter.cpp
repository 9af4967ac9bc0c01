#include "exporter.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

namespace imarotd {
namespace {

bool write_all(int fd, const std::string& text) {
  const char* data = text.data();
  size_t size = text.size();
  while (size > 0) {
    ssize_t n = ::write(fd, data, size);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return false;
    data += n;
    size -= static_cast<size_t>(n);
  }
  return true;
}

}  // namespace

imarot::Result<std::unique_ptr<Exporter>> Exporter::open(const std::string& runtime_directory, const LogStore& log,
                                                         RotTarget& rot) {
  std::error_code ec;
  std::filesystem::create_directories(runtime_directory, ec);
  if (ec) return imarot::Error{fmt::format("cannot create '{}': {}", runtime_directory, ec.message())};

  std::unique_ptr<Exporter> exporter(new Exporter(runtime_directory, rot));
  std::string binary = runtime_directory + "/binary_runtime_measurements";
  std::string temporary = binary + ".tmp";
  std::filesystem::remove(temporary, ec);
  if (::symlink(log.path().c_str(), temporary.c_str()) != 0 || ::rename(temporary.c_str(), binary.c_str()) != 0) {
    return imarot::Error{fmt::format("cannot link '{}' to '{}': {}", binary, log.path(), std::strerror(errno))};
  }

  std::string ascii = runtime_directory + "/ascii_runtime_measurements";
  exporter->ascii_fd_ = UniqueFd(::open(ascii.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0640));
  if (!exporter->ascii_fd_) {
    return imarot::Error{fmt::format("cannot open '{}': {}", ascii, std::strerror(errno))};
  }
  std::string text = imarot::serialize_ascii(log.entries());
  if (!write_all(exporter->ascii_fd_.get(), text)) {
    return imarot::Error{fmt::format("cannot write '{}': {}", ascii, std::strerror(errno))};
  }
  return exporter;
}

void Exporter::extend(const std::vector<imarot::Entry>& entries, uint64_t first_index) {
  rot_.extend(entries, first_index);
}

void Exporter::committed(const std::vector<imarot::Entry>& entries, uint64_t first_index) {
  std::string text;
  for (const auto& entry : entries) imarot::append_ascii_line(text, entry);
  {
    std::lock_guard lock(mutex_);
    if (!write_all(ascii_fd_.get(), text)) {
      spdlog::warn("cannot append to '{}/ascii_runtime_measurements': {}; the durable list is not affected",
                   directory_, std::strerror(errno));
    }
  }
  if (commit_hook_) commit_hook_(entries, first_index);
}

void Exporter::write_status(const nlohmann::json& status) {
  std::string path = directory_ + "/status.json";
  std::string temporary = path + ".tmp";
  UniqueFd fd(::open(temporary.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
  if (!fd || !write_all(fd.get(), status.dump(2) + "\n") || ::rename(temporary.c_str(), path.c_str()) != 0) {
    spdlog::warn("cannot write '{}': {}", path, std::strerror(errno));
  }
}

}  // namespace imarotd
