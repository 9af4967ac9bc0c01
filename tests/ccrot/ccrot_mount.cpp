#include "ccrot_mount.h"

#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <thread>

#include <fmt/format.h>

namespace imarot::test {
namespace {

bool mounted(const std::string& mountpoint, const std::string& parent) {
  struct stat inner {};
  struct stat outer {};
  return ::stat(mountpoint.c_str(), &inner) == 0 && ::stat(parent.c_str(), &outer) == 0 &&
         inner.st_dev != outer.st_dev;
}

}  // namespace

Result<std::unique_ptr<CcrotMount>> CcrotMount::start(const std::vector<std::string>& arguments) {
  if (::access("/dev/fuse", R_OK | W_OK) != 0) {
    return Error{"/dev/fuse is missing or not accessible: these tests mount a FUSE filesystem and need the fuse "
                 "module (modprobe fuse) and root"};
  }
  std::string fusermount = find_tool("fusermount3", FUSERMOUNT3_PATH);
  if (fusermount.empty()) return Error{"fusermount3 not found: install the fuse3 package (scripts/install-deps.sh)"};

  std::unique_ptr<CcrotMount> mount(new CcrotMount());
  mount->mountpoint_ = mount->dir_.file("mnt");
  mount->log_ = mount->dir_.file("ccrot-fs.log");
  if (::mkdir(mount->mountpoint_.c_str(), 0755) != 0) {
    return Error{fmt::format("cannot create the mountpoint '{}'", mount->mountpoint_)};
  }
  std::vector<std::string> argv = {CCROT_FS_PATH, mount->mountpoint_};
  argv.insert(argv.end(), arguments.begin(), arguments.end());
  auto pid = spawn_logged(argv, mount->log_);
  if (!pid) return pid.error();
  mount->pid_ = *pid;

  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (!mounted(mount->mountpoint_, mount->dir_.path())) {
    if (!child_running(mount->pid_)) {
      mount->pid_ = -1;
      return Error{fmt::format("ccrot-fs exited before mounting '{}': {}", mount->mountpoint_,
                               read_text_file(mount->log_))};
    }
    if (std::chrono::steady_clock::now() > deadline) {
      return Error{fmt::format("ccrot-fs did not mount '{}' within 10 s: {}", mount->mountpoint_,
                               read_text_file(mount->log_))};
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return mount;
}

Result<std::unique_ptr<CcrotMount>> CcrotMount::tsm_mr(const std::vector<std::string>& files) {
  std::vector<std::string> arguments = {"tsm-mr"};
  arguments.insert(arguments.end(), files.begin(), files.end());
  return start(arguments);
}

CcrotMount::~CcrotMount() {
  if (pid_ <= 0) return;
  if (mounted(mountpoint_, dir_.path())) {
    run_command({find_tool("fusermount3", FUSERMOUNT3_PATH), "-u", mountpoint_}, std::chrono::seconds(10));
  }
  // ccrot-fs exits once unmounted.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (child_running(pid_)) {
    if (std::chrono::steady_clock::now() > deadline) {
      stop_child(pid_, SIGTERM, std::chrono::seconds(2));
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  // A ccrot-fs killed while mounted leaves the mount behind.
  if (mounted(mountpoint_, dir_.path())) {
    run_command({find_tool("fusermount3", FUSERMOUNT3_PATH), "-u", "-z", mountpoint_}, std::chrono::seconds(10));
  }
}

std::vector<std::string> tdx_measurement_files() {
  return {fmt::format("mrtd:sha384=ro,{}", tdx_initial_value("mrtd").hex()),
          fmt::format("rtmr0:sha384=rw,{}", tdx_initial_value("rtmr0").hex()),
          "rtmr1:sha384=rw",
          fmt::format("rtmr2:sha384=rw,{}", tdx_initial_value("rtmr2").hex()),
          "rtmr3:sha384=rw",
          fmt::format("mrconfigid=ro,{}", Digest::filled(48, 0xc1).hex()),
          fmt::format("mrowner=ro,{}", Digest::filled(48, 0xc2).hex()),
          fmt::format("mrownerconfig=ro,{}", Digest::filled(48, 0xc3).hex())};
}

std::vector<std::string> realm_measurement_files(HashAlgo algo) {
  std::string hash(hash_name(algo));
  return {fmt::format("rim:{}=ro,{}", hash, realm_rim(algo).hex()), fmt::format("rem0:{}=rw", hash),
          fmt::format("rem1:{}=rw", hash), fmt::format("rem2:{}=rw", hash), fmt::format("rem3:{}=rw", hash)};
}

Digest tdx_initial_value(const std::string& name) {
  if (name == "mrtd") return Digest::filled(48, 0xa1);
  if (name == "rtmr0") return Digest::filled(48, 0xb0);
  if (name == "rtmr2") return Digest::filled(48, 0xb2);
  return Digest::zeros(48);
}

Digest realm_rim(HashAlgo algo) { return Digest::filled(digest_size(algo), 0x71); }

}  // namespace imarot::test
