// Reading a whole configuration or policy file with the reason of a failure.
#pragma once

#include <string>

#include "imarot/result.h"

namespace imarotd {

// Reads the file at `path`. On failure the error's code is the errno value
// (EISDIR when `path` is a directory) and its message is strerror's text.
imarot::Result<std::string> read_text_file(const std::string& path);

}  // namespace imarotd
