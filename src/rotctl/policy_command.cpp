// rotctl policy check: parse an IMA policy and print the rules as imarotd
// understands them, or every error with its line and column.
#include <iostream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "imarot/policy.h"
#include "rotctl.h"

namespace rotctl {
namespace {

struct PolicyCheckOptions {
  std::string file;
  std::string builtin;
  bool json = false;
};

nlohmann::json diagnostic_json(const imarot::PolicyDiagnostic& diagnostic) {
  return {{"line", diagnostic.line},
          {"column", diagnostic.column},
          {"token", diagnostic.token},
          {"message", diagnostic.message}};
}

nlohmann::json rule_json(const imarot::PolicyRule& rule, size_t line) {
  nlohmann::json terms = nlohmann::json::array();
  for (const imarot::PolicyTerm& term : imarot::rule_terms(rule)) {
    nlohmann::json item = {{"key", std::string(term.key)}};
    if (term.op != '\0') {
      item["operator"] = std::string(1, term.op);
      item["value"] = term.value;
    }
    terms.push_back(std::move(item));
  }
  return {{"line", line},
          {"rule", imarot::format_rule(rule)},
          {"action", std::string(imarot::policy_action_name(rule.action))},
          {"supported", !imarot::is_appraise_action(rule.action)},
          {"never_matches", rule.has_lsm_condition()},
          {"terms", std::move(terms)}};
}

void print_json(const imarot::ParsedPolicy& parsed) {
  nlohmann::json out;
  out["source"] = parsed.policy.source;
  out["valid"] = parsed.ok();
  out["rules"] = nlohmann::json::array();
  for (size_t i = 0; i < parsed.policy.rules.size(); ++i) {
    out["rules"].push_back(rule_json(parsed.policy.rules[i], parsed.policy.rule_lines[i]));
  }
  out["errors"] = nlohmann::json::array();
  for (const auto& error : parsed.errors) out["errors"].push_back(diagnostic_json(error));
  out["warnings"] = nlohmann::json::array();
  for (const auto& warning : parsed.warnings) out["warnings"].push_back(diagnostic_json(warning));
  // Policy values are bytes; any that are not UTF-8 are shown with U+FFFD.
  std::cout << out.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) << '\n';
}

void print_diagnostics(const imarot::ParsedPolicy& parsed) {
  for (const auto& warning : parsed.warnings) std::cerr << imarot::format_diagnostic(warning) << '\n';
  for (const auto& error : parsed.errors) std::cerr << imarot::format_diagnostic(error) << '\n';
}

void run_policy_check(const PolicyCheckOptions& options) {
  if (options.file.empty() == options.builtin.empty()) {
    fail(kExitUsage, "policy check: give either a policy FILE ('-' for standard input) or --builtin NAME");
  }

  if (!options.builtin.empty()) {
    auto text = imarot::builtin_policy_text(options.builtin);
    if (!text) fail(kExitUsage, fmt::format("--builtin: {}", text.error().message));
    imarot::ParsedPolicy parsed = imarot::parse_policy(*text, "builtin:" + options.builtin);
    if (!parsed.ok()) {
      print_diagnostics(parsed);
      fail(kExitUsage, fmt::format("built-in policy '{}' failed to parse; this is a bug in rotctl", options.builtin));
    }
    if (options.json) {
      print_json(parsed);
    } else {
      // Plain policy text, so that the output can be saved as a policy file.
      std::cout << *text;
    }
    return;
  }

  imarot::Bytes data = read_input(options.file);
  std::string_view text(reinterpret_cast<const char*>(data.data()), data.size());
  std::string source = options.file == "-" ? "<stdin>" : options.file;
  imarot::ParsedPolicy parsed = imarot::parse_policy(text, source);

  print_diagnostics(parsed);
  if (options.json) {
    print_json(parsed);
  } else {
    for (size_t i = 0; i < parsed.policy.rules.size(); ++i) {
      std::cout << fmt::format("{:5}  {}\n", parsed.policy.rule_lines[i], imarot::format_rule(parsed.policy.rules[i]));
    }
  }
  std::cout.flush();
  if (!parsed.ok()) {
    std::cerr << fmt::format("rotctl: {}: {} error{}; the policy is rejected as a whole, as the kernel rejects it\n",
                             source, parsed.errors.size(), parsed.errors.size() == 1 ? "" : "s");
    throw CLI::RuntimeError(kExitUsage);
  }
}

}  // namespace

void add_policy_command(CLI::App& app) {
  auto options = std::make_shared<PolicyCheckOptions>();
  CLI::App* policy = app.add_subcommand("policy", "Work with IMA policies (the kernel's policy language)");
  policy->require_subcommand(1);

  CLI::App* check = policy->add_subcommand(
      "check",
      "Parse a policy and print each rule in canonical form with its line number, or print every error as "
      "FILE:LINE:COLUMN: message and exit 2");
  check->add_option("file", options->file, "Policy file to check ('-' for standard input)");
  check->add_option("--builtin", options->builtin,
                    "Print a built-in policy as policy text: tcb, ima_tcb, critical_data, secure_boot or "
                    "appraise_tcb, several joined with '|' as in the kernel's ima_policy= parameter");
  check->add_flag("--json", options->json, "Print the rules, errors and warnings as JSON");
  check->callback([options] { run_policy_check(*options); });
}

}  // namespace rotctl
