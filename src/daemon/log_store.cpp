#include "log_store.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>

#include <fmt/format.h>

namespace imarotd {
namespace {

imarot::Error system_error(const std::string& what, int error) {
  return imarot::Error{fmt::format("{}: {}", what, std::strerror(error)), error};
}

imarot::Result<void> write_all(int fd, const uint8_t* data, size_t size) {
  while (size > 0) {
    ssize_t n = ::write(fd, data, size);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return imarot::Error{std::strerror(errno), errno};
    data += n;
    size -= static_cast<size_t>(n);
  }
  return imarot::Ok{};
}

bool is_truncation(const imarot::ParseError& error) {
  return error.message.find("record is truncated") != std::string::npos;
}

imarot::Result<void> write_committed_size(int fd, uint64_t size) {
  uint8_t bytes[8];
  for (int i = 0; i < 8; ++i) bytes[i] = static_cast<uint8_t>(size >> (8 * i));
  if (::pwrite(fd, bytes, sizeof bytes, 0) != static_cast<ssize_t>(sizeof bytes)) {
    return imarot::Error{std::strerror(errno), errno};
  }
  return imarot::Ok{};
}

std::optional<uint64_t> read_committed_size(int fd) {
  uint8_t bytes[8];
  if (::pread(fd, bytes, sizeof bytes, 0) != static_cast<ssize_t>(sizeof bytes)) return std::nullopt;
  uint64_t size = 0;
  for (int i = 0; i < 8; ++i) size |= static_cast<uint64_t>(bytes[i]) << (8 * i);
  return size;
}

}  // namespace

void LogStore::release_entries() {
  keep_entries_ = false;
  std::vector<imarot::Entry>().swap(entries_);
  std::vector<uint64_t>().swap(entry_offsets_);
}

imarot::Result<size_t> LogStore::read_at(uint64_t offset, std::span<uint8_t> buffer) const {
  size_t done = 0;
  while (done < buffer.size()) {
    ssize_t n = ::pread(fd_.get(), buffer.data() + done, buffer.size() - done, static_cast<off_t>(offset + done));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const int error = errno;
      return system_error(fmt::format("cannot read '{}' at byte offset {}", path_, offset + done), error);
    }
    if (n == 0) break;
    done += static_cast<size_t>(n);
  }
  return done;
}

imarot::Result<std::string> read_boot_id(const std::string& path) {
  std::ifstream in(path);
  std::string id;
  if (!(in >> id) || id.empty()) return imarot::Error{fmt::format("cannot read the boot id from '{}'", path)};
  return id;
}

LogStore::~LogStore() = default;

imarot::Result<std::unique_ptr<LogStore>> LogStore::open(const std::string& state_dir, const std::string& boot_id) {
  std::error_code ec;
  std::string lists = state_dir + "/lists";
  std::filesystem::create_directories(lists, ec);
  if (ec) return imarot::Error{fmt::format("cannot create '{}': {}", lists, ec.message())};

  std::unique_ptr<LogStore> store(new LogStore());
  store->boot_id_ = boot_id;
  store->path_ = lists + "/" + boot_id + ".bin";
  store->fd_ = UniqueFd(::open(store->path_.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0640));
  if (!store->fd_) return system_error(fmt::format("cannot open the measurement list '{}'", store->path_), errno);

  struct stat st {};
  if (::fstat(store->fd_.get(), &st) != 0) return system_error(fmt::format("cannot stat '{}'", store->path_), errno);
  imarot::Bytes data(static_cast<size_t>(st.st_size));
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = ::pread(store->fd_.get(), data.data() + done, data.size() - done, static_cast<off_t>(done));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return system_error(fmt::format("cannot read '{}'", store->path_), n < 0 ? errno : EIO);
    done += static_cast<size_t>(n);
  }

  std::string committed_path = lists + "/" + boot_id + ".committed";
  store->committed_fd_ = UniqueFd(::open(committed_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0640));
  if (!store->committed_fd_) return system_error(fmt::format("cannot open '{}'", committed_path), errno);
  std::optional<uint64_t> committed = read_committed_size(store->committed_fd_.get());

  imarot::ParsedList list = imarot::parse_binary_list(data);
  store->file_size_ = data.size();
  if (list.error) {
    // A torn final write never reached fdatasync, so it was never extended
    // and can go. Damage inside the committed part must not be cut away.
    bool torn_tail = is_truncation(*list.error) && committed && list.error->offset >= *committed;
    if (!torn_tail) {
      return imarot::Error{fmt::format("measurement list '{}' is damaged at {}; it is left untouched, move it away to "
                                       "start a new list",
                                       store->path_, imarot::format_parse_error(*list.error))};
    }
    store->recovery_note_ = fmt::format("removed {} bytes of an incomplete record at byte offset {} of '{}'",
                                        data.size() - list.error->offset, list.error->offset, store->path_);
    if (::ftruncate(store->fd_.get(), static_cast<off_t>(list.error->offset)) != 0 ||
        ::fdatasync(store->fd_.get()) != 0) {
      return system_error(fmt::format("cannot truncate '{}'", store->path_), errno);
    }
    store->file_size_ = list.error->offset;
  }
  if (auto written = write_committed_size(store->committed_fd_.get(), store->file_size_); !written) {
    return system_error(fmt::format("cannot write '{}'", committed_path), written.error().code);
  }
  store->entries_ = std::move(list.entries);
  store->entry_offsets_.assign(list.offsets.begin(), list.offsets.end());
  store->size_ = store->entries_.size();

  std::string current = state_dir + "/current.bin";
  std::string target = "lists/" + boot_id + ".bin";
  std::string temporary = current + ".tmp";
  std::filesystem::remove(temporary, ec);
  if (::symlink(target.c_str(), temporary.c_str()) != 0 || ::rename(temporary.c_str(), current.c_str()) != 0) {
    return system_error(fmt::format("cannot link '{}' to '{}'", current, target), errno);
  }
  return store;
}

imarot::Result<std::vector<uint64_t>> LogStore::append(const std::vector<imarot::Entry>& batch) {
  std::vector<uint64_t> offsets;
  if (batch.empty()) return offsets;
  imarot::Bytes records;
  offsets.reserve(batch.size());
  for (const auto& entry : batch) {
    offsets.push_back(file_size_ + records.size());
    imarot::append_binary_record(records, entry);
  }

  if (::lseek(fd_.get(), static_cast<off_t>(file_size_), SEEK_SET) < 0) {
    return system_error(fmt::format("cannot seek in '{}'", path_), errno);
  }
  auto written = write_all(fd_.get(), records.data(), records.size());
  if (written && ::fdatasync(fd_.get()) != 0) written = imarot::Error{std::strerror(errno), errno};
  if (!written) {
    // Leave no partial record behind, so the file still parses.
    (void)::ftruncate(fd_.get(), static_cast<off_t>(file_size_));
    return imarot::Error{fmt::format("cannot append {} entries to '{}': {}", batch.size(), path_,
                                     written.error().message),
                         written.error().code};
  }
  file_size_ += records.size();
  // Not synced: after a power loss it may hold an older, smaller size. A
  // torn record still starts after it, so recovery still removes that record.
  (void)write_committed_size(committed_fd_.get(), file_size_);
  size_ += batch.size();
  if (keep_entries_) {
    entries_.insert(entries_.end(), batch.begin(), batch.end());
    entry_offsets_.insert(entry_offsets_.end(), offsets.begin(), offsets.end());
  }
  return offsets;
}

}  // namespace imarotd
