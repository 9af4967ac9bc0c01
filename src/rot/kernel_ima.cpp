// Detection of kernel IMA and of the PCRs its measurement list extends.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <set>

#include <fmt/format.h>

#include "imarot/rot.h"

namespace imarot::rot {
namespace {

RotResult<Bytes> read_whole_file(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    int error = errno;
    return RotError{Status::invalid, error, fmt::format("cannot open '{}': {}", path, std::strerror(error))};
  }
  Bytes data;
  uint8_t buffer[65536];
  for (;;) {
    ssize_t n = ::read(fd, buffer, sizeof buffer);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      int error = errno;
      ::close(fd);
      return RotError{Status::invalid, error, fmt::format("cannot read '{}': {}", path, std::strerror(error))};
    }
    if (n == 0) break;
    data.insert(data.end(), buffer, buffer + n);
  }
  ::close(fd);
  return data;
}

}  // namespace

RotResult<std::optional<KernelImaList>> find_kernel_ima(const std::string& securityfs_root) {
  // Kernels mount IMA's files at <securityfs>/ima; some distributions also
  // show them under integrity/ima.
  for (const char* relative : {"ima", "integrity/ima"}) {
    std::string dir = fmt::format("{}/{}", securityfs_root, relative);
    struct stat dir_stat {};
    if (::stat(dir.c_str(), &dir_stat) != 0 || !S_ISDIR(dir_stat.st_mode)) continue;

    KernelImaList list;
    list.path = dir + "/binary_runtime_measurements";
    auto data = read_whole_file(list.path);
    if (!data) {
      RotError error = data.error();
      error.message = fmt::format("kernel IMA is active, but its measurement list cannot be checked: {}; run as root",
                                  error.message);
      return error;
    }
    ParsedList parsed = parse_binary_list(*data);
    if (parsed.error && parsed.entries.empty()) {
      return RotError{Status::invalid, 0,
                      fmt::format("kernel IMA is active, but its measurement list '{}' does not parse: {}", list.path,
                                  format_parse_error(*parsed.error))};
    }
    list.entries = parsed.entries.size();
    std::set<uint32_t> registers;
    for (const Entry& entry : parsed.entries) registers.insert(entry.pcr);
    list.registers.assign(registers.begin(), registers.end());
    return std::optional<KernelImaList>(std::move(list));
  }
  return std::optional<KernelImaList>();
}

RotResult<void> check_kernel_ima_conflict(const std::string& securityfs_root, std::string_view backend_id,
                                          const Description& description, uint32_t reg) {
  if (!description.kernel_shared) return Ok{};
  auto found = find_kernel_ima(securityfs_root);
  if (!found) return found.error();
  if (!found->has_value()) return Ok{};
  const KernelImaList& list = **found;
  if (list.entries == 0) return Ok{};
  if (std::find(list.registers.begin(), list.registers.end(), reg) == list.registers.end()) return Ok{};

  return RotError{Status::invalid, 0,
                  fmt::format("backend '{}': kernel IMA is active and its measurement list ({} {} in '{}') "
                              "extends {} {} of the same TPM; two lists extending one register could not be "
                              "verified. Choose another register with \"register\": N in the backend's config, one "
                              "that no other component extends (the kernel list uses {} {})",
                              backend_id, list.entries, list.entries == 1 ? "entry" : "entries", list.path,
                              description.register_kind, reg,
                              description.register_kind, fmt::join(list.registers, ", "))};
}

}  // namespace imarot::rot
