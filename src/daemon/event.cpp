#include "event.h"

#include <unistd.h>

namespace imarotd {

UniqueFd& UniqueFd::operator=(UniqueFd&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = other.release();
  }
  return *this;
}

UniqueFd::~UniqueFd() {
  if (fd_ >= 0) ::close(fd_);
}

imarot::PolicyFunc policy_func(Hook hook) {
  switch (hook) {
    case Hook::bprm_check:
      return imarot::PolicyFunc::bprm_check;
    case Hook::mmap_check:
      return imarot::PolicyFunc::mmap_check;
    case Hook::mmap_check_reqprot:
      return imarot::PolicyFunc::mmap_check_reqprot;
    case Hook::file_check:
      return imarot::PolicyFunc::file_check;
    case Hook::module_check:
      return imarot::PolicyFunc::module_check;
    case Hook::firmware_check:
      return imarot::PolicyFunc::firmware_check;
    case Hook::kexec_kernel_check:
      return imarot::PolicyFunc::kexec_kernel_check;
    case Hook::kexec_initramfs_check:
      return imarot::PolicyFunc::kexec_initramfs_check;
    case Hook::policy_check:
      return imarot::PolicyFunc::policy_check;
  }
  return imarot::PolicyFunc::file_check;
}

FileEvent copy_event_header(const FileEvent& base, EventKind kind) {
  FileEvent event;
  event.kind = kind;
  event.hook = base.hook;
  event.mask = base.mask;
  event.write_access = base.write_access;
  event.pid = base.pid;
  event.tgid = base.tgid;
  event.comm = base.comm;
  event.creds = base.creds;
  event.file = base.file;
  event.path = base.path;
  event.deleted = base.deleted;
  return event;
}

}  // namespace imarotd
