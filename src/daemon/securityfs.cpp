#include "securityfs.h"

#include <linux/magic.h>
#include <sys/vfs.h>

#include <cerrno>
#include <cstring>

#include <fmt/format.h>

#include "text_file.h"

namespace imarotd {

imarot::Result<std::string> read_lsm_list(const std::string& lsm_path) {
  auto text = read_text_file(lsm_path);
  if (text) return text;

  size_t slash = lsm_path.rfind('/');
  std::string directory = slash == std::string::npos || slash == 0 ? std::string("/") : lsm_path.substr(0, slash);
  struct statfs fs {};
  if (::statfs(directory.c_str(), &fs) == 0 && fs.f_type != SECURITYFS_MAGIC) {
    return imarot::Error{fmt::format("{} is not readable: securityfs is not mounted at {} (mount -t securityfs "
                                     "securityfs {})",
                                     lsm_path, directory, directory),
                         text.error().code};
  }
  return imarot::Error{fmt::format("{} is not readable: {}", lsm_path, text.error().message), text.error().code};
}

}  // namespace imarotd
