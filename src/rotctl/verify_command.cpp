// rotctl verify: replay a measurement list against reference register values,
// or the running daemon's list against its backends' registers.
#include <iostream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "daemon_client.h"
#include "imarot/replay.h"
#include "rotctl.h"

namespace rotctl {
namespace {

struct VerifyCommandOptions {
  std::string input;
  std::vector<std::string> pcr_files;
  std::vector<std::string> banks;
  std::optional<uint32_t> pcr;
  std::string column_bank = "sha1";
  bool allow_trailing = false;
  bool json = false;
  std::string bus = "system";
  std::string backend;  // live mode: only this backend of the daemon
};

// Reads every --pcrs argument, "FILE" or "ALG,FILE", into one set of values.
imarot::RegisterValues load_reference(const VerifyCommandOptions& options) {
  std::optional<imarot::HashAlgo> only_bank;
  if (options.banks.size() == 1) only_bank = parse_algo_option("--bank", options.banks.front());

  imarot::RegisterValues all;
  for (const std::string& argument : options.pcr_files) {
    std::optional<imarot::HashAlgo> bank = only_bank;
    std::string path = argument;
    if (size_t comma = argument.find(','); comma != std::string::npos) {
      bank = parse_algo_option("--pcrs", argument.substr(0, comma));
      path = argument.substr(comma + 1);
    }
    imarot::Bytes text = read_input(path);
    auto values = imarot::parse_register_values(
        std::string_view(reinterpret_cast<const char*>(text.data()), text.size()), path, bank);
    if (!values) fail(kExitUsage, values.error().message);
    for (const auto& [id, value] : *values) {
      if (!all.emplace(id, value).second) {
        fail(kExitUsage, fmt::format("{}: register {} of bank {} is also given by an earlier --pcrs file", path,
                                     id.index, imarot::hash_name(id.bank)));
      }
    }
  }
  return all;
}

void print_human(const imarot::VerifyReport& report) {
  for (const auto& check : report.registers) {
    std::cout << fmt::format("  register {:2d} {:<7} {}  {}\n", check.id.index, imarot::hash_name(check.id.bank),
                             check.matched ? "match   " : "MISMATCH", check.reference.hex());
  }
  for (const auto& warning : report.warnings) std::cout << "warning: " << warning.message << '\n';
  for (const auto& failure : report.failures) std::cout << "failed: " << failure.message << '\n';
  if (report.ok()) {
    std::cout << fmt::format("OK: {} ({}) verified against {}\n", count_of(report.entries, "entry", "entries"),
                             count_of(report.violations, "violation", "violations"),
                             count_of(report.registers.size(), "register", "registers"));
  } else if (report.first_failing_entry) {
    std::cout << fmt::format("FAILED: first failing entry is {}\n", *report.first_failing_entry + 1);
  } else {
    std::cout << "FAILED\n";
  }
}

nlohmann::json report_json(const imarot::VerifyReport& report) {
  nlohmann::json out;
  out["ok"] = report.ok();
  out["entries"] = report.entries;
  out["violations"] = report.violations;
  out["first_failing_entry"] =
      report.first_failing_entry ? nlohmann::json(*report.first_failing_entry + 1) : nlohmann::json(nullptr);
  out["registers"] = nlohmann::json::array();
  for (const auto& check : report.registers) {
    out["registers"].push_back({{"index", check.id.index},
                                {"bank", std::string(imarot::hash_name(check.id.bank))},
                                {"reference", check.reference.hex()},
                                {"replayed", check.replayed.hex()},
                                {"entries", check.entries},
                                {"match", check.matched}});
  }
  auto findings = [](const std::vector<imarot::VerifyFinding>& list) {
    nlohmann::json array = nlohmann::json::array();
    for (const auto& finding : list) {
      array.push_back({{"entry", finding.entry_index ? nlohmann::json(*finding.entry_index + 1) : nlohmann::json()},
                       {"message", finding.message}});
    }
    return array;
  };
  out["failures"] = findings(report.failures);
  out["warnings"] = findings(report.warnings);
  return out;
}

void print_json(const imarot::VerifyReport& report) {
  std::cout << report_json(report).dump(2, ' ', false, nlohmann::json::error_handler_t::replace) << '\n';
}

// The failed check of a backend that imarotd refused at startup. Such a
// backend is not open, so the daemon cannot read its registers. It was
// refused because its register matched no prefix of the list, which is a
// failed check, not a usage error.
RemoteVerifyBackend refused_backend_check(const RemoteBackend& backend) {
  // The daemon's reason starts with "backend 'ID': ", which the message
  // below already contains.
  std::string reason = backend.last_error;
  std::string own_prefix = fmt::format("backend '{}': ", backend.id);
  if (reason.rfind(own_prefix, 0) == 0) reason.erase(0, own_prefix.size());
  if (reason.empty()) reason = "the daemon gives no reason";
  if (reason.back() != '.') reason += '.';

  RemoteVerifyBackend checked;
  checked.id = backend.id;
  checked.register_kind = backend.register_kind;
  checked.register_index = backend.register_index;
  checked.state = backend.state;
  checked.report.failures.push_back(imarot::VerifyFinding{
      std::nullopt,
      fmt::format("imarotd refused backend '{}' when it started, so its registers cannot be checked: {} See "
                  "divergence.log in imarotd's state directory (/var/lib/imarotd unless state_directory is set) "
                  "and imarotd(8)",
                  backend.id, reason)});
  return checked;
}

// Asks the daemon to verify its list against each selected backend. A
// Verify call fails as a whole when one of its backends is refused, so
// refused backends get a failed check of their own and the others are
// verified one Verify call each.
RemoteVerify verify_backends(DaemonClient& client, const VerifyCommandOptions& options) {
  DaemonStatus status = client.status();
  if (!options.backend.empty()) find_remote_backend(status, options.backend, "");

  std::vector<const RemoteBackend*> selected;
  bool any_refused = false;
  for (const RemoteBackend& backend : status.backends) {
    if (!options.backend.empty() && backend.id != options.backend) continue;
    selected.push_back(&backend);
    any_refused = any_refused || backend.state == "refused";
  }
  if (!any_refused) return client.verify(options.backend, options.banks, options.pcr);

  RemoteVerify result;
  result.entries = status.entries;
  for (const RemoteBackend* backend : selected) {
    if (backend->state == "refused") {
      result.backends.push_back(refused_backend_check(*backend));
      continue;
    }
    RemoteVerify one = client.verify(backend->id, options.banks, options.pcr);
    result.entries = one.entries;
    for (RemoteVerifyBackend& checked : one.backends) result.backends.push_back(std::move(checked));
  }
  result.ok = false;
  return result;
}

// The daemon replays its own list against the registers of each backend
// (the D-Bus method Verify), so the list does not cross the bus. It reads
// the registers before it takes the list, so entries committed in between
// show up as unverified trailing entries, not as failures.
void run_verify_live(const VerifyCommandOptions& options) {
  if (options.column_bank != "sha1") fail(kExitUsage, "--column-bank applies to --input files");
  for (const auto& bank : options.banks) parse_algo_option("--bank", bank);
  DaemonClient client(options.bus);

  RemoteVerify result = verify_backends(client, options);
  nlohmann::json json_backends = nlohmann::json::array();
  for (const RemoteVerifyBackend& backend : result.backends) {
    if (options.json) {
      nlohmann::json item = report_json(backend.report);
      item["backend"] = backend.id;
      item["register_kind"] = backend.register_kind;
      item["register"] = backend.register_index;
      item["state"] = backend.state;
      json_backends.push_back(std::move(item));
    } else {
      std::cout << fmt::format("backend {} ({} {}, {}):\n", backend.id, backend.register_kind, backend.register_index,
                               backend.state);
      print_human(backend.report);
    }
  }
  if (options.json) {
    nlohmann::json out;
    out["ok"] = result.ok;
    out["entries"] = result.entries;
    out["backends"] = std::move(json_backends);
    std::cout << out.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) << '\n';
  }
  std::cout.flush();
  if (!result.ok) throw CLI::RuntimeError(kExitCheckFailed);
}

void run_verify(const VerifyCommandOptions& options) {
  if (options.input.empty()) {
    if (!options.pcr_files.empty()) fail(kExitUsage, "--pcrs needs --input: live checks read the daemon's registers");
    run_verify_live(options);
    return;
  }
  if (options.pcr_files.empty()) fail(kExitUsage, "--input needs --pcrs with the reference register values");
  if (!options.backend.empty()) fail(kExitUsage, "--backend applies to live checks, without --input");
  imarot::HashAlgo column = parse_algo_option("--column-bank", options.column_bank);
  imarot::RegisterValues reference = load_reference(options);
  if (reference.empty()) {
    fail(kExitUsage, "the --pcrs files contain no register values; expected 'PCR-NN: HEX' or 'BANK:INDEX:HEX' lines");
  }
  imarot::ParsedList list = load_list(options.input, column);

  imarot::VerifyOptions verify_options;
  verify_options.pcr = options.pcr;
  verify_options.allow_trailing = options.allow_trailing;
  if (!options.banks.empty()) {
    verify_options.banks.emplace();
    for (const auto& bank : options.banks) verify_options.banks->insert(parse_algo_option("--bank", bank));
  }

  imarot::VerifyReport report = imarot::verify_list(list, reference, verify_options);
  if (options.json) {
    print_json(report);
  } else {
    print_human(report);
  }
  std::cout.flush();
  if (!report.ok()) throw CLI::RuntimeError(kExitCheckFailed);
}

}  // namespace

void add_verify_command(CLI::App& app) {
  auto options = std::make_shared<VerifyCommandOptions>();
  CLI::App* verify = app.add_subcommand(
      "verify", "Replay a measurement list against register values; without --input, the running imarotd's list "
                "against the registers of each of its backends, per bank");
  verify->add_option("--input,-i", options->input,
                     "Binary measurement list to verify ('-' for standard input); needs --pcrs");
  verify->add_option("--pcrs", options->pcr_files,
                     "Reference register values: [ALG,]FILE with 'PCR-NN: HEX' lines (evmctl's format; the bank is "
                     "ALG or --bank) or 'BANK:INDEX:HEX' lines; repeatable");
  verify->add_option("--bank", options->banks, "Check only this bank (sha1, sha256, ...); repeatable");
  verify->add_option("--pcr", options->pcr, "Check only this register index");
  verify->add_option("--column-bank", options->column_bank,
                     "Algorithm of the list's template-digest column (sha1 unless the list is a per-bank file)");
  verify->add_flag("--allow-trailing", options->allow_trailing,
                   "Accept registers that match an earlier entry, as when they were read while entries were still "
                   "being extended; later entries are reported as unverified");
  verify->add_flag("--json", options->json, "Print the report as JSON");
  add_bus_option(verify, options->bus);
  verify->add_option("--backend", options->backend, "Live check of only this backend id of imarotd");
  verify->callback([options] { run_verify(*options); });
}

}  // namespace rotctl
