// Finding, opening and checking RoT plugin files.
#include <dirent.h>
#include <dlfcn.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>

#include <fmt/format.h>

#include "plugin_library.h"

namespace imarot::rot {
namespace {

constexpr std::string_view kPrefix = "imarot-rot-";
constexpr std::string_view kSuffix = ".so";

// Plugin names become file names and the 32-byte description name, so they
// are kept to lower-case letters, digits, '-' and '_'.
bool valid_plugin_name(std::string_view name) {
  if (name.empty() || name.size() > 31) return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
  });
}

std::string available_text(const std::string& dir) {
  std::vector<std::string> names = list_plugins(dir);
  if (names.empty()) return "the directory contains no plugins";
  return fmt::format("available: {}", fmt::join(names, ", "));
}

RotError invalid(std::string message) { return RotError{Status::invalid, 0, std::move(message)}; }

}  // namespace

std::string_view status_name(Status status) {
  switch (status) {
    case Status::ok: return "ok";
    case Status::invalid: return "invalid";
    case Status::retry: return "retry";
    case Status::unavailable: return "unavailable";
    case Status::read_only: return "read-only";
    case Status::unallocated: return "unallocated";
    case Status::failed: return "failed";
  }
  return "unknown";
}

std::string plugin_file_name(std::string_view name) { return fmt::format("{}{}{}", kPrefix, name, kSuffix); }

std::string default_plugin_dir() {
  const char* env = std::getenv("IMAROTD_PLUGIN_DIR");
  if (env != nullptr && *env != '\0') return env;
  return IMAROT_DEFAULT_PLUGIN_DIR;
}

std::vector<std::string> list_plugins(const std::string& dir) {
  std::vector<std::string> names;
  DIR* stream = ::opendir(dir.c_str());
  if (stream == nullptr) return names;
  while (const dirent* item = ::readdir(stream)) {
    std::string_view file = item->d_name;
    if (file.size() <= kPrefix.size() + kSuffix.size()) continue;
    if (file.substr(0, kPrefix.size()) != kPrefix || file.substr(file.size() - kSuffix.size()) != kSuffix) continue;
    std::string_view name = file.substr(kPrefix.size(), file.size() - kPrefix.size() - kSuffix.size());
    if (valid_plugin_name(name)) names.emplace_back(name);
  }
  ::closedir(stream);
  std::sort(names.begin(), names.end());
  return names;
}

RotError error_from_plugin(int code, const imarot_rot_error& error, std::string_view context) {
  Status status = code >= static_cast<int>(Status::invalid) && code <= static_cast<int>(Status::failed)
                      ? static_cast<Status>(code)
                      : Status::failed;
  // The plugin may have filled the whole buffer without a terminating NUL.
  std::string message(error.message, strnlen(error.message, sizeof error.message));
  if (message.empty()) message = fmt::format("returned status {} without a message", code);
  return RotError{status, error.native_code, fmt::format("{}: {}", context, message)};
}

RotResult<std::shared_ptr<PluginLibrary>> PluginLibrary::open(std::string_view name, const std::string& dir) {
  if (!valid_plugin_name(name)) {
    return invalid(fmt::format("invalid backend name '{}': expected 1 to 31 characters of a-z, 0-9, '-' and '_'",
                               name));
  }

  struct stat dir_stat {};
  bool found = ::stat(dir.c_str(), &dir_stat) == 0;
  if (!found || !S_ISDIR(dir_stat.st_mode)) {
    std::string problem = !found && errno == ENOENT ? "does not exist"
                          : !found                  ? fmt::format("cannot be read: {}", std::strerror(errno))
                                                    : "is not a directory";
    return invalid(fmt::format("RoT plugin directory '{}' {}; give another with \"plugin_directory\" in "
                               "imarotd.json, rotctl's --plugin-dir or IMAROTD_PLUGIN_DIR",
                               dir, problem));
  }

  std::string path = fmt::format("{}/{}", dir, plugin_file_name(name));
  struct stat file_stat {};
  if (::stat(path.c_str(), &file_stat) != 0) {
    return invalid(fmt::format("no RoT backend named '{}': '{}' not found; {}", name, path, available_text(dir)));
  }

  // RTLD_LOCAL keeps one plugin's symbols from resolving another's.
  void* handle = ::dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (handle == nullptr) {
    const char* reason = ::dlerror();
    return invalid(fmt::format("cannot load RoT plugin '{}': {}", path, reason != nullptr ? reason : "unknown error"));
  }
  auto close_and_fail = [handle](std::string message) {
    ::dlclose(handle);
    return invalid(std::move(message));
  };

  ::dlerror();
  void* symbol = ::dlsym(handle, IMAROT_ROT_ENTRY_SYMBOL);
  if (symbol == nullptr) {
    return close_and_fail(fmt::format("'{}' is not a RoT plugin: it does not export {}()", path,
                                      IMAROT_ROT_ENTRY_SYMBOL));
  }
  // dlsym returns data pointers; POSIX guarantees the conversion to a
  // function pointer works.
  imarot_rot_plugin_fn entry = nullptr;
  std::memcpy(&entry, &symbol, sizeof entry);
  const imarot_rot_ops* ops = entry();
  if (ops == nullptr) return close_and_fail(fmt::format("'{}': {}() returned no operations table", path,
                                                        IMAROT_ROT_ENTRY_SYMBOL));

  if (ops->abi_version != IMAROT_ROT_ABI_VERSION) {
    return close_and_fail(fmt::format("'{}' was built for RoT plugin ABI version {}, but this program uses version "
                                      "{}; rebuild the plugin against this version's imarot/rot_plugin.h",
                                      path, ops->abi_version, IMAROT_ROT_ABI_VERSION));
  }
  if (ops->struct_size < IMAROT_ROT_OPS_V1_MIN_SIZE) {
    return close_and_fail(fmt::format("'{}': its operations table is {} bytes, smaller than the {} bytes of ABI "
                                      "version {}",
                                      path, ops->struct_size, IMAROT_ROT_OPS_V1_MIN_SIZE, IMAROT_ROT_ABI_VERSION));
  }
  if (ops->init == nullptr || ops->describe == nullptr || ops->check_register == nullptr ||
      ops->extend == nullptr || ops->read == nullptr || ops->boot_aggregate == nullptr || ops->close == nullptr) {
    return close_and_fail(fmt::format("'{}': its operations table leaves a required operation unset", path));
  }
  if (ops->name == nullptr || name != ops->name) {
    return close_and_fail(fmt::format("'{}' names itself '{}', not '{}'", path,
                                      ops->name != nullptr ? ops->name : "", name));
  }
  return std::shared_ptr<PluginLibrary>(new PluginLibrary(handle, std::move(path), ops));
}

PluginLibrary::~PluginLibrary() { ::dlclose(handle_); }

bool PluginLibrary::has_read_registers() const {
  return ops_->struct_size >= offsetof(imarot_rot_ops, read_registers) + sizeof ops_->read_registers &&
         ops_->read_registers != nullptr;
}

bool PluginLibrary::has_describe_register() const {
  return ops_->struct_size >= offsetof(imarot_rot_ops, describe_register) + sizeof ops_->describe_register &&
         ops_->describe_register != nullptr;
}

bool PluginLibrary::has_check_config() const {
  return ops_->struct_size >= offsetof(imarot_rot_ops, check_config) + sizeof ops_->check_config &&
         ops_->check_config != nullptr;
}

}  // namespace imarot::rot
