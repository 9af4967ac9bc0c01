// Parser of the kernel IMA policy language. Each line is split into tokens,
// each token is parsed on its own, and a rule whose tokens all parse is then
// checked as a whole the way the kernel's ima_validate_rule() checks it.
// Every error of every line is collected.
#include <algorithm>
#include <cstdint>
#include <limits>

#include <fmt/format.h>

#include "imarot/policy.h"

namespace imarot {
namespace {

// Maximum length of a policy line the kernel can read, because it cuts each
// write() at PAGE_SIZE - 1 bytes and parses one line per write.
constexpr size_t kMaxLineLength = 4095;
// pcr= must be below the number of bits of the kernel's per-file
// measured_pcrs bitmap, an unsigned long (64 bits on 64-bit kernels).
constexpr uint64_t kMaxPcr = 63;
// The kernel's INVALID_UID and INVALID_GID are (uid_t)-1, so the largest id
// a rule can name is one less.
constexpr uint64_t kMaxId = 0xfffffffeULL;

// Everything a token can set. Each appears at most once per rule.
enum class Key : uint8_t {
  action,
  func,
  mask,
  fsmagic,
  fsname,
  fsuuid,
  uid,
  euid,
  gid,
  egid,
  fowner,
  fgroup,
  obj_user,
  obj_role,
  obj_type,
  subj_user,
  subj_role,
  subj_type,
  keyrings,
  label,
  digest_type,
  appraise_type,
  appraise_flag,
  appraise_algos,
  permit_directio,
  pcr,
  template_name,
};
constexpr size_t kKeyCount = 27;

struct KeySpec {
  std::string_view name;
  Key key;
  bool has_value;  // false only for permit_directio
  bool ordered;    // also compares with '<' and '>'
};

// Every keyword except the actions, in the order the error messages list them.
constexpr std::array<KeySpec, kKeyCount - 1> kKeySpecs = {{
    {"func", Key::func, true, false},
    {"mask", Key::mask, true, false},
    {"fsmagic", Key::fsmagic, true, false},
    {"fsname", Key::fsname, true, false},
    {"fsuuid", Key::fsuuid, true, false},
    {"uid", Key::uid, true, true},
    {"euid", Key::euid, true, true},
    {"gid", Key::gid, true, true},
    {"egid", Key::egid, true, true},
    {"fowner", Key::fowner, true, true},
    {"fgroup", Key::fgroup, true, true},
    {"obj_user", Key::obj_user, true, false},
    {"obj_role", Key::obj_role, true, false},
    {"obj_type", Key::obj_type, true, false},
    {"subj_user", Key::subj_user, true, false},
    {"subj_role", Key::subj_role, true, false},
    {"subj_type", Key::subj_type, true, false},
    {"keyrings", Key::keyrings, true, false},
    {"label", Key::label, true, false},
    {"digest_type", Key::digest_type, true, false},
    {"appraise_type", Key::appraise_type, true, false},
    {"appraise_flag", Key::appraise_flag, true, false},
    {"appraise_algos", Key::appraise_algos, true, false},
    {"permit_directio", Key::permit_directio, false, false},
    {"pcr", Key::pcr, true, false},
    {"template", Key::template_name, true, false},
}};

constexpr std::string_view kActionList =
    "measure, dont_measure, appraise, dont_appraise, audit, dont_audit, hash, dont_hash";
constexpr std::string_view kFuncList =
    "FILE_CHECK, MMAP_CHECK, MMAP_CHECK_REQPROT, BPRM_CHECK, CREDS_CHECK, MODULE_CHECK, FIRMWARE_CHECK, "
    "KEXEC_KERNEL_CHECK, KEXEC_INITRAMFS_CHECK, POLICY_CHECK, KEXEC_CMDLINE, KEY_CHECK, CRITICAL_DATA or "
    "SETXATTR_CHECK (PATH_CHECK and FILE_MMAP are accepted as older names of FILE_CHECK and MMAP_CHECK)";
constexpr std::string_view kModuleFuncList = "MODULE_CHECK, KEXEC_KERNEL_CHECK or KEXEC_INITRAMFS_CHECK";

// Maximum number of policy bytes an error message repeats from one token.
// A longer token, such as a run of binary bytes, is cut there and ends in
// "...".
constexpr size_t kMaxEchoedBytes = 80;

// Returns policy text for an error message: at most kMaxEchoedBytes of it,
// with each byte outside printable ASCII, and each backslash, written as
// \xNN, so that binary input cannot reach the terminal as control bytes.
std::string echo(std::string_view text) {
  std::string out;
  for (size_t i = 0; i < text.size() && i < kMaxEchoedBytes; ++i) {
    auto byte = static_cast<unsigned char>(text[i]);
    if (byte >= 0x20 && byte < 0x7f && byte != '\\') {
      out.push_back(static_cast<char>(byte));
    } else {
      out += fmt::format("\\x{:02x}", byte);
    }
  }
  if (text.size() > kMaxEchoedBytes) out += "...";
  return out;
}

const KeySpec* find_key(std::string_view name) {
  for (const auto& spec : kKeySpecs) {
    if (spec.name == name) return &spec;
  }
  return nullptr;
}

std::string_view key_name(Key key) {
  if (key == Key::action) return "action";
  for (const auto& spec : kKeySpecs) {
    if (spec.key == key) return spec.name;
  }
  return "?";
}

std::string keyword_list() {
  std::string out;
  for (const auto& spec : kKeySpecs) {
    if (!out.empty()) out += ", ";
    out += spec.name;
    if (spec.has_value) out += "=";
  }
  return out;
}

bool is_lsm_key(Key key) { return key >= Key::obj_user && key <= Key::subj_type; }

LsmField lsm_field_of(Key key) {
  return static_cast<LsmField>(static_cast<uint8_t>(key) - static_cast<uint8_t>(Key::obj_user));
}

// Describes the expected value of each keyword, for error messages.
std::string expected_value(Key key) {
  switch (key) {
    case Key::func:
      return fmt::format("one of {}", kFuncList);
    case Key::mask:
      return "MAY_READ, MAY_WRITE, MAY_APPEND or MAY_EXEC, optionally preceded by '^' to match an access that "
             "includes it";
    case Key::fsmagic:
      return "a hexadecimal filesystem magic number such as 0x9fa0 (at most 64 bits)";
    case Key::fsname:
      return "a filesystem type name such as ext4";
    case Key::fsuuid:
      return "a UUID in the form 0e5c4d27-3f8b-4a4e-9c1d-2b7a5f6e8d90";
    case Key::uid:
    case Key::euid:
    case Key::gid:
    case Key::egid:
    case Key::fowner:
    case Key::fgroup:
      return fmt::format("a decimal id from 0 to {}", kMaxId);
    case Key::keyrings:
      return "keyring names separated by '|', such as .ima|.builtin_trusted_keys";
    case Key::label:
      return "data labels separated by '|', such as selinux|kernel_info";
    case Key::digest_type:
      return "verity";
    case Key::appraise_type:
      return "imasig, imasig|modsig or sigv3";
    case Key::appraise_flag:
      return "check_blacklist";
    case Key::appraise_algos:
      return "hash algorithm names separated by ',', such as sha256,sha384";
    case Key::pcr:
      return fmt::format("a decimal register index from 0 to {}", kMaxPcr);
    case Key::template_name:
      return "a template name (ima, ima-ng, ima-ngv2, ima-sig, ima-sigv2, ima-buf, ima-modsig, evm-sig) or a "
             "format string such as d-ng|n-ng|sig";
    default:
      return "an LSM label";
  }
}

// The names of all template fields, for error messages: "d, n, d-ng, ...".
std::string template_field_list() {
  std::string out;
  for (auto id = static_cast<uint8_t>(FieldId::d); id <= static_cast<uint8_t>(FieldId::imode); ++id) {
    if (!out.empty()) out += ", ";
    out += field_id_name(static_cast<FieldId>(id));
  }
  return out;
}

// Parses an unsigned number the way the kernel's kstrtoul() does: an
// optional '+', for base 16 an optional "0x" or "0X", then at least one digit
// and nothing else. Values that do not fit in 64 bits are rejected.
std::optional<uint64_t> parse_kernel_unsigned(std::string_view text, unsigned base) {
  if (!text.empty() && text.front() == '+') text.remove_prefix(1);
  if (base == 16 && text.size() >= 2 && text[0] == '0' && (text[1] == 'x' || text[1] == 'X')) text.remove_prefix(2);
  if (text.empty()) return std::nullopt;

  uint64_t value = 0;
  for (char c : text) {
    unsigned digit = 0;
    if (c >= '0' && c <= '9') {
      digit = static_cast<unsigned>(c - '0');
    } else if (c >= 'a' && c <= 'f') {
      digit = static_cast<unsigned>(c - 'a') + 10;
    } else if (c >= 'A' && c <= 'F') {
      digit = static_cast<unsigned>(c - 'A') + 10;
    } else {
      return std::nullopt;
    }
    if (digit >= base) return std::nullopt;
    if (value > (std::numeric_limits<uint64_t>::max() - digit) / base) return std::nullopt;
    value = value * base + digit;
  }
  return value;
}

// Returns the candidate closest to a misspelt word, when it is within two
// edits and the word is long enough for that to be a likely typo.
std::optional<std::string_view> closest_word(std::string_view word, const std::vector<std::string_view>& candidates) {
  std::optional<std::string_view> best;
  size_t best_distance = 3;
  for (std::string_view candidate : candidates) {
    // Levenshtein distance with one row of the table.
    std::vector<size_t> row(candidate.size() + 1);
    for (size_t j = 0; j <= candidate.size(); ++j) row[j] = j;
    for (size_t i = 1; i <= word.size(); ++i) {
      size_t diagonal = row[0];
      row[0] = i;
      for (size_t j = 1; j <= candidate.size(); ++j) {
        size_t above = row[j];
        size_t substitution = diagonal + (word[i - 1] == candidate[j - 1] ? 0 : 1);
        row[j] = std::min({above + 1, row[j - 1] + 1, substitution});
        diagonal = above;
      }
    }
    size_t distance = row[candidate.size()];
    if (distance < best_distance && distance * 3 <= word.size()) {
      best = candidate;
      best_distance = distance;
    }
  }
  return best;
}

std::string suggestion(std::string_view word, const std::vector<std::string_view>& candidates) {
  auto best = closest_word(word, candidates);
  return best ? fmt::format(" (did you mean '{}'?)", *best) : std::string();
}

std::vector<std::string_view> keyword_candidates() {
  std::vector<std::string_view> words;
  for (const auto& spec : kKeySpecs) words.push_back(spec.name);
  for (std::string_view action : {"measure", "dont_measure", "appraise", "dont_appraise", "audit", "dont_audit",
                                  "hash", "dont_hash"}) {
    words.push_back(action);
  }
  return words;
}

std::vector<std::string_view> func_candidates() {
  std::vector<std::string_view> words;
  for (size_t i = 0; i < kPolicyFuncCount; ++i) words.push_back(policy_func_name(static_cast<PolicyFunc>(i)));
  return words;
}

std::optional<uint8_t> hex_value(char c) {
  if (c >= '0' && c <= '9') return static_cast<uint8_t>(c - '0');
  if (c >= 'a' && c <= 'f') return static_cast<uint8_t>(c - 'a' + 10);
  if (c >= 'A' && c <= 'F') return static_cast<uint8_t>(c - 'A' + 10);
  return std::nullopt;
}

// Parses the 36-character UUID form, hex digits in either case, bytes in
// the order written.
std::optional<FsUuid> parse_uuid(std::string_view text) {
  if (text.size() != 36) return std::nullopt;
  FsUuid uuid{};
  size_t byte = 0;
  size_t i = 0;
  while (i < text.size()) {
    if (i == 8 || i == 13 || i == 18 || i == 23) {
      if (text[i] != '-') return std::nullopt;
      ++i;
      continue;
    }
    auto high = hex_value(text[i]);
    auto low = hex_value(text[i + 1]);
    if (!high || !low) return std::nullopt;
    uuid[byte++] = static_cast<uint8_t>(*high << 4 | *low);
    i += 2;
  }
  return uuid;
}

std::vector<std::string_view> split(std::string_view text, char separator) {
  std::vector<std::string_view> items;
  size_t start = 0;
  for (;;) {
    size_t end = text.find(separator, start);
    if (end == std::string_view::npos) {
      items.push_back(text.substr(start));
      return items;
    }
    items.push_back(text.substr(start, end - start));
    start = end + 1;
  }
}

// Hook groups. The kernel checks the conditions of a rule against the group
// of the hook the rule names.
enum class FuncGroup : uint8_t {
  file,           // no func=, FILE_CHECK, MMAP_CHECK(_REQPROT), BPRM_CHECK, CREDS_CHECK, FIRMWARE_CHECK, POLICY_CHECK
  kernel_read,    // MODULE_CHECK, KEXEC_KERNEL_CHECK, KEXEC_INITRAMFS_CHECK: may carry appended signatures
  kexec_cmdline,  // buffer measurement of the kexec command line
  key_check,
  critical_data,
  setxattr,
};

FuncGroup func_group(std::optional<PolicyFunc> func) {
  if (!func) return FuncGroup::file;
  switch (*func) {
    case PolicyFunc::module_check:
    case PolicyFunc::kexec_kernel_check:
    case PolicyFunc::kexec_initramfs_check:
      return FuncGroup::kernel_read;
    case PolicyFunc::kexec_cmdline:
      return FuncGroup::kexec_cmdline;
    case PolicyFunc::key_check:
      return FuncGroup::key_check;
    case PolicyFunc::critical_data:
      return FuncGroup::critical_data;
    case PolicyFunc::setxattr_check:
      return FuncGroup::setxattr;
    default:
      return FuncGroup::file;
  }
}

// Whether the kernel accepts a keyword in a rule for a group of hooks
// (ima_validate_rule). appraise_type=imasig|modsig is checked separately.
bool key_allowed(FuncGroup group, Key key) {
  if (key == Key::action || key == Key::func) return true;
  switch (group) {
    case FuncGroup::file:
      return key != Key::keyrings && key != Key::label && key != Key::appraise_flag;
    case FuncGroup::kernel_read:
      return key != Key::keyrings && key != Key::label && key != Key::digest_type;
    case FuncGroup::kexec_cmdline:
      return key == Key::fsmagic || key == Key::fsname || key == Key::fsuuid || key == Key::uid ||
             key == Key::euid || key == Key::gid || key == Key::egid || key == Key::fowner || key == Key::fgroup ||
             is_lsm_key(key) || key == Key::pcr || key == Key::template_name;
    case FuncGroup::key_check:
      return key == Key::uid || key == Key::gid || key == Key::pcr || key == Key::keyrings ||
             key == Key::template_name;
    case FuncGroup::critical_data:
      return key == Key::uid || key == Key::gid || key == Key::pcr || key == Key::label ||
             key == Key::template_name;
    case FuncGroup::setxattr:
      // The kernel's check lets LSM conditions through here, and they never
      // match.
      return key == Key::appraise_algos || is_lsm_key(key);
  }
  return false;
}

std::string_view allowed_list(FuncGroup group) {
  switch (group) {
    case FuncGroup::kexec_cmdline:
      return "func=, fsmagic=, fsname=, fsuuid=, uid=, euid=, gid=, egid=, fowner=, fgroup=, the subj_ and obj_ "
             "conditions, pcr= and template=";
    case FuncGroup::key_check:
      return "func=, uid=, gid=, pcr=, keyrings= and template=";
    case FuncGroup::critical_data:
      return "func=, uid=, gid=, pcr=, label= and template=";
    case FuncGroup::setxattr:
      return "func= and appraise_algos=";
    default:
      return "";
  }
}

struct Token {
  std::string_view text;
  size_t column = 0;  // 1-based
};

// Parses and checks one line. Errors and warnings stay with the line until
// the caller takes them, so that a rule with errors contributes no warnings.
class LineParser {
 public:
  LineParser(std::string_view source, size_t line_number) : source_(source), line_number_(line_number) {}

  // Returns the rule, or nullopt for a blank line, a comment line or a line
  // with errors.
  std::optional<PolicyRule> parse(std::string_view line);

  std::vector<PolicyDiagnostic>& errors() { return errors_; }
  std::vector<PolicyDiagnostic>& warnings() { return warnings_; }
  // The first token of the line; set when parse() returned a rule.
  const Token& first_token() const { return first_token_; }

 private:
  void check_characters(std::string_view line);
  std::vector<Token> tokenize(std::string_view line) const;
  void reject_trailing_comment(std::string_view line, const Token& hash);
  void parse_token(const Token& token);
  bool check_repeat(Key key, const Token& token);
  void parse_value(Key key, const Token& token, char op, std::string_view value);
  void parse_id(Key key, const Token& token, char op, std::string_view value);
  void parse_list(Key key, const Token& token, std::string_view value);
  void parse_appraise_algos(const Token& token, std::string_view value);
  void parse_template(const Token& token, std::string_view value);
  void validate(const std::vector<Token>& tokens);
  void validate_action(FuncGroup group);
  void validate_func_group(FuncGroup group);
  void validate_combinations();
  void add_warnings();

  void add(std::vector<PolicyDiagnostic>& list, PolicyDiagnostic::Severity severity, const Token& token,
           std::string message);
  void error(const Token& token, std::string message) {
    add(errors_, PolicyDiagnostic::Severity::error, token, std::move(message));
  }
  void warn(const Token& token, std::string message) {
    add(warnings_, PolicyDiagnostic::Severity::warning, token, std::move(message));
  }
  // Reports a rule-level error on the token of `key`, at most one per token.
  void reject(Key key, std::string message);
  const Token& token_of(Key key) const { return *seen_[static_cast<size_t>(key)]; }
  bool has(Key key) const { return seen_[static_cast<size_t>(key)].has_value(); }

  std::string_view source_;
  size_t line_number_;
  Token first_token_;
  PolicyRule rule_;
  std::array<std::optional<Token>, kKeyCount> seen_;
  std::array<bool, kKeyCount> rejected_{};
  std::vector<PolicyDiagnostic> errors_;
  std::vector<PolicyDiagnostic> warnings_;
  // appraise_flag as written, when the kernel reads it as check_blacklist
  // although it is not spelled that way.
  bool odd_appraise_flag_ = false;
};

void LineParser::add(std::vector<PolicyDiagnostic>& list, PolicyDiagnostic::Severity severity, const Token& token,
                     std::string message) {
  list.push_back(PolicyDiagnostic{severity, std::string(source_), line_number_, token.column, std::string(token.text),
                                  std::move(message)});
}

void LineParser::reject(Key key, std::string message) {
  size_t index = static_cast<size_t>(key);
  if (rejected_[index]) return;
  rejected_[index] = true;
  error(token_of(key), std::move(message));
}

std::optional<PolicyRule> LineParser::parse(std::string_view line) {
  // The kernel skips leading spaces and tabs, then a '#' or the end of the
  // line makes the line a comment or a blank line.
  size_t first = line.find_first_not_of(" \t");
  if (first == std::string_view::npos || line[first] == '#') return std::nullopt;

  check_characters(line);
  std::vector<Token> tokens = tokenize(line);
  if (tokens.empty()) return std::nullopt;
  first_token_ = tokens.front();

  for (const Token& token : tokens) {
    if (token.text.front() == '#') {
      reject_trailing_comment(line, token);
      break;
    }
    parse_token(token);
  }
  if (errors_.empty()) validate(tokens);

  std::stable_sort(errors_.begin(), errors_.end(),
                   [](const PolicyDiagnostic& a, const PolicyDiagnostic& b) { return a.column < b.column; });
  if (!errors_.empty()) {
    warnings_.clear();
    return std::nullopt;
  }
  add_warnings();
  std::stable_sort(warnings_.begin(), warnings_.end(),
                   [](const PolicyDiagnostic& a, const PolicyDiagnostic& b) { return a.column < b.column; });
  return rule_;
}

void LineParser::check_characters(std::string_view line) {
  if (line.size() > kMaxLineLength) {
    error(Token{line.substr(0, 40), 1},
          fmt::format("line is {} bytes long; the kernel reads at most {} bytes of a policy line, so split the "
                      "rule or shorten its values",
                      line.size(), kMaxLineLength));
  }
  if (size_t cr = line.find('\r'); cr != std::string_view::npos) {
    error(Token{"\\r", cr + 1},
          "carriage return in the line: the policy must use LF line endings, not CRLF (convert it with dos2unix)");
  }
  if (size_t nul = line.find('\0'); nul != std::string_view::npos) {
    error(Token{"\\0", nul + 1}, "NUL byte in the line: policy text must not contain NUL bytes");
  }
}

std::vector<Token> LineParser::tokenize(std::string_view line) const {
  // Spaces and tabs separate tokens. A carriage return or a NUL byte, already
  // reported, also ends a token so that the rest of the line is still checked.
  constexpr std::string_view kSeparators(" \t\r\0", 4);
  std::vector<Token> tokens;
  size_t pos = 0;
  while (pos < line.size()) {
    size_t start = line.find_first_not_of(kSeparators, pos);
    if (start == std::string_view::npos) break;
    size_t end = line.find_first_of(kSeparators, start);
    if (end == std::string_view::npos) end = line.size();
    tokens.push_back(Token{line.substr(start, end - start), start + 1});
    pos = end;
  }
  return tokens;
}

// The kernel takes '#' as a comment only as the first character of a line
// after spaces and tabs. Elsewhere "#..." is an unknown token, at which
// the kernel rejects the rule. The comment is reported once, as one token
// from the '#' to the end of the line, and the words after it are not
// parsed as keywords.
void LineParser::reject_trailing_comment(std::string_view line, const Token& hash) {
  std::string_view comment = line.substr(hash.column - 1);
  comment = comment.substr(0, comment.find_last_not_of(" \t") + 1);
  error(Token{comment, hash.column},
        fmt::format("'{}': a comment must be on a line of its own; the kernel reads '#' as the start of a comment "
                    "only at the beginning of a line, after any spaces or tabs, and rejects a rule with a '#' "
                    "later in it",
                    echo(comment)));
}

void LineParser::parse_token(const Token& token) {
  std::string_view text = token.text;

  if (auto action = policy_action_from_name(text)) {
    if (has(Key::action)) {
      error(token, fmt::format("'{}' is a second action; the rule already has the action '{}' at column {}, and a "
                               "rule has exactly one action",
                               echo(text), echo(token_of(Key::action).text), token_of(Key::action).column));
      return;
    }
    seen_[static_cast<size_t>(Key::action)] = token;
    rule_.action = *action;
    return;
  }

  size_t op_pos = text.find_first_of("=<>");
  std::string_view name = text.substr(0, op_pos);
  const KeySpec* spec = find_key(name);
  if (spec == nullptr) {
    if (policy_action_from_name(name)) {
      error(token, fmt::format("'{}': the action '{}' takes no value", echo(text), echo(name)));
    } else {
      std::string where = name == text ? std::string() : fmt::format(" in '{}'", echo(text));
      error(token, fmt::format("unknown keyword '{}'{}{}; expected an action ({}) or one of {}", echo(name), where,
                               suggestion(name, keyword_candidates()), kActionList, keyword_list()));
    }
    return;
  }

  if (!spec->has_value) {
    if (op_pos != std::string_view::npos) {
      error(token, fmt::format("'{}': {} takes no value; write it alone", echo(text), spec->name));
      return;
    }
    if (!check_repeat(spec->key, token)) return;
    seen_[static_cast<size_t>(spec->key)] = token;
    rule_.permit_directio = true;
    return;
  }

  if (op_pos == std::string_view::npos) {
    error(token, fmt::format("'{}' needs a value: write {}=VALUE, where VALUE is {}", echo(text), spec->name,
                             expected_value(spec->key)));
    return;
  }
  char op = text[op_pos];
  if (op != '=' && !spec->ordered) {
    error(token, fmt::format("'{}': {} takes '=', not '{}'; only uid, euid, gid, egid, fowner and fgroup also "
                             "compare with '<' and '>'",
                             echo(text), spec->name, op));
    return;
  }
  std::string_view value = text.substr(op_pos + 1);
  if (value.empty()) {
    error(token, fmt::format("missing value after '{}{}'; expected {}", spec->name, op, expected_value(spec->key)));
    return;
  }
  if (!check_repeat(spec->key, token)) return;
  seen_[static_cast<size_t>(spec->key)] = token;
  parse_value(spec->key, token, op, value);
}

bool LineParser::check_repeat(Key key, const Token& token) {
  if (has(key)) {
    error(token, fmt::format("'{}' repeats {}, already given at column {}; a rule may give each condition and "
                             "option only once",
                             echo(token.text), key_name(key), token_of(key).column));
    return false;
  }

  // The kernel stores uid= and euid= in one field of the rule, and gid= and
  // egid= in another, so a rule cannot have both of a pair.
  std::optional<Key> partner;
  if (key == Key::uid) partner = Key::euid;
  if (key == Key::euid) partner = Key::uid;
  if (key == Key::gid) partner = Key::egid;
  if (key == Key::egid) partner = Key::gid;
  if (partner && has(*partner)) {
    const Token& other = token_of(*partner);
    error(token, fmt::format("'{}' cannot be combined with '{}' (column {}) in one rule: the kernel keeps a single "
                             "{} per rule for {} and {}; write two rules instead",
                             echo(token.text), echo(other.text), other.column,
                             key == Key::uid || key == Key::euid ? "user id" : "group id", key_name(*partner),
                             key_name(key)));
    return false;
  }
  return true;
}

void LineParser::parse_value(Key key, const Token& token, char op, std::string_view value) {
  switch (key) {
    case Key::func:
      if (auto func = policy_func_from_name(value)) {
        rule_.func = *func;
      } else {
        error(token, fmt::format("unknown func '{}' in '{}'{}; expected {}", echo(value), echo(token.text),
                                 suggestion(value, func_candidates()), expected_value(key)));
      }
      return;

    case Key::mask: {
      bool contains = value.front() == '^';
      std::string_view name = contains ? value.substr(1) : value;
      uint32_t bit = 0;
      if (name == "MAY_EXEC") bit = kMayExec;
      if (name == "MAY_WRITE") bit = kMayWrite;
      if (name == "MAY_READ") bit = kMayRead;
      if (name == "MAY_APPEND") bit = kMayAppend;
      if (bit == 0) {
        std::string hint = suggestion(name, {"MAY_EXEC", "MAY_WRITE", "MAY_READ", "MAY_APPEND"});
        error(token, fmt::format("invalid mask '{}' in '{}'{}; expected {}", echo(value), echo(token.text), hint,
                                 expected_value(key)));
        return;
      }
      rule_.mask = MaskCondition{bit, contains};
      return;
    }

    case Key::fsmagic:
      if (auto magic = parse_kernel_unsigned(value, 16)) {
        rule_.fsmagic = *magic;
      } else {
        error(token, fmt::format("invalid fsmagic '{}' in '{}'; expected {}", echo(value), echo(token.text),
                                 expected_value(key)));
      }
      return;

    case Key::fsname:
      rule_.fsname = std::string(value);
      return;

    case Key::fsuuid:
      if (auto uuid = parse_uuid(value)) {
        rule_.fsuuid = *uuid;
      } else {
        error(token, fmt::format("invalid fsuuid '{}' in '{}'; expected {}", echo(value), echo(token.text),
                                 expected_value(key)));
      }
      return;

    case Key::uid:
    case Key::euid:
    case Key::gid:
    case Key::egid:
    case Key::fowner:
    case Key::fgroup:
      parse_id(key, token, op, value);
      return;

    case Key::keyrings:
    case Key::label:
      parse_list(key, token, value);
      return;

    case Key::digest_type:
      if (value == "verity") {
        rule_.digest_type = PolicyDigestType::verity;
      } else {
        error(token, fmt::format("invalid digest_type '{}' in '{}'; the only digest type a rule can request is "
                                 "verity",
                                 echo(value), echo(token.text)));
      }
      return;

    case Key::appraise_type:
      if (value == "imasig") {
        rule_.appraise_type = AppraiseType::imasig;
      } else if (value == "imasig|modsig") {
        rule_.appraise_type = AppraiseType::imasig_modsig;
      } else if (value == "sigv3") {
        rule_.appraise_type = AppraiseType::sigv3;
      } else {
        error(token, fmt::format("invalid appraise_type '{}' in '{}'; expected {}", echo(value), echo(token.text),
                                 expected_value(key)));
      }
      return;

    case Key::appraise_flag:
      // The kernel takes any value that contains "blacklist".
      if (value.find("blacklist") != std::string_view::npos) {
        rule_.check_blacklist = true;
        odd_appraise_flag_ = value != "check_blacklist";
      } else {
        error(token, fmt::format("invalid appraise_flag '{}' in '{}'; the only flag is check_blacklist", echo(value),
                                 echo(token.text)));
      }
      return;

    case Key::appraise_algos:
      parse_appraise_algos(token, value);
      return;

    case Key::pcr: {
      auto pcr = parse_kernel_unsigned(value, 10);
      if (!pcr || *pcr > kMaxPcr) {
        error(token,
              fmt::format("invalid pcr '{}' in '{}'; expected {}", echo(value), echo(token.text), expected_value(key)));
        return;
      }
      rule_.pcr = static_cast<uint32_t>(*pcr);
      return;
    }

    case Key::template_name:
      parse_template(token, value);
      return;

    default:
      if (is_lsm_key(key)) rule_.lsm[static_cast<size_t>(lsm_field_of(key))] = std::string(value);
      return;
  }
}

void LineParser::parse_id(Key key, const Token& token, char op, std::string_view value) {
  auto id = parse_kernel_unsigned(value, 10);
  if (!id || *id > kMaxId) {
    std::string hint;
    if (value.front() == '=' || value.front() == '<' || value.front() == '>') {
      hint = "; the operators are '=', '<' and '>', and there is no '<=' or '>='";
    }
    error(token, fmt::format("invalid {} value '{}' in '{}'; expected {}{}", key_name(key), echo(value),
                             echo(token.text), expected_value(key), hint));
    return;
  }

  IdCondition condition{IdOperator::equal, static_cast<uint32_t>(*id)};
  if (op == '<') condition.op = IdOperator::less;
  if (op == '>') condition.op = IdOperator::greater;

  switch (key) {
    case Key::uid:
      rule_.uid = condition;
      break;
    case Key::euid:
      rule_.euid = condition;
      break;
    case Key::gid:
      rule_.gid = condition;
      break;
    case Key::egid:
      rule_.egid = condition;
      break;
    case Key::fowner:
      rule_.fowner = condition;
      break;
    default:
      rule_.fgroup = condition;
      break;
  }
}

void LineParser::parse_list(Key key, const Token& token, std::string_view value) {
  std::vector<std::string> items;
  for (std::string_view item : split(value, '|')) {
    if (item.empty()) {
      error(token, fmt::format("empty name in the {} list '{}' of '{}'; expected {}", key_name(key), echo(value),
                               echo(token.text), expected_value(key)));
      return;
    }
    items.emplace_back(item);
  }
  if (key == Key::keyrings) {
    rule_.keyrings = std::move(items);
  } else {
    rule_.labels = std::move(items);
  }
}

void LineParser::parse_appraise_algos(const Token& token, std::string_view value) {
  std::vector<HashAlgo> algos;
  for (std::string_view name : split(value, ',')) {
    auto algo = hash_algo_from_name(name);
    if (!algo) {
      error(token, fmt::format("unknown hash algorithm '{}' in '{}'; expected {} (kernel names: md5, sha1, "
                               "sha256, sha384, sha512, sha224, sm3, sha3-256, ...)",
                               echo(name), echo(token.text), expected_value(Key::appraise_algos)));
      return;
    }
    // The kernel rejects an algorithm its crypto API cannot compute; here
    // the same holds for this process's OpenSSL.
    if (!hash_supported(*algo)) {
      error(token, fmt::format("hash algorithm '{}' in '{}' is not available in this build of OpenSSL; list only "
                               "algorithms that can be computed here",
                               echo(name), echo(token.text)));
      return;
    }
    algos.push_back(*algo);
  }
  std::sort(algos.begin(), algos.end());
  algos.erase(std::unique(algos.begin(), algos.end()), algos.end());
  rule_.appraise_algos = std::move(algos);
}

void LineParser::parse_template(const Token& token, std::string_view value) {
  // Like the kernel's template lookup, a format string that equals a
  // built-in template's format selects that template, so the list names it
  // as the kernel would ("d-ng|n-ng" is recorded as ima-ng).
  for (const TemplateDescriptor* builtin : builtin_templates()) {
    if (builtin->format == value) {
      rule_.tmpl = builtin;
      return;
    }
  }
  auto tmpl = resolve_template(value);
  if (tmpl) {
    rule_.tmpl = *tmpl;
    return;
  }

  // The message is built here rather than taken from resolve_template(),
  // whose text lists the built-in templates and repeats the value unescaped.
  std::vector<std::string_view> fields = split(value, '|');
  if (fields.size() > kMaxTemplateFields) {
    error(token, fmt::format("invalid template in '{}': the format has {} fields, and the kernel allows at most {}",
                             echo(token.text), fields.size(), kMaxTemplateFields));
    return;
  }
  if (fields.size() > 1) {
    for (std::string_view field : fields) {
      if (field_id_from_name(field)) continue;
      error(token, fmt::format("unknown template field '{}' in '{}'; the fields of a format string are {}, joined "
                               "with '|'",
                               echo(field), echo(token.text), template_field_list()));
      return;
    }
  }
  error(token, fmt::format("invalid template '{}' in '{}'; expected {}", echo(value), echo(token.text),
                           expected_value(Key::template_name)));
}

void LineParser::validate(const std::vector<Token>& tokens) {
  if (!has(Key::action)) {
    error(tokens.front(), fmt::format("rule has no action; start it with one of {}", kActionList));
    return;
  }

  FuncGroup group = func_group(rule_.func);
  validate_action(group);
  validate_func_group(group);
  validate_combinations();
}

// Checks the options that only some actions take.
void LineParser::validate_action(FuncGroup group) {
  PolicyAction action = rule_.action;
  std::string_view action_name = policy_action_name(action);

  if (group == FuncGroup::kexec_cmdline || group == FuncGroup::key_check || group == FuncGroup::critical_data) {
    if (action != PolicyAction::measure && action != PolicyAction::dont_measure) {
      reject(Key::action, fmt::format("'{}': func={} rules measure a buffer and must be measure or dont_measure rules",
                                      action_name, policy_func_name(*rule_.func)));
    }
  }
  if (group == FuncGroup::setxattr && action != PolicyAction::appraise) {
    reject(Key::action, fmt::format("'{}': func=SETXATTR_CHECK rules must be appraise rules", action_name));
  }

  if (has(Key::pcr) && action != PolicyAction::measure) {
    reject(Key::pcr, fmt::format("'{}': pcr= is allowed only in measure rules, not in {} rules",
                                 echo(token_of(Key::pcr).text), action_name));
  }
  if (has(Key::template_name)) {
    const Token& token = token_of(Key::template_name);
    if (action != PolicyAction::measure) {
      reject(Key::template_name, fmt::format("'{}': template= is allowed only in measure rules, not in {} rules",
                                             echo(token.text), action_name));
    } else if (token.column < token_of(Key::action).column) {
      reject(Key::template_name, fmt::format("'{}': template= must come after the action 'measure'; the kernel reads "
                                             "a rule from left to right and rejects template= before it",
                                             echo(token.text)));
    }
  }
  for (Key key : {Key::appraise_type, Key::appraise_flag, Key::appraise_algos}) {
    if (has(key) && action != PolicyAction::appraise) {
      reject(key, fmt::format("'{}': {}= is allowed only in appraise rules, not in {} rules", echo(token_of(key).text),
                              key_name(key), action_name));
    }
  }
}

// Checks each keyword against the hook the rule names.
void LineParser::validate_func_group(FuncGroup group) {
  std::string_view func = rule_.func ? policy_func_name(*rule_.func) : std::string_view();

  for (size_t index = 0; index < kKeyCount; ++index) {
    Key key = static_cast<Key>(index);
    if (!has(key) || key_allowed(group, key)) continue;
    const Token& token = token_of(key);

    if (key == Key::keyrings) {
      reject(key, fmt::format("'{}': keyrings= is allowed only with func=KEY_CHECK", echo(token.text)));
    } else if (key == Key::label) {
      reject(key, fmt::format("'{}': label= is allowed only with func=CRITICAL_DATA", echo(token.text)));
    } else if (group == FuncGroup::file && key == Key::appraise_flag) {
      reject(key, fmt::format("'{}': appraise_flag=check_blacklist is allowed only with func={}", echo(token.text),
                              kModuleFuncList));
    } else if (group == FuncGroup::kernel_read && key == Key::digest_type) {
      reject(key, fmt::format("'{}': digest_type=verity is not allowed with func={}; it applies to rules without "
                              "func= and to FILE_CHECK, MMAP_CHECK, MMAP_CHECK_REQPROT, BPRM_CHECK, CREDS_CHECK, "
                              "FIRMWARE_CHECK and POLICY_CHECK rules",
                              echo(token.text), func));
    } else {
      reject(key, fmt::format("'{}' is not allowed with func={}; {} rules accept only {}", echo(token.text), func, func,
                              allowed_list(group)));
    }
  }

  if (group == FuncGroup::setxattr && !has(Key::appraise_algos)) {
    reject(Key::func, "func=SETXATTR_CHECK rules need appraise_algos= with the hash algorithms that may be written "
                      "into security.ima");
  }
  if (rule_.appraise_type == AppraiseType::imasig_modsig && group != FuncGroup::kernel_read) {
    reject(Key::appraise_type,
           fmt::format("'{}': appraise_type=imasig|modsig is allowed only with func={}, the files that can carry an "
                       "appended signature",
                       echo(token_of(Key::appraise_type).text), kModuleFuncList));
  }
}

// Checks options that depend on each other, including the kernel's
// left-to-right order of digest_type= and appraise_type=.
void LineParser::validate_combinations() {
  bool verity = rule_.digest_type == PolicyDigestType::verity;

  if (verity && rule_.appraise_type) {
    const Token& digest = token_of(Key::digest_type);
    const Token& appraise = token_of(Key::appraise_type);
    if (digest.column > appraise.column) {
      reject(Key::digest_type, fmt::format("'{}' must come before '{}'; the kernel rejects digest_type= after "
                                           "appraise_type=",
                                           echo(digest.text), echo(appraise.text)));
    } else if (*rule_.appraise_type != AppraiseType::sigv3) {
      reject(Key::appraise_type, fmt::format("'{}' cannot be combined with digest_type=verity; rules for fs-verity "
                                             "digests take appraise_type=sigv3",
                                             echo(appraise.text)));
    }
  } else if (rule_.appraise_type == AppraiseType::sigv3) {
    reject(Key::appraise_type, fmt::format("'{}' requires digest_type=verity before it; sigv3 signatures cover "
                                           "fs-verity digests only",
                                           echo(token_of(Key::appraise_type).text)));
  }

  if (rule_.check_blacklist && rule_.appraise_type != AppraiseType::imasig_modsig) {
    reject(Key::appraise_flag, fmt::format("'{}' requires appraise_type=imasig|modsig in the same rule",
                                           echo(token_of(Key::appraise_flag).text)));
  }
  if (rule_.action == PolicyAction::appraise && verity && !rule_.appraise_type) {
    reject(Key::digest_type, fmt::format("'{}': an appraise rule for fs-verity digests must require a signature; "
                                         "add appraise_type=sigv3 after it",
                                         echo(token_of(Key::digest_type).text)));
  }
}

void LineParser::add_warnings() {
  if (is_appraise_action(rule_.action)) {
    warn(token_of(Key::action), fmt::format("'{}' rules are valid but not supported: imarotd measures files and "
                                            "does not appraise them, so this rule is kept and only reported when "
                                            "it decides an event",
                                            policy_action_name(rule_.action)));
  }
  for (size_t index = 0; index < kKeyCount; ++index) {
    Key key = static_cast<Key>(index);
    if (has(key) && is_lsm_key(key)) {
      warn(token_of(key), fmt::format("'{}' never matches: imarotd has no LSM hook to evaluate subj_ and obj_ "
                                      "conditions, so this rule is kept but never applies, as in a kernel whose "
                                      "LSM does not know the label",
                                      echo(token_of(key).text)));
    }
  }
  bool buffer_data_rule = rule_.func == PolicyFunc::key_check || rule_.func == PolicyFunc::critical_data;
  if (buffer_data_rule && has(Key::gid)) {
    warn(token_of(Key::gid), fmt::format("'{}' has no effect: the kernel accepts gid= in func={} rules but never "
                                         "compares it",
                                         echo(token_of(Key::gid).text), policy_func_name(*rule_.func)));
  }
  if (odd_appraise_flag_) {
    warn(token_of(Key::appraise_flag), fmt::format("'{}' is read as appraise_flag=check_blacklist, because the "
                                                   "kernel accepts any value that contains \"blacklist\"",
                                                   echo(token_of(Key::appraise_flag).text)));
  }
  if (rule_.action == PolicyAction::measure && rule_.digest_type == PolicyDigestType::verity &&
      rule_.tmpl != nullptr && !rule_.tmpl->has_field(FieldId::d_ngv2)) {
    warn(token_of(Key::template_name),
         fmt::format("'{}' has no d-ngv2 field, so the list will not show that these digests are fs-verity "
                     "digests; use ima-ngv2 or ima-sigv2",
                     echo(token_of(Key::template_name).text)));
  }
}

// True when a rule matches every event of its class that reaches it: no
// conditions at all. Such a rule still never matches KEY_CHECK and
// CRITICAL_DATA events, which only rules naming those hooks match.
bool matches_every_file_event(const PolicyRule& rule) {
  return !rule.func && !rule.mask && !rule.fsmagic && !rule.fsname && !rule.fsuuid && !rule.uid && !rule.euid &&
         !rule.gid && !rule.egid && !rule.fowner && !rule.fgroup && !rule.has_lsm_condition();
}

// Finds rules that can never decide an event because an earlier rule of the
// same class has no conditions and so decides every such event first.
class UnreachableRules {
 public:
  void check(const PolicyRule& rule, size_t line_number, const Token& first_token, std::string_view source,
             std::vector<PolicyDiagnostic>& warnings) {
    size_t cls = static_cast<size_t>(action_class(rule.action));
    bool buffer_data_rule = rule.func == PolicyFunc::key_check || rule.func == PolicyFunc::critical_data;
    if (catch_all_[cls] && !buffer_data_rule) {
      const CatchAll& earlier = *catch_all_[cls];
      warnings.push_back(PolicyDiagnostic{
          PolicyDiagnostic::Severity::warning, std::string(source), line_number, first_token.column,
          std::string(first_token.text),
          fmt::format("this rule never applies: the rule '{}' at line {} has no conditions and decides every event "
                      "of this action class first",
                      earlier.text, earlier.line)});
    }
    if (!catch_all_[cls] && matches_every_file_event(rule)) catch_all_[cls] = CatchAll{format_rule(rule), line_number};
  }

 private:
  struct CatchAll {
    std::string text;
    size_t line;
  };
  std::array<std::optional<CatchAll>, kActionClassCount> catch_all_;
};

}  // namespace

ParsedPolicy parse_policy(std::string_view text, std::string_view source) {
  ParsedPolicy parsed;
  parsed.policy.source = std::string(source);

  UnreachableRules unreachable;
  size_t line_number = 0;
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string_view::npos) end = text.size();
    ++line_number;

    LineParser parser(source, line_number);
    std::optional<PolicyRule> rule = parser.parse(text.substr(start, end - start));
    for (auto& error : parser.errors()) parsed.errors.push_back(std::move(error));
    for (auto& warning : parser.warnings()) parsed.warnings.push_back(std::move(warning));
    if (rule) {
      unreachable.check(*rule, line_number, parser.first_token(), source, parsed.warnings);
      parsed.policy.rules.push_back(std::move(*rule));
      parsed.policy.rule_lines.push_back(line_number);
    }
    start = end + 1;
  }

  if (parsed.errors.empty() && parsed.policy.rules.empty()) {
    parsed.errors.push_back(PolicyDiagnostic{PolicyDiagnostic::Severity::error, std::string(source), 1, 1, "",
                                             "policy has no rules; the kernel rejects a policy without rules. Write "
                                             "at least one rule, for example 'dont_measure' to measure nothing"});
  }
  if (!parsed.errors.empty()) {
    parsed.policy.rules.clear();
    parsed.policy.rule_lines.clear();
  }

  std::stable_sort(parsed.warnings.begin(), parsed.warnings.end(),
                   [](const PolicyDiagnostic& a, const PolicyDiagnostic& b) {
                     return a.line != b.line ? a.line < b.line : a.column < b.column;
                   });
  return parsed;
}

}  // namespace imarot
