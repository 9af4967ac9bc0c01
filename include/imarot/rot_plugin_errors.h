// Error reporting across the plugin C ABI, shared by the plugins written in
// C++: a RotError or an escaping exception becomes a status code and an
// imarot_rot_error, because no exception may cross the ABI.
#pragma once

#include <cstdio>
#include <exception>
#include <new>

#include <fmt/format.h>

#include "imarot/rot.h"
#include "imarot/rot_plugin.h"

namespace imarot::rot {

// Copies `error` into `out` (when not null) and returns its status code.
inline int report_plugin_error(const RotError& error, imarot_rot_error* out) {
  if (out != nullptr) {
    out->native_code = error.native_code;
    std::snprintf(out->message, sizeof out->message, "%s", error.message.c_str());
  }
  return static_cast<int>(error.status);
}

// Reports the exception being handled; call it only inside a catch block.
inline int report_plugin_exception(imarot_rot_error* out) {
  try {
    throw;
  } catch (const std::bad_alloc&) {
    return report_plugin_error(RotError{Status::failed, 0, "out of memory"}, out);
  } catch (const std::exception& e) {
    return report_plugin_error(RotError{Status::failed, 0, fmt::format("internal error: {}", e.what())}, out);
  } catch (...) {
    return report_plugin_error(RotError{Status::failed, 0, "internal error: unknown exception"}, out);
  }
}

}  // namespace imarot::rot
