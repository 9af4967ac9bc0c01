// Fuzzes the IMA policy parser: any text either parses or yields errors that
// point inside the text; a policy that parses prints as canonical text that
// parses back to equal rules and prints the same again, and every hook can
// be evaluated against it.
#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "imarot/policy.h"

namespace {

size_t count_lines(std::string_view text) { return static_cast<size_t>(std::count(text.begin(), text.end(), '\n')) + 1; }

void check_errors(std::string_view text, const imarot::ParsedPolicy& parsed) {
  size_t lines = count_lines(text);
  for (const auto& error : parsed.errors) {
    if (error.line == 0 || error.line > lines) std::abort();
    if (error.column == 0) std::abort();
    if (error.message.empty()) std::abort();
    (void)imarot::format_diagnostic(error);
  }
  if (!parsed.policy.rules.empty() || !parsed.policy.rule_lines.empty()) std::abort();
}

// True when a printed line is longer than the kernel's 4095-byte line limit:
// a rule written close to the limit may print a few bytes longer in
// canonical form (fsmagic gains "0x", FILE_MMAP becomes MMAP_CHECK), and the
// parser then rejects the printed line.
bool has_overlong_line(std::string_view text) {
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string_view::npos) end = text.size();
    if (end - start > 4095) return true;
    start = end + 1;
  }
  return false;
}

void evaluate_every_hook(const imarot::Policy& policy) {
  for (size_t i = 0; i < imarot::kPolicyFuncCount; ++i) {
    imarot::PolicyQuery query;
    query.func = static_cast<imarot::PolicyFunc>(i);
    query.mask = imarot::kMayRead | imarot::kMayExec;
    query.fsmagic = 0xef53;
    query.fsname = "ext4";
    query.func_data = ".ima";
    imarot::PolicyDecision decision = imarot::match_policy(policy, query);
    for (const auto& rule : decision.deciding_rule) {
      if (rule && *rule >= policy.rules.size()) std::abort();
    }
    if (decision.pcr && *decision.pcr > 63) std::abort();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  imarot::ParsedPolicy parsed = imarot::parse_policy(text, "fuzz");
  if (!parsed.ok()) {
    check_errors(text, parsed);
    return 0;
  }

  const imarot::Policy& policy = parsed.policy;
  if (policy.rules.empty() || policy.rules.size() != policy.rule_lines.size()) std::abort();
  if (!std::is_sorted(policy.rule_lines.begin(), policy.rule_lines.end())) std::abort();

  std::string printed = imarot::format_policy(policy);
  imarot::ParsedPolicy again = imarot::parse_policy(printed, "fuzz-printed");
  if (!again.ok()) {
    if (!has_overlong_line(printed)) std::abort();
    return 0;
  }
  if (again.policy.rules != policy.rules) std::abort();
  if (imarot::format_policy(again.policy) != printed) std::abort();

  evaluate_every_hook(policy);
  return 0;
}
