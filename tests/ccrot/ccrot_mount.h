// A ccrot-fs FUSE mount in a temporary directory, started by a test and
// stopped by its pid: the tsm-mr sysfs files or a configfs-tsm report
// directory of a confidential guest, emulated.
#pragma once

#include <sys/types.h>

#include <memory>
#include <string>
#include <vector>

#include "imarot/hash.h"
#include "imarot/result.h"
#include "process.h"

namespace imarot::test {

class CcrotMount {
 public:
  // Mounts ccrot-fs with `arguments` (what follows the mountpoint on its
  // command line) and waits until the mount is visible. Fails, naming the
  // cause, when /dev/fuse or fusermount3 is missing or ccrot-fs exits.
  static Result<std::unique_ptr<CcrotMount>> start(const std::vector<std::string>& arguments);
  // Mounts tsm-mr measurement files given as ccrot-fs register specs.
  static Result<std::unique_ptr<CcrotMount>> tsm_mr(const std::vector<std::string>& files);

  CcrotMount(const CcrotMount&) = delete;
  CcrotMount& operator=(const CcrotMount&) = delete;
  // Unmounts with fusermount3 -u and waits for ccrot-fs to exit, ending it by
  // its pid if it does not.
  ~CcrotMount();

  const std::string& path() const { return mountpoint_; }
  std::string file(const std::string& name) const { return mountpoint_ + "/" + name; }
  // A file in the temporary directory outside the mount.
  std::string scratch(const std::string& name) const { return dir_.file(name); }

 private:
  CcrotMount() = default;

  TempDir dir_;
  std::string mountpoint_;
  std::string log_;
  pid_t pid_ = -1;
};

// The register specs of a TDX guest's measurements directory: MRTD and the
// three IDs read-only, RTMR0-3 writable, RTMR1 left at zero.
std::vector<std::string> tdx_measurement_files();

// The register specs of a realm's measurements directory in `algo`: RIM
// read-only with a fixed value, REM0-3 writable.
std::vector<std::string> realm_measurement_files(HashAlgo algo);

// The fixed initial values the specs above give.
Digest tdx_initial_value(const std::string& name);
Digest realm_rim(HashAlgo algo);

}  // namespace imarot::test
