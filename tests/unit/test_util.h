// Helpers shared by the unit tests.
#pragma once

#include <fstream>
#include <iterator>
#include <string>

#include "imarot/hash.h"

namespace imarot::test {

inline std::string golden_path(const std::string& name) {
  return std::string(IMAROT_TEST_DATA_DIR) + "/kernel-ima-sha256/" + name;
}

inline Bytes read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return Bytes(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

inline std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

inline Digest digest_from_hex(const std::string& hex) { return Digest(*from_hex(hex)); }

}  // namespace imarot::test
