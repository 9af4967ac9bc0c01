// Names of the policy language's words, and the printer that turns rules
// back into policy text.
#include "imarot/policy.h"

#include <algorithm>

#include <fmt/format.h>

namespace imarot {
namespace {

struct ActionName {
  PolicyAction action;
  std::string_view name;
};

constexpr std::array<ActionName, 8> kActionNames = {{
    {PolicyAction::measure, "measure"},
    {PolicyAction::dont_measure, "dont_measure"},
    {PolicyAction::appraise, "appraise"},
    {PolicyAction::dont_appraise, "dont_appraise"},
    {PolicyAction::audit, "audit"},
    {PolicyAction::dont_audit, "dont_audit"},
    {PolicyAction::hash, "hash"},
    {PolicyAction::dont_hash, "dont_hash"},
}};

// Indexed by PolicyFunc.
constexpr std::array<std::string_view, kPolicyFuncCount> kFuncNames = {
    "FILE_CHECK",         "MMAP_CHECK",   "MMAP_CHECK_REQPROT",    "BPRM_CHECK",   "CREDS_CHECK",
    "MODULE_CHECK",       "FIRMWARE_CHECK", "KEXEC_KERNEL_CHECK", "KEXEC_INITRAMFS_CHECK", "POLICY_CHECK",
    "KEXEC_CMDLINE",      "KEY_CHECK",    "CRITICAL_DATA",         "SETXATTR_CHECK",
};

// Indexed by LsmField.
constexpr std::array<std::string_view, kLsmFieldCount> kLsmFieldNames = {
    "obj_user", "obj_role", "obj_type", "subj_user", "subj_role", "subj_type",
};

std::string mask_name(uint32_t bit) {
  switch (bit) {
    case kMayExec:
      return "MAY_EXEC";
    case kMayWrite:
      return "MAY_WRITE";
    case kMayRead:
      return "MAY_READ";
    case kMayAppend:
      return "MAY_APPEND";
    default:
      return fmt::format("{:#x}", bit);
  }
}

char id_operator_char(IdOperator op) {
  switch (op) {
    case IdOperator::less:
      return '<';
    case IdOperator::greater:
      return '>';
    case IdOperator::equal:
      break;
  }
  return '=';
}

std::string join(const std::vector<std::string>& items, char separator) {
  std::string out;
  for (size_t i = 0; i < items.size(); ++i) {
    if (i > 0) out.push_back(separator);
    out += items[i];
  }
  return out;
}

std::string format_uuid(const FsUuid& uuid) {
  std::string hex = to_hex(ByteView(uuid.data(), uuid.size()));
  return fmt::format("{}-{}-{}-{}-{}", hex.substr(0, 8), hex.substr(8, 4), hex.substr(12, 4), hex.substr(16, 4),
                     hex.substr(20));
}

std::string_view appraise_type_name(AppraiseType type) {
  switch (type) {
    case AppraiseType::imasig_modsig:
      return "imasig|modsig";
    case AppraiseType::sigv3:
      return "sigv3";
    case AppraiseType::imasig:
      break;
  }
  return "imasig";
}

}  // namespace

std::string_view policy_action_name(PolicyAction action) {
  return kActionNames.at(static_cast<size_t>(action)).name;
}

std::optional<PolicyAction> policy_action_from_name(std::string_view name) {
  for (const auto& entry : kActionNames) {
    if (entry.name == name) return entry.action;
  }
  return std::nullopt;
}

ActionClass action_class(PolicyAction action) {
  switch (action) {
    case PolicyAction::measure:
    case PolicyAction::dont_measure:
      return ActionClass::measure;
    case PolicyAction::appraise:
    case PolicyAction::dont_appraise:
      return ActionClass::appraise;
    case PolicyAction::audit:
    case PolicyAction::dont_audit:
      return ActionClass::audit;
    case PolicyAction::hash:
    case PolicyAction::dont_hash:
      break;
  }
  return ActionClass::hash;
}

bool is_positive_action(PolicyAction action) {
  return action == PolicyAction::measure || action == PolicyAction::appraise || action == PolicyAction::audit ||
         action == PolicyAction::hash;
}

bool is_appraise_action(PolicyAction action) { return action_class(action) == ActionClass::appraise; }

std::string_view policy_func_name(PolicyFunc func) { return kFuncNames.at(static_cast<size_t>(func)); }

std::optional<PolicyFunc> policy_func_from_name(std::string_view name) {
  // PATH_CHECK and FILE_MMAP are older names of these hooks that the kernel
  // still accepts.
  if (name == "PATH_CHECK") return PolicyFunc::file_check;
  if (name == "FILE_MMAP") return PolicyFunc::mmap_check;
  for (size_t i = 0; i < kFuncNames.size(); ++i) {
    if (kFuncNames[i] == name) return static_cast<PolicyFunc>(i);
  }
  return std::nullopt;
}

std::string_view lsm_field_name(LsmField field) { return kLsmFieldNames.at(static_cast<size_t>(field)); }

bool PolicyRule::has_lsm_condition() const {
  return std::any_of(lsm.begin(), lsm.end(), [](const auto& value) { return value.has_value(); });
}

std::string format_diagnostic(const PolicyDiagnostic& diagnostic) {
  return fmt::format("{}:{}:{}: {}{}", diagnostic.source, diagnostic.line, diagnostic.column,
                     diagnostic.severity == PolicyDiagnostic::Severity::warning ? "warning: " : "",
                     diagnostic.message);
}

Result<Policy> load_policy(std::string_view text, std::string_view source) {
  ParsedPolicy parsed = parse_policy(text, source);
  if (parsed.ok()) return std::move(parsed.policy);

  std::string message;
  for (const auto& error : parsed.errors) {
    if (!message.empty()) message.push_back('\n');
    message += format_diagnostic(error);
  }
  return Error{std::move(message)};
}

std::vector<PolicyTerm> rule_terms(const PolicyRule& rule) {
  std::vector<PolicyTerm> terms;
  auto add = [&terms](std::string_view key, std::string value) { terms.push_back({key, '=', std::move(value)}); };
  auto add_id = [&terms](std::string_view key, const std::optional<IdCondition>& condition) {
    if (condition) terms.push_back({key, id_operator_char(condition->op), std::to_string(condition->value)});
  };

  if (rule.func) add("func", std::string(policy_func_name(*rule.func)));
  if (rule.mask) add("mask", (rule.mask->contains ? "^" : "") + mask_name(rule.mask->bit));
  if (rule.fsmagic) add("fsmagic", fmt::format("0x{:x}", *rule.fsmagic));
  if (rule.fsname) add("fsname", *rule.fsname);
  if (rule.fsuuid) add("fsuuid", format_uuid(*rule.fsuuid));
  add_id("uid", rule.uid);
  add_id("euid", rule.euid);
  add_id("gid", rule.gid);
  add_id("egid", rule.egid);
  add_id("fowner", rule.fowner);
  add_id("fgroup", rule.fgroup);
  for (size_t i = 0; i < kLsmFieldCount; ++i) {
    if (rule.lsm[i]) add(kLsmFieldNames[i], *rule.lsm[i]);
  }
  if (rule.keyrings) add("keyrings", join(*rule.keyrings, '|'));
  if (rule.labels) add("label", join(*rule.labels, '|'));
  if (rule.digest_type == PolicyDigestType::verity) add("digest_type", "verity");
  if (rule.appraise_type) add("appraise_type", std::string(appraise_type_name(*rule.appraise_type)));
  if (rule.check_blacklist) add("appraise_flag", "check_blacklist");
  if (!rule.appraise_algos.empty()) {
    std::vector<std::string> names;
    for (HashAlgo algo : rule.appraise_algos) names.emplace_back(hash_name(algo));
    add("appraise_algos", join(names, ','));
  }
  if (rule.permit_directio) terms.push_back({"permit_directio", '\0', ""});
  if (rule.pcr) add("pcr", std::to_string(*rule.pcr));
  if (rule.tmpl != nullptr) add("template", std::string(rule.tmpl->list_name()));
  return terms;
}

std::string format_rule(const PolicyRule& rule) {
  std::string out(policy_action_name(rule.action));
  for (const PolicyTerm& term : rule_terms(rule)) {
    out.push_back(' ');
    out += term.key;
    if (term.op != '\0') {
      out.push_back(term.op);
      out += term.value;
    }
  }
  return out;
}

std::string format_policy(const Policy& policy) {
  std::string out;
  for (const PolicyRule& rule : policy.rules) {
    out += format_rule(rule);
    out.push_back('\n');
  }
  return out;
}

}  // namespace imarot
