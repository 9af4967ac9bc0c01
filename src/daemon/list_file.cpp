#include "list_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <string>

#include <fmt/format.h>

namespace imarotd {
namespace {

// Entries rendered and written per write() call of extend_list_file().
constexpr uint64_t kWriteStep = 8192;

bool write_all(int fd, const char* data, size_t size) {
  while (size > 0) {
    ssize_t n = ::write(fd, data, size);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return false;
    if (n == 0) {
      errno = EIO;
      return false;
    }
    data += n;
    size -= static_cast<size_t>(n);
  }
  return true;
}

}  // namespace

std::optional<ListFile> create_list_file() {
  int fd = ::memfd_create("imarot-measurements", MFD_CLOEXEC | MFD_ALLOW_SEALING);
  if (fd < 0) return std::nullopt;
  ListFile file;
  file.fd = UniqueFd(fd);
  return file;
}

std::optional<ListFile> copy_list_file(const ListFile& source) {
  std::optional<ListFile> copy = create_list_file();
  if (!copy) return std::nullopt;
  // Explicit offsets leave the file offset of `source` alone. The copy
  // ends at the new file's offset, where extend_list_file() appends.
  loff_t in = 0;
  while (static_cast<uint64_t>(in) < source.bytes) {
    ssize_t n = ::copy_file_range(source.fd.get(), &in, copy->fd.get(), nullptr,
                                  static_cast<size_t>(source.bytes - static_cast<uint64_t>(in)), 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return std::nullopt;
    if (n == 0) {
      errno = EIO;  // the sealed source cannot shrink, so this is a kernel failure
      return std::nullopt;
    }
  }
  copy->entries = source.entries;
  copy->bytes = source.bytes;
  return copy;
}

bool extend_list_file(ListFile& file, const CommittedList& list, CommittedList::Format format, uint64_t end) {
  std::string buffer;
  while (file.entries < end) {
    buffer.clear();
    uint64_t rendered = list.render(format, file.entries, std::min(end, file.entries + kWriteStep), buffer);
    if (rendered == 0) break;  // `end` is past the list
    if (!write_all(file.fd.get(), buffer.data(), buffer.size())) {
      // Cut a partial step off again, so that the file contains whole records.
      int code = errno;
      (void)::ftruncate(file.fd.get(), static_cast<off_t>(file.bytes));
      (void)::lseek(file.fd.get(), static_cast<off_t>(file.bytes), SEEK_SET);
      errno = code;
      return false;
    }
    file.entries += rendered;
    file.bytes += buffer.size();
  }
  return true;
}

bool seal_list_file(const ListFile& file) {
  return ::fcntl(file.fd.get(), F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL) == 0;
}

int reopen_read_only(const ListFile& file) {
  return ::open(fmt::format("/proc/self/fd/{}", file.fd.get()).c_str(), O_RDONLY | O_CLOEXEC);
}

}  // namespace imarotd
