// A RoT plugin file opened with dlopen, after its entry symbol and ABI
// version have been checked.
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "imarot/rot.h"
#include "imarot/rot_plugin.h"

namespace imarot::rot {

class PluginLibrary {
 public:
  // Opens imarot-rot-<name>.so in `dir`. See RotBackend::load for the errors.
  static RotResult<std::shared_ptr<PluginLibrary>> open(std::string_view name, const std::string& dir);

  PluginLibrary(const PluginLibrary&) = delete;
  PluginLibrary& operator=(const PluginLibrary&) = delete;
  ~PluginLibrary();

  const imarot_rot_ops* ops() const { return ops_; }
  const std::string& path() const { return path_; }
  // True when the plugin's table includes read_registers and sets it.
  bool has_read_registers() const;
  // True when the plugin's table includes describe_register and sets it.
  bool has_describe_register() const;
  // True when the plugin's table includes check_config and sets it.
  bool has_check_config() const;

 private:
  PluginLibrary(void* handle, std::string path, const imarot_rot_ops* ops)
      : handle_(handle), path_(std::move(path)), ops_(ops) {}

  void* handle_;
  std::string path_;
  const imarot_rot_ops* ops_;
};

// Makes a RotError from a plugin's return code and error record, prefixed
// with `context`. An out-of-range code becomes Status::failed.
RotError error_from_plugin(int code, const imarot_rot_error& error, std::string_view context);

}  // namespace imarot::rot
