// The kernel IMA policy language: a parser that reports every error with its
// line and column, a first-match evaluator, the kernel's built-in policies,
// and a printer that writes rules back as policy text.
//
// The grammar and the checks follow the kernel's ima_parse_rule() and
// ima_validate_rule() (security/integrity/ima/ima_policy.c, Linux 6.x), with
// these differences:
//   * template= also takes a custom format string, which the kernel accepts
//     only when it was given as its ima_template_fmt= boot parameter;
//   * a condition or option repeated in one rule is always an error;
//   * dont_audit (documented for kernels from 2025) is accepted;
//   * what depends on the kernel build (KEY_CHECK and keyrings=,
//     imasig|modsig, appraise_flag=) is accepted as if the build enables it,
//     and appraise_algos= takes the algorithms this process's OpenSSL has.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "imarot/hash.h"
#include "imarot/result.h"
#include "imarot/template.h"

namespace imarot {

// Rule actions. imarotd measures only: appraise and dont_appraise rules are
// parsed and validated as the kernel does, kept in the policy, and reported
// as unsupported when they decide an event.
enum class PolicyAction : uint8_t {
  measure,
  dont_measure,
  appraise,
  dont_appraise,
  audit,
  dont_audit,
  hash,
  dont_hash,
};

// Every action belongs to one class, and the first matching rule of a class
// decides that class for an event.
enum class ActionClass : uint8_t { measure, appraise, audit, hash };
inline constexpr size_t kActionClassCount = 4;

std::string_view policy_action_name(PolicyAction action);
std::optional<PolicyAction> policy_action_from_name(std::string_view name);
ActionClass action_class(PolicyAction action);
// True for measure, appraise, audit and hash, false for their dont_ forms.
bool is_positive_action(PolicyAction action);
// True for appraise and dont_appraise, which imarotd does not carry out.
bool is_appraise_action(PolicyAction action);

// The hooks a rule can name with func=.
enum class PolicyFunc : uint8_t {
  file_check,             // open (alias PATH_CHECK)
  mmap_check,             // mmap with PROT_EXEC in the final protection (alias FILE_MMAP)
  mmap_check_reqprot,     // mmap with PROT_EXEC in the protection the application requested
  bprm_check,             // exec, with the caller's credentials
  creds_check,            // exec, with the new credentials
  module_check,           // kernel module load
  firmware_check,         // firmware load
  kexec_kernel_check,     // kexec kernel image load
  kexec_initramfs_check,  // kexec initramfs load
  policy_check,           // policy file load
  kexec_cmdline,          // buffer: the kexec command line
  key_check,              // buffer: a key added to a keyring
  critical_data,          // buffer: kernel critical data
  setxattr_check,         // writes of security.ima (appraise_algos= only)
};
inline constexpr size_t kPolicyFuncCount = 14;

// The canonical name, as the kernel prints it ("FILE_CHECK").
std::string_view policy_func_name(PolicyFunc func);
// Accepts the canonical names and the aliases PATH_CHECK and FILE_MMAP.
std::optional<PolicyFunc> policy_func_from_name(std::string_view name);

// Access mask bits with the kernel's MAY_* values.
inline constexpr uint32_t kMayExec = 0x1;
inline constexpr uint32_t kMayWrite = 0x2;
inline constexpr uint32_t kMayRead = 0x4;
inline constexpr uint32_t kMayAppend = 0x8;

// mask=X matches when the event's access mask equals X. mask=^X matches when
// the event's mask contains X.
struct MaskCondition {
  uint32_t bit = 0;  // one of kMayExec, kMayWrite, kMayRead, kMayAppend
  bool contains = false;
  bool operator==(const MaskCondition&) const = default;
};

enum class IdOperator : uint8_t { equal, less, greater };

// A uid=, euid=, gid=, egid=, fowner= or fgroup= condition: the event's id
// compared with `value` by `op`, as in `uid<1000`.
struct IdCondition {
  IdOperator op = IdOperator::equal;
  uint32_t value = 0;
  bool operator==(const IdCondition&) const = default;
};

// The LSM conditions, in the order the kernel prints them.
enum class LsmField : uint8_t { obj_user, obj_role, obj_type, subj_user, subj_role, subj_type };
inline constexpr size_t kLsmFieldCount = 6;
std::string_view lsm_field_name(LsmField field);

enum class AppraiseType : uint8_t { imasig, imasig_modsig, sigv3 };

// The digest a file's measurement records: the hash of the file content,
// or with digest_type=verity the file's fs-verity digest.
enum class PolicyDigestType : uint8_t { ima, verity };

using FsUuid = std::array<uint8_t, 16>;

// One parsed rule. An unset optional is a condition the rule does not have.
struct PolicyRule {
  PolicyAction action = PolicyAction::measure;

  // Conditions.
  std::optional<PolicyFunc> func;
  std::optional<MaskCondition> mask;
  std::optional<uint64_t> fsmagic;
  std::optional<std::string> fsname;
  std::optional<FsUuid> fsuuid;
  std::optional<IdCondition> uid;     // real uid of the task
  std::optional<IdCondition> euid;    // effective uid (see PolicyQuery::cap_setuid)
  std::optional<IdCondition> gid;     // real gid of the task
  std::optional<IdCondition> egid;    // effective gid (see PolicyQuery::cap_setgid)
  std::optional<IdCondition> fowner;  // file owner
  std::optional<IdCondition> fgroup;  // file group
  // LSM label conditions, indexed by LsmField. imarotd has no LSM hook, so a
  // rule with any of them never matches, as in a kernel whose LSM does not
  // know the label.
  std::array<std::optional<std::string>, kLsmFieldCount> lsm;
  std::optional<std::vector<std::string>> keyrings;  // KEY_CHECK: keyring names
  std::optional<std::vector<std::string>> labels;    // CRITICAL_DATA: data labels (label=)

  // Options.
  std::optional<uint32_t> pcr;
  const TemplateDescriptor* tmpl = nullptr;  // template=, nullptr when not given
  bool permit_directio = false;
  PolicyDigestType digest_type = PolicyDigestType::ima;
  std::optional<AppraiseType> appraise_type;
  bool check_blacklist = false;          // appraise_flag=check_blacklist
  std::vector<HashAlgo> appraise_algos;  // sorted by algorithm number, empty when not given

  bool has_lsm_condition() const;
  bool operator==(const PolicyRule&) const = default;
};

// A parsed policy: rules in evaluation order.
struct Policy {
  std::string source;  // file name or "builtin:NAME", as given to the parser
  std::vector<PolicyRule> rules;
  // rule_lines[i] is the 1-based source line of rules[i], so both have the same size.
  std::vector<size_t> rule_lines;
};

// An error or warning about one token of the policy text.
struct PolicyDiagnostic {
  enum class Severity : uint8_t { error, warning };
  Severity severity = Severity::error;
  std::string source;
  size_t line = 0;    // 1-based
  size_t column = 0;  // 1-based byte offset of the token in its line
  std::string token;  // the offending token as written
  std::string message;
};

// Formats a diagnostic as "SOURCE:LINE:COLUMN: message", with "warning: "
// before the message of a warning.
std::string format_diagnostic(const PolicyDiagnostic& diagnostic);

struct ParsedPolicy {
  // The rules, or no rules at all when there is any error: the kernel also
  // discards a whole policy write when one of its rules is invalid.
  Policy policy;
  std::vector<PolicyDiagnostic> errors;    // every error of the text, in line and column order
  // Valid rules that do not work as their text suggests, such as appraise
  // rules and rules that can never match.
  std::vector<PolicyDiagnostic> warnings;
  bool ok() const { return errors.empty(); }
};

// Parses policy text: one rule per line, tokens separated by spaces or tabs,
// blank lines and lines whose first non-blank character is '#' skipped.
// `source` names the text in diagnostics.
ParsedPolicy parse_policy(std::string_view text, std::string_view source);

// Parses policy text, returning the policy or one Error whose message
// contains every error, one formatted diagnostic per line.
Result<Policy> load_policy(std::string_view text, std::string_view source);

// One term of a printed rule: `key`, an operator and a value, as in
// `uid<1000`. A flag such as permit_directio has op '\0' and an empty value.
struct PolicyTerm {
  std::string_view key;
  char op = '=';
  std::string value;
};

// The conditions and options of a rule in canonical order (the action is
// not included). The order keeps template= after the action and
// digest_type= before appraise_type=, which the kernel requires.
std::vector<PolicyTerm> rule_terms(const PolicyRule& rule);
// Prints a rule as one line of policy text without a newline, for example
// "measure func=FILE_CHECK mask=^MAY_READ uid=0". Parsing the output gives
// back an equal rule.
// NOTE: the printed line can be a few bytes longer than the rule as written
// (fsmagic gains "0x", FILE_MMAP becomes MMAP_CHECK), so a rule written
// within a few bytes of the kernel's 4095-byte line limit may print past it.
std::string format_rule(const PolicyRule& rule);
// Prints every rule, each followed by a newline.
std::string format_policy(const Policy& policy);

// Action classes that an evaluation decides. The others stay undecided.
struct ActionClasses {
  bool measure = true;
  bool appraise = true;
  bool audit = true;
  bool hash = true;
};

// Attributes of one event that rule conditions compare, filled in by the
// event source.
struct PolicyQuery {
  PolicyFunc func = PolicyFunc::file_check;
  uint32_t mask = 0;  // kMay* bits of the access
  // Credentials of the task: real, effective and saved ids.
  uint32_t uid = 0;
  uint32_t euid = 0;
  uint32_t suid = 0;
  uint32_t gid = 0;
  uint32_t egid = 0;
  uint32_t sgid = 0;
  // A task with CAP_SETUID matches euid= when its effective, saved or real
  // uid matches; likewise CAP_SETGID for egid=.
  bool cap_setuid = false;
  bool cap_setgid = false;
  // The file: owner and group as seen through the mount's id mapping, and
  // its filesystem.
  uint32_t fowner = 0;
  uint32_t fgroup = 0;
  uint64_t fsmagic = 0;
  // The filesystem UUID, or nullopt for a filesystem without one, which the
  // kernel compares as 16 zero bytes.
  std::optional<FsUuid> fsuuid;
  std::string fsname;  // filesystem type name, such as "ext4"
  // The keyring name for KEY_CHECK, the data label for CRITICAL_DATA.
  std::optional<std::string> func_data;
  ActionClasses classes;
};

struct PolicyDecision {
  bool measure = false;
  // pcr= and template= of the measure rule that decided; nullopt and nullptr
  // mean the backend's default register and the configured template.
  std::optional<uint32_t> pcr;
  const TemplateDescriptor* tmpl = nullptr;
  // permit_directio and digest_type=verity hold when any matching rule that
  // was still considered carries them, as in the kernel.
  bool permit_directio = false;
  PolicyDigestType digest_type = PolicyDigestType::ima;
  bool audit = false;
  bool hash = false;
  // An appraise rule decided the appraise class. imarotd does not appraise,
  // so the caller only reports it.
  bool appraise = false;
  // For each ActionClass, the index into Policy::rules of the rule that
  // decided it, or nullopt when no rule matched.
  std::array<std::optional<size_t>, kActionClassCount> deciding_rule;
};

// True when every condition of the rule holds for the event.
bool rule_matches(const PolicyRule& rule, const PolicyQuery& query);
// Walks the rules in order. The first matching rule of each requested class
// decides that class, and later rules of a decided class are skipped.
PolicyDecision match_policy(const Policy& policy, const PolicyQuery& query);

// Kernel build options that change the built-in appraise_tcb policy.
struct BuiltinPolicyOptions {
  bool write_policy = true;          // CONFIG_IMA_WRITE_POLICY: appraise POLICY_CHECK with imasig
  bool appraise_signed_init = false;  // CONFIG_IMA_APPRAISE_SIGNED_INIT: fowner=0 rule requires imasig
};

// The names of the built-in policies: tcb, ima_tcb (the original tcb
// policy), critical_data, secure_boot and appraise_tcb.
const std::vector<std::string_view>& builtin_policy_names();

// Returns the text of one or more built-in policies, named like the kernel's
// ima_policy= parameter ("tcb|critical_data"; '|' or spaces separate names),
// assembled in the kernel's order: the dont_measure filesystem rules (with
// tcb or ima_tcb), the tcb or ima_tcb measure rules, secure_boot,
// appraise_tcb, critical_data. Architecture rules and the rules that
// CONFIG_IMA_APPRAISE_REQUIRE_*_SIGS add depend on the machine and the
// kernel build and are not included.
Result<std::string> builtin_policy_text(std::string_view names, const BuiltinPolicyOptions& options = {});
// Parses builtin_policy_text(); the source is "builtin:" followed by `names`.
Result<Policy> builtin_policy(std::string_view names, const BuiltinPolicyOptions& options = {});

}  // namespace imarot
