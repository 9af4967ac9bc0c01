// The kernel's built-in policies (security/integrity/ima/ima_policy.c, Linux
// 6.x), written as policy text in canonical form.
#include <array>
#include <span>

#include <fmt/format.h>

#include "imarot/policy.h"

namespace imarot {
namespace {

struct Filesystem {
  std::string_view name;
  uint64_t magic;
};

// Filesystems that tcb and ima_tcb never measure, in the kernel's order.
// ramfs is not among them.
constexpr std::array<Filesystem, 13> kDontMeasureFilesystems = {{
    {"proc", 0x9fa0},
    {"sysfs", 0x62656572},
    {"debugfs", 0x64626720},
    {"tmpfs", 0x01021994},
    {"devpts", 0x1cd1},
    {"binfmt_misc", 0x42494e4d},
    {"securityfs", 0x73636673},
    {"selinuxfs", 0xf97cff8c},
    {"smackfs", 0x43415d53},
    {"cgroup", 0x27e0eb},
    {"cgroup2", 0x63677270},
    {"nsfs", 0x6e736673},
    {"efivarfs", 0xde5e81e4},
}};

// Filesystems that appraise_tcb never appraises, in the kernel's order,
// which differs from the list above and includes ramfs.
constexpr std::array<Filesystem, 14> kDontAppraiseFilesystems = {{
    {"proc", 0x9fa0},
    {"sysfs", 0x62656572},
    {"debugfs", 0x64626720},
    {"tmpfs", 0x01021994},
    {"ramfs", 0x858458f6},
    {"devpts", 0x1cd1},
    {"binfmt_misc", 0x42494e4d},
    {"securityfs", 0x73636673},
    {"selinuxfs", 0xf97cff8c},
    {"smackfs", 0x43415d53},
    {"nsfs", 0x6e736673},
    {"efivarfs", 0xde5e81e4},
    {"cgroup", 0x27e0eb},
    {"cgroup2", 0x63677270},
}};

constexpr std::string_view kTcbRules =
    "measure func=MMAP_CHECK mask=MAY_EXEC\n"
    "measure func=BPRM_CHECK mask=MAY_EXEC\n"
    "measure func=FILE_CHECK mask=^MAY_READ euid=0\n"
    "measure func=FILE_CHECK mask=^MAY_READ uid=0\n"
    "measure func=MODULE_CHECK\n"
    "measure func=FIRMWARE_CHECK\n"
    "measure func=POLICY_CHECK\n";

constexpr std::string_view kOriginalTcbRules =
    "measure func=MMAP_CHECK mask=MAY_EXEC\n"
    "measure func=BPRM_CHECK mask=MAY_EXEC\n"
    "measure func=FILE_CHECK mask=MAY_READ uid=0\n"
    "measure func=MODULE_CHECK\n"
    "measure func=FIRMWARE_CHECK\n";

constexpr std::string_view kSecureBootRules =
    "appraise func=MODULE_CHECK appraise_type=imasig\n"
    "appraise func=FIRMWARE_CHECK appraise_type=imasig\n"
    "appraise func=KEXEC_KERNEL_CHECK appraise_type=imasig\n"
    "appraise func=POLICY_CHECK appraise_type=imasig\n";

constexpr std::string_view kCriticalDataRules = "measure func=CRITICAL_DATA\n";

std::string filesystem_rules(std::string_view action, std::span<const Filesystem> filesystems) {
  std::string out;
  for (const auto& fs : filesystems) out += fmt::format("{} fsmagic=0x{:x}\n", action, fs.magic);
  return out;
}

std::string appraise_tcb_rules(const BuiltinPolicyOptions& options) {
  std::string out = filesystem_rules("dont_appraise", kDontAppraiseFilesystems);
  if (options.write_policy) out += "appraise func=POLICY_CHECK appraise_type=imasig\n";
  out += options.appraise_signed_init ? "appraise fowner=0 appraise_type=imasig\n" : "appraise fowner=0\n";
  return out;
}

}  // namespace

const std::vector<std::string_view>& builtin_policy_names() {
  static const std::vector<std::string_view> kNames = {"tcb", "ima_tcb", "critical_data", "secure_boot",
                                                       "appraise_tcb"};
  return kNames;
}

Result<std::string> builtin_policy_text(std::string_view names, const BuiltinPolicyOptions& options) {
  bool tcb = false;
  bool original_tcb = false;
  bool secure_boot = false;
  bool appraise_tcb = false;
  bool critical_data = false;

  size_t start = 0;
  bool any = false;
  while (start <= names.size()) {
    size_t end = names.find_first_of("| ", start);
    if (end == std::string_view::npos) end = names.size();
    std::string_view name = names.substr(start, end - start);
    start = end + 1;
    if (name.empty()) continue;
    any = true;

    if (name == "tcb") {
      tcb = true;
    } else if (name == "ima_tcb") {
      original_tcb = true;
    } else if (name == "secure_boot") {
      secure_boot = true;
    } else if (name == "appraise_tcb") {
      appraise_tcb = true;
    } else if (name == "critical_data") {
      critical_data = true;
    } else if (name == "fail_securely") {
      return Error{"'fail_securely' is a kernel flag for appraisal, not a set of rules; built-in policies are tcb, "
                   "ima_tcb, critical_data, secure_boot and appraise_tcb"};
    } else {
      return Error{fmt::format("unknown built-in policy '{}'; expected tcb, ima_tcb, critical_data, secure_boot or "
                               "appraise_tcb, several joined with '|'",
                               name)};
    }
  }
  if (!any) {
    return Error{"no built-in policy named; expected tcb, ima_tcb, critical_data, secure_boot or appraise_tcb"};
  }
  if (tcb && original_tcb) {
    return Error{"'tcb' and 'ima_tcb' select two versions of the same measure rules; choose one"};
  }

  std::string text;
  if (tcb || original_tcb) {
    text += filesystem_rules("dont_measure", kDontMeasureFilesystems);
    text += tcb ? kTcbRules : kOriginalTcbRules;
  }
  if (secure_boot) text += kSecureBootRules;
  if (appraise_tcb) text += appraise_tcb_rules(options);
  if (critical_data) text += kCriticalDataRules;
  return text;
}

Result<Policy> builtin_policy(std::string_view names, const BuiltinPolicyOptions& options) {
  auto text = builtin_policy_text(names, options);
  if (!text) return text.error();
  return load_policy(*text, fmt::format("builtin:{}", names));
}

}  // namespace imarot
