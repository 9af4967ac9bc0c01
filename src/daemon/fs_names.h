// Filesystem type names by device, for the policy's fsname= condition.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <mutex>
#include <string>
#include <unordered_map>

namespace imarotd {

// The kernel compares fsname= with the superblock's type name ("ext4",
// "tmpfs", "fuse"). /proc/self/mountinfo shows that name, with ".SUBTYPE"
// appended for FUSE filesystems that set a subtype. Thread-safe.
class FilesystemNames {
 public:
  explicit FilesystemNames(std::string mountinfo_path = "/proc/self/mountinfo")
      : mountinfo_path_(std::move(mountinfo_path)) {}

  // Returns the type name of the filesystem on `dev`, or "" when no mount
  // of it is listed. `fsmagic` is the filesystem's statfs magic: a cached
  // name is used only while the magic matches, so a device number reused
  // by a filesystem of another type after an unmount reads the table again.
  std::string name_of(dev_t dev, uint64_t fsmagic);

 private:
  struct Known {
    uint64_t fsmagic = 0;
    std::string name;
  };
  void reload();

  std::string mountinfo_path_;
  std::mutex mutex_;
  std::unordered_map<dev_t, std::string> table_;  // from the last read of mountinfo
  std::unordered_map<dev_t, Known> known_;
};

// The superblock type name from a mountinfo fstype field: "fuse.sshfs"
// becomes "fuse".
std::string superblock_type_name(const std::string& mountinfo_fstype);

}  // namespace imarotd
