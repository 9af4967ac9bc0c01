// The tsm-mr sysfs interface (Linux 6.16 and later): one binary file per
// measurement register in /sys/class/misc/<device>/measurements/, named
// "<register>:<hash>" ("rtmr2:sha384"), or "<register>" for a value without
// a hash algorithm ("mrconfigid"). A read returns the raw value. A write of
// exactly the register's size at offset 0 extends a writable register, and
// the kernel rejects any other write with EINVAL. Opening a file without a
// write bit for writing fails with EACCES, also for root.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "cc_errors.h"

namespace imarot::cc {

struct MrFile {
  std::string name;              // register name, the part before ':'
  std::string hash_name;         // the part after ':', empty without one
  std::optional<HashAlgo> algo;  // nullopt without a hash or for a name imarot does not know
  std::string path;
  size_t size = 0;        // st_size, which sysfs sets to the register size
  bool writable = false;  // the mode has a write bit
};

// Lists the register files of a measurements directory, sorted by file name.
// Subdirectories and other non-regular files are skipped. The error names the
// directory when it is missing or unreadable.
RotResult<std::vector<MrFile>> list_measurement_files(const std::string& dir);

// Reads the value of `file`, which must be exactly `size` bytes.
RotResult<Digest> read_measurement(const MrFile& file, size_t size);

// Extends `file` with `input` by one write of its whole size at offset 0.
RotResult<void> extend_measurement(const MrFile& file, const Digest& input);

}  // namespace imarot::cc
