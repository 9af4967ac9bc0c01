#include "fs_names.h"

#include <spdlog/spdlog.h>

#include "fanotify_source.h"

namespace imarotd {

std::string superblock_type_name(const std::string& mountinfo_fstype) {
  return mountinfo_fstype.substr(0, mountinfo_fstype.find('.'));
}

void FilesystemNames::reload() {
  auto mounts = list_mounted_filesystems(mountinfo_path_);
  if (!mounts) {
    spdlog::warn("fsname= rules: {}; they match no file until the mount table can be read",
                 mounts.error().message);
    return;
  }
  table_.clear();
  for (const auto& fs : *mounts) table_.emplace(fs.dev, superblock_type_name(fs.fstype));
}

std::string FilesystemNames::name_of(dev_t dev, uint64_t fsmagic) {
  std::lock_guard lock(mutex_);
  auto known = known_.find(dev);
  if (known != known_.end() && known->second.fsmagic == fsmagic) return known->second.name;

  // A device not seen yet, or seen with another magic: the mount table has
  // changed since the last read.
  // A device with no listed mount is remembered as "" too, so its events
  // do not read the table each time.
  reload();
  auto listed = table_.find(dev);
  std::string name = listed != table_.end() ? listed->second : std::string();
  known_[dev] = Known{fsmagic, name};
  return name;
}

}  // namespace imarotd
