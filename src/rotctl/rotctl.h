// Shared pieces of the rotctl subcommands.
#pragma once

#include <CLI/CLI.hpp>

#include <optional>
#include <string>
#include <string_view>

#include "imarot/hash.h"
#include "imarot/measurement_list.h"

namespace rotctl {

// Exit codes, documented in rotctl(1).
enum ExitCode : int {
  kExitOk = 0,
  kExitCheckFailed = 1,
  kExitUsage = 2,
  kExitUnreachable = 3,
};

// Ends the program with `code` after printing `message` to stderr.
[[noreturn]] void fail(int code, const std::string& message);

// Returns "1 entry" or "N entries": `count` and the singular or plural noun.
std::string count_of(uint64_t count, std::string_view singular, std::string_view plural);

// Reads a whole file, or standard input for "-". Exits with kExitUsage and a
// message naming the file on failure.
imarot::Bytes read_input(const std::string& path);

// Parses a hash algorithm name given on the command line, or exits with
// kExitUsage naming the option.
imarot::HashAlgo parse_algo_option(const std::string& option, const std::string& value);

// Reads and parses a binary list. A malformed record ends the program with
// kExitUsage after the message that names its entry and byte offset, unless
// `keep_prefix` is set, in which case the entries before it are returned
// along with the error.
imarot::ParsedList load_list(const std::string& path, imarot::HashAlgo column_algo, bool keep_prefix = false);

void add_log_command(CLI::App& app);
void add_verify_command(CLI::App& app);
void add_registers_commands(CLI::App& app);
void add_policy_command(CLI::App& app);

}  // namespace rotctl
