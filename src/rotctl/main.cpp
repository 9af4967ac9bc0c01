// rotctl: reads, prints and verifies IMA measurement lists and the registers
// of imarotd's roots of trust.
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <vector>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "daemon_client.h"
#include "rotctl.h"

namespace rotctl {

void fail(int code, const std::string& message) {
  std::cerr << "rotctl: " << message << '\n';
  std::cout.flush();
  std::exit(code);
}

std::string count_of(uint64_t count, std::string_view singular, std::string_view plural) {
  return fmt::format("{} {}", count, count == 1 ? singular : plural);
}

imarot::Bytes read_input(const std::string& path) {
  int fd = path == "-" ? STDIN_FILENO : ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail(kExitUsage, fmt::format("cannot open '{}': {}", path, std::strerror(errno)));
  imarot::Bytes data;
  uint8_t buffer[65536];
  for (;;) {
    ssize_t n = ::read(fd, buffer, sizeof buffer);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) fail(kExitUsage, fmt::format("cannot read '{}': {}", path, std::strerror(errno)));
    if (n == 0) break;
    data.insert(data.end(), buffer, buffer + n);
  }
  if (fd != STDIN_FILENO) ::close(fd);
  return data;
}

imarot::HashAlgo parse_algo_option(const std::string& option, const std::string& value) {
  auto algo = imarot::hash_algo_from_name(value);
  if (!algo) {
    fail(kExitUsage, fmt::format("{}: unknown hash algorithm '{}'; expected a kernel name such as sha1, sha256, "
                                 "sha384, sha512 or sm3",
                                 option, value));
  }
  return *algo;
}

imarot::ParsedList load_list(const std::string& path, imarot::HashAlgo column_algo, bool keep_prefix) {
  imarot::Bytes data = read_input(path);
  imarot::ParseOptions options;
  options.column_algo = column_algo;
  imarot::ParsedList list = imarot::parse_binary_list(data, options);
  if (list.error && !keep_prefix) {
    fail(kExitUsage, fmt::format("{}: {}", path, imarot::format_parse_error(*list.error)));
  }
  return list;
}

}  // namespace rotctl

int main(int argc, char** argv) {
  CLI::App app{"rotctl: read, print and verify IMA measurement lists and root-of-trust registers"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "rotctl 0.1.0");

  rotctl::add_log_command(app);
  rotctl::add_verify_command(app);
  rotctl::add_registers_commands(app);
  rotctl::add_policy_command(app);
  rotctl::add_status_command(app);

  // CLI11 reports a mistyped command as "A subcommand is required"; name it.
  std::vector<std::string> names;
  for (const CLI::App* command : app.get_subcommands({})) names.push_back(command->get_name());
  if (argc > 1 && argv[1][0] != '-' && std::find(names.begin(), names.end(), argv[1]) == names.end()) {
    std::cerr << "rotctl: unknown command '" << argv[1] << "'; commands: " << fmt::format("{}", fmt::join(names, ", "))
              << "\n";
    return rotctl::kExitUsage;
  }

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::RuntimeError& e) {
    return e.get_exit_code();
  } catch (const CLI::ParseError& e) {
    app.exit(e);
    return rotctl::kExitUsage;
  }
  return rotctl::kExitOk;
}
