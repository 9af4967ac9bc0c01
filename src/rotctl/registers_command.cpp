// rotctl pcrs, rtmrs, registers and boot-aggregate: read a root of trust's
// registers from the running imarotd over D-Bus, or, with --tcti, --config
// or --plugin-dir, through the backend plugin directly. A TPM behind swtpm
// serves one client at a time, so while imarotd runs its registers are
// read through the daemon.
#include <sys/stat.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <memory>
#include <set>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "daemon_client.h"
#include "imarot/rot.h"
#include "rotctl.h"

namespace rotctl {
namespace {

using imarot::rot::RotBackend;
using imarot::rot::Status;

struct BackendOptions {
  std::string backend;
  std::string config;
  std::string tcti;
  std::string plugin_dir;
  std::string bus = "system";
  bool backend_given = false;  // --backend was on the command line
  // With the daemon and no --backend: the first of its backends with this
  // plugin, or its first backend when empty.
  std::string daemon_plugin;

  bool direct() const { return !config.empty() || !tcti.empty() || !plugin_dir.empty(); }
};

struct RegistersOptions {
  BackendOptions backend;
  std::vector<std::string> banks;
  std::string registers = "all";
  bool json = false;
  bool header = false;  // print the backend and register kind first
};

struct BootAggregateOptions {
  BackendOptions backend;
  std::string ima_hash = "sha256";
  bool json = false;
};

[[noreturn]] void fail_backend(const imarot::rot::RotError& error) {
  bool usage = error.status == Status::invalid || error.status == Status::read_only ||
               error.status == Status::unallocated;
  fail(usage ? kExitUsage : kExitUnreachable, error.message);
}

// --config is JSON text when it starts with '{', else a file holding it.
std::string backend_config(const BackendOptions& options) {
  std::string text = "{}";
  if (!options.config.empty()) {
    size_t first = options.config.find_first_not_of(" \t\r\n");
    if (first != std::string::npos && options.config[first] == '{') {
      text = options.config;
    } else {
      imarot::Bytes data = read_input(options.config);
      text.assign(data.begin(), data.end());
    }
  }
  if (options.tcti.empty()) return text;

  nlohmann::json config;
  try {
    config = nlohmann::json::parse(text);
  } catch (const nlohmann::json::parse_error& e) {
    fail(kExitUsage, fmt::format("--config: invalid JSON: {}", e.what()));
  }
  if (!config.is_object()) fail(kExitUsage, "--config: expected a JSON object");
  config["tcti"] = options.tcti;
  return config.dump();
}

// Ends the program when the plugin directory is missing or not a
// directory, naming where the directory came from: --plugin-dir,
// $IMAROTD_PLUGIN_DIR or the installed default.
void check_plugin_dir(const std::string& dir, bool defaulted) {
  std::string origin = fmt::format("--plugin-dir '{}'", dir);
  if (defaulted) {
    const char* env = std::getenv("IMAROTD_PLUGIN_DIR");
    origin = env != nullptr && *env != '\0' ? fmt::format("IMAROTD_PLUGIN_DIR '{}'", dir)
                                              : fmt::format("the default plugin directory '{}'", dir);
  }
  struct stat info {};
  if (::stat(dir.c_str(), &info) != 0) {
    std::string problem = errno == ENOENT ? std::string("does not exist")
                                          : fmt::format("cannot be read: {}", std::strerror(errno));
    fail(kExitUsage, fmt::format("{} {}; give the directory of the imarot-rot-*.so backend plugins with "
                                 "--plugin-dir DIR or IMAROTD_PLUGIN_DIR",
                                 origin, problem));
  }
  if (!S_ISDIR(info.st_mode)) {
    fail(kExitUsage, fmt::format("{} is not a directory; give the directory of the imarot-rot-*.so backend plugins "
                                 "with --plugin-dir DIR or IMAROTD_PLUGIN_DIR",
                                 origin));
  }
}

std::unique_ptr<RotBackend> open_backend(const BackendOptions& options) {
  // tpm2-tss prints its own warnings to stderr unless TSS2_LOG turns them
  // off. The errors rotctl prints already contain the decoded response codes.
  setenv("TSS2_LOG", "all+none", /*overwrite=*/0);
  std::string dir = options.plugin_dir.empty() ? imarot::rot::default_plugin_dir() : options.plugin_dir;
  check_plugin_dir(dir, options.plugin_dir.empty());
  auto backend = RotBackend::load(options.backend, backend_config(options), dir);
  if (!backend) fail_backend(backend.error());
  return std::move(*backend);
}

// Parses "all" or a comma-separated list of registers and ranges: "0-7,10".
std::vector<uint32_t> parse_register_list(const std::string& text, uint32_t count) {
  std::set<uint32_t> out;
  auto bad = [&](const std::string& why) {
    fail(kExitUsage, fmt::format("--pcr '{}': {}; expected 'all' or a list such as 0-7,10 with registers 0 to {}", text,
                                 why, count - 1));
  };
  auto number = [&](const std::string& part) -> uint32_t {
    if (part.empty() || part.find_first_not_of("0123456789") != std::string::npos || part.size() > 4) {
      bad(fmt::format("'{}' is not a register number", part));
    }
    auto value = static_cast<uint32_t>(std::stoul(part));
    if (value >= count) bad(fmt::format("register {} does not exist", value));
    return value;
  };

  if (text == "all") {
    for (uint32_t i = 0; i < count; ++i) out.insert(i);
    return {out.begin(), out.end()};
  }
  size_t start = 0;
  while (start <= text.size()) {
    size_t comma = text.find(',', start);
    std::string part = text.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    size_t dash = part.find('-');
    if (dash == std::string::npos) {
      out.insert(number(part));
    } else {
      uint32_t first = number(part.substr(0, dash));
      uint32_t last = number(part.substr(dash + 1));
      if (first > last) bad(fmt::format("range {} is reversed", part));
      for (uint32_t i = first; i <= last; ++i) out.insert(i);
    }
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return {out.begin(), out.end()};
}

std::vector<imarot::HashAlgo> selected_banks(const RegistersOptions& options, const imarot::rot::Description& description) {
  std::vector<imarot::HashAlgo> banks;
  for (const std::string& argument : options.banks) {
    size_t start = 0;
    while (start <= argument.size()) {
      size_t comma = argument.find(',', start);
      std::string name = argument.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
      if (name == "all") {
        for (imarot::HashAlgo algo : description.bank_algos()) banks.push_back(algo);
      } else {
        banks.push_back(parse_algo_option("--bank", name));
      }
      if (comma == std::string::npos) break;
      start = comma + 1;
    }
  }
  if (banks.empty()) banks = description.bank_algos();
  std::vector<imarot::HashAlgo> unique;
  for (imarot::HashAlgo bank : banks) {
    if (std::find(unique.begin(), unique.end(), bank) == unique.end()) unique.push_back(bank);
  }
  return unique;
}

std::string upper_hex(const imarot::Digest& digest) {
  std::string hex = digest.hex();
  for (char& c : hex) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return hex;
}

// The name comment of a register line: "  # RTMR2 (CC MR 3)" or
// "  # MRTD (CC MR 0), read-only". It is empty for a backend without register
// names, such as a TPM, so that its output stays that of tpm2_pcrread.
std::string register_comment(const imarot::rot::Description& description, uint32_t index) {
  const imarot::rot::RegisterInfo* info = description.register_info(index);
  if (info == nullptr) return {};
  std::string comment = fmt::format("  # {}", info->name);
  if (!info->alias.empty()) comment += fmt::format(" ({})", info->alias);
  if (info->read_only) comment += ", read-only";
  return comment;
}

void print_registers(const RegistersOptions& options, const imarot::rot::Description& description,
                     const std::vector<imarot::rot::BankRead>& reads) {
  if (options.json) {
    nlohmann::ordered_json out;
    out["backend"] = description.name;
    out["register_kind"] = description.register_kind;
    out["register_count"] = description.register_count;
    out["default_register"] = description.default_register;
    if (description.read_only) out["read_only_reason"] = description.read_only_reason;
    if (!description.registers.empty()) {
      nlohmann::ordered_json names = nlohmann::ordered_json::object();
      for (uint32_t i = 0; i < description.registers.size(); ++i) {
        const imarot::rot::RegisterInfo& info = description.registers[i];
        names[std::to_string(i)] = {{"name", info.name}, {"alias", info.alias}, {"read_only", info.read_only}};
      }
      out["register_names"] = std::move(names);
    }
    out["banks"] = nlohmann::ordered_json::array();
    for (const auto& read : reads) {
      nlohmann::ordered_json values = nlohmann::ordered_json::object();
      for (size_t i = 0; i < read.registers.size(); ++i) values[std::to_string(read.registers[i])] = read.values[i].hex();
      out["banks"].push_back({{"bank", std::string(imarot::hash_name(read.bank))},
                              {"allocated", read.allocated},
                              {"registers", std::move(values)}});
    }
    std::cout << out.dump(2) << '\n';
    return;
  }

  // The layout of tpm2_pcrread (tpm2-tools 5): a bank line indented by two
  // spaces, then one line per register, its number left-aligned in two
  // columns, and the value as 0x and upper-case hex. Named registers get
  // their name in a trailing YAML comment.
  std::string text;
  if (options.header) {
    text += fmt::format("backend: {}\nregister_kind: {}\ndefault_register: {}\n", description.name,
                        description.register_kind, description.default_register);
    if (description.read_only) text += fmt::format("read_only: {}\n", description.read_only_reason);
    text += "registers:\n";
  }
  for (const auto& read : reads) {
    if (!read.allocated) {
      text += fmt::format("  {}: unallocated\n", imarot::hash_name(read.bank));
      continue;
    }
    text += fmt::format("  {}:\n", imarot::hash_name(read.bank));
    for (size_t i = 0; i < read.registers.size(); ++i) {
      text += fmt::format("    {:<2}: 0x{}{}\n", read.registers[i], upper_hex(read.values[i]),
                          register_comment(description, read.registers[i]));
    }
  }
  std::cout << text;
}

// The daemon's backend that --backend names, or the default one, and its
// description as the Backends property gives it.
std::pair<RemoteBackend, imarot::rot::Description> daemon_backend(DaemonClient& client,
                                                                  const BackendOptions& options) {
  DaemonStatus status = client.status();
  RemoteBackend remote =
      find_remote_backend(status, options.backend_given ? options.backend : std::string(), options.daemon_plugin);
  imarot::rot::Description description;
  description.name = remote.plugin;
  description.register_kind = remote.register_kind;
  description.register_count = remote.register_count;
  description.default_register = remote.register_index;
  for (const std::string& name : remote.banks) {
    auto algo = imarot::hash_algo_from_name(name);
    if (algo) description.banks.push_back(imarot::rot::Bank{*algo, imarot::digest_size(*algo), 0});
  }
  if (description.register_count == 0) {
    fail(kExitUsage, fmt::format("backend '{}' of imarotd reports no registers: {}", remote.id, remote.last_error));
  }
  return {remote, description};
}

void run_registers_from_daemon(const RegistersOptions& options) {
  DaemonClient client(options.backend.bus);
  auto [remote, description] = daemon_backend(client, options.backend);
  std::vector<uint32_t> registers = parse_register_list(options.registers, description.register_count);
  std::vector<imarot::HashAlgo> banks = selected_banks(options, description);

  std::vector<imarot::rot::BankRead> reads;
  for (imarot::HashAlgo bank : banks) {
    imarot::rot::BankRead read;
    read.bank = bank;
    auto values = client.read_registers(remote.id, bank, registers);
    read.allocated = values.has_value();
    for (const auto& [index, value] : values.value_or(std::vector<std::pair<uint32_t, imarot::Digest>>{})) {
      read.registers.push_back(index);
      read.values.push_back(value);
    }
    reads.push_back(std::move(read));
  }
  print_registers(options, description, reads);
}

void run_registers(const RegistersOptions& options) {
  if (!options.backend.direct()) {
    run_registers_from_daemon(options);
    return;
  }
  std::unique_ptr<RotBackend> backend = open_backend(options.backend);
  const imarot::rot::Description& description = backend->description();
  std::vector<uint32_t> registers = parse_register_list(options.registers, description.register_count);
  std::vector<imarot::HashAlgo> banks = selected_banks(options, description);

  std::vector<imarot::rot::BankRead> reads;
  for (imarot::HashAlgo bank : banks) {
    auto read = backend->read_bank(bank, registers);
    if (!read) fail_backend(read.error());
    reads.push_back(std::move(*read));
  }
  print_registers(options, description, reads);
}

void print_boot_aggregate(const BootAggregateOptions& options, const std::string& backend, const std::string& bank,
                          const std::string& digest) {
  if (options.json) {
    nlohmann::ordered_json out;
    out["backend"] = backend;
    out["ima_hash"] = options.ima_hash;
    out["bank"] = bank;
    out["boot_aggregate"] = digest;
    std::cout << out.dump(2) << '\n';
  } else {
    std::cout << fmt::format("{}:{}\n", bank, digest);
  }
}

void run_boot_aggregate(const BootAggregateOptions& options) {
  imarot::HashAlgo ima_hash = parse_algo_option("--ima-hash", options.ima_hash);
  if (!options.backend.direct()) {
    DaemonClient client(options.backend.bus);
    auto [remote, description] = daemon_backend(client, options.backend);
    auto [bank, digest] = client.boot_aggregate(remote.id, std::string(imarot::hash_name(ima_hash)));
    print_boot_aggregate(options, remote.plugin, bank, digest);
    return;
  }
  std::unique_ptr<RotBackend> backend = open_backend(options.backend);
  auto aggregate = backend->boot_aggregate(ima_hash);
  if (!aggregate) fail_backend(aggregate.error());
  print_boot_aggregate(options, backend->description().name, std::string(imarot::hash_name(aggregate->bank)),
                       aggregate->digest.hex());
}

// Adds the options that choose the backend and returns --backend, whose
// count shows whether it was given.
CLI::Option* add_backend_options(CLI::App* command, BackendOptions& options) {
  CLI::Option* backend = command->add_option(
      "--backend", options.backend,
      "RoT backend: with --tcti, --config or --plugin-dir the plugin name, else the id of one of imarotd's backends");
  backend->capture_default_str();
  add_bus_option(command, options.bus);
  command->add_option("--config", options.config,
                      "The backend's JSON config: JSON text starting with '{', or a file that contains it");
  command->add_option("--tcti", options.tcti,
                      "TCTI string for the tpm2 backend, such as device:/dev/tpmrm0 or swtpm:path=SOCKET; sets "
                      "\"tcti\" in the config");
  command->add_option("--plugin-dir", options.plugin_dir,
                      "Directory of the backend plugins (default: $IMAROTD_PLUGIN_DIR, else the installed one)");
  return backend;
}

void add_registers_command(CLI::App& app, const std::string& name, const std::string& description,
                           const std::string& default_backend, bool header) {
  auto options = std::make_shared<RegistersOptions>();
  options->backend.backend = default_backend;
  options->header = header;
  options->backend.daemon_plugin = header ? "" : default_backend;
  CLI::App* command = app.add_subcommand(name, description);
  CLI::Option* backend = add_backend_options(command, options->backend);
  command->add_option("--bank", options->banks,
                      "Banks to read: sha1, sha256, ... or all; repeatable or comma-separated (default: every bank "
                      "the backend extends)");
  command->add_option("--pcr,--register", options->registers,
                      "Registers to read: all, or a list such as 0-7,10")
      ->capture_default_str();
  command->add_flag("--json", options->json, "Print the registers as JSON with lower-case hex values");
  command->callback([options, backend] {
    options->backend.backend_given = backend->count() > 0;
    run_registers(*options);
  });
}

}  // namespace

void add_registers_commands(CLI::App& app) {
  add_registers_command(app, "pcrs", "Print TPM PCRs in the layout of tpm2_pcrread", "tpm2", false);
  add_registers_command(app, "rtmrs", "Print TDX RTMR0-3 and MRTD (registers of the tdx backend)", "tdx", false);
  add_registers_command(app, "registers", "Print the registers of any backend, with its register kind", "tpm2", true);

  auto options = std::make_shared<BootAggregateOptions>();
  options->backend.backend = "tpm2";
  CLI::App* command =
      app.add_subcommand("boot-aggregate", "Compute the boot_aggregate kernel IMA would record, from a backend");
  CLI::Option* backend = add_backend_options(command, options->backend);
  command->add_option("--ima-hash", options->ima_hash,
                      "IMA's hash algorithm (the kernel's ima_hash=); its bank is used when allocated")
      ->capture_default_str();
  command->add_flag("--json", options->json, "Print the result as JSON");
  command->callback([options, backend] {
    options->backend.backend_given = backend->count() > 0;
    run_boot_aggregate(*options);
  });
}

}  // namespace rotctl
