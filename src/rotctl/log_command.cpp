// rotctl log: print a measurement list as ascii (byte-identical to the
// kernel's ascii_runtime_measurements), binary or JSON, from a file or from
// the running daemon.
#include <unistd.h>

#include <iostream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "daemon_client.h"
#include "rotctl.h"

namespace rotctl {
namespace {

struct LogOptions {
  std::string input;
  std::string format = "ascii";
  std::string column_bank = "sha1";
  size_t from = 1;
  std::string bus = "system";
  bool follow = false;
};

std::string json_string(const std::string& bytes) {
  // JSON text must be UTF-8; a name that is not is shown with U+FFFD, and
  // its exact bytes travel in "name_hex".
  return nlohmann::json(bytes).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

bool valid_utf8(const std::string& bytes) {
  try {
    (void)nlohmann::json(bytes).dump();
    return true;
  } catch (const nlohmann::json::type_error&) {
    return false;
  }
}

// `base` is the list index of list.entries[0], so that entries read from the
// middle of a list keep their numbers.
nlohmann::json entry_json(const imarot::ParsedList& list, size_t index, size_t base) {
  const imarot::Entry& entry = list.entries[index];
  nlohmann::json out;
  out["index"] = base + index + 1;
  out["pcr"] = entry.pcr;
  out["template_digest"] = list.column_algo == imarot::HashAlgo::sha1 ? entry.stored_digest().hex()
                                                                        : list.column_digests[index].hex();
  out["template_digest_algorithm"] = std::string(imarot::hash_name(list.column_algo));
  out["template"] = std::string(entry.tmpl->list_name());
  out["violation"] = entry.is_violation();
  auto fields = imarot::decode_fields(entry);
  if (fields) {
    out["name"] = nlohmann::json::parse(json_string(fields->name));
    if (!valid_utf8(fields->name)) out["name_hex"] = imarot::to_hex(imarot::ByteView(
        reinterpret_cast<const uint8_t*>(fields->name.data()), fields->name.size()));
    if (!fields->digest_algo_name.empty()) out["digest_algorithm"] = fields->digest_algo_name;
    if (!fields->digest_type.empty()) out["digest_type"] = fields->digest_type;
    out["digest"] = imarot::to_hex(fields->file_digest);
    if (entry.tmpl->has_field(imarot::FieldId::sig)) out["signature"] = imarot::to_hex(fields->signature);
    if (entry.tmpl->has_field(imarot::FieldId::buf)) out["buffer"] = imarot::to_hex(fields->buffer);
  }
  return out;
}

void run_log_from_daemon(const LogOptions& options);

void run_log(const LogOptions& options) {
  if (options.input.empty()) {
    run_log_from_daemon(options);
    return;
  }
  if (options.follow) fail(kExitUsage, "--follow reads from the running daemon; it cannot be used with --input");
  imarot::HashAlgo column = parse_algo_option("--column-bank", options.column_bank);
  imarot::ParsedList list = load_list(options.input, column, /*keep_prefix=*/true);
  size_t first = options.from == 0 ? 0 : options.from - 1;
  // As for the daemon's list, --from may name the entry after the last one
  // (nothing is printed) but not a later one. A file that fails to parse is
  // reported below instead.
  if (!list.error && first > list.entries.size()) {
    fail(kExitUsage,
         fmt::format("--from {}: the list has {}", options.from, count_of(list.entries.size(), "entry", "entries")));
  }
  print_entries(list, first, options.format, 0, false);

  if (list.error) {
    size_t printed = list.entries.size() > first ? list.entries.size() - first : 0;
    fail(kExitUsage, fmt::format("{}: {}; {} before it {} printed", options.input,
                                 imarot::format_parse_error(*list.error), count_of(printed, "entry", "entries"),
                                 printed == 1 ? "was" : "were"));
  }
}

// Reads the list from imarotd: the whole list through Export when it is
// printed from the start in ascii or binary, else ReadEntries pages. With
// --follow, the subscription to EntriesCommitted comes first, so that no
// entry committed meanwhile is missed.
void run_log_from_daemon(const LogOptions& options) {
  if (options.column_bank != "sha1") {
    fail(kExitUsage, "--column-bank applies to --input files; the daemon's list has the sha1 column");
  }
  DaemonClient client(options.bus);
  if (options.follow) client.subscribe_entries_committed();

  uint64_t printed = 0;
  uint64_t first = options.from - 1;
  if (options.format != "json" && first == 0) {
    auto [fd, count] = client.export_list(options.format);
    copy_fd_to_stdout(fd);
    ::close(fd);
    printed = count;
  } else {
    uint64_t count = client.status().entries;
    if (first > count) {
      fail(kExitUsage, fmt::format("--from {}: the list has {}", options.from, count_of(count, "entry", "entries")));
    }
    imarot::ParsedList list;
    list.entries = client.read_range(first, count);
    print_entries(list, 0, options.format, first, options.follow);
    printed = first + list.entries.size();
  }
  std::cout.flush();
  if (!options.follow) return;

  client.wait_entries_committed([&](uint64_t count) {
    if (count <= printed) return true;
    imarot::ParsedList list;
    list.entries = client.read_range(printed, count);
    print_entries(list, 0, options.format, printed, true);
    std::cout.flush();
    printed += list.entries.size();
    return true;
  });
}

}  // namespace

void print_entries(const imarot::ParsedList& list, size_t first, const std::string& format, size_t base,
                   bool json_lines) {
  imarot::HashAlgo column = list.column_algo;
  if (format == "ascii") {
    std::string out;
    for (size_t i = first; i < list.entries.size(); ++i) {
      const imarot::Digest* listed = column == imarot::HashAlgo::sha1 ? nullptr : &list.column_digests[i];
      imarot::append_ascii_line(out, list.entries[i], listed);
    }
    std::cout << out;
  } else if (format == "binary") {
    imarot::Bytes out;
    for (size_t i = first; i < list.entries.size(); ++i) {
      const imarot::Digest* listed = column == imarot::HashAlgo::sha1 ? nullptr : &list.column_digests[i];
      imarot::append_binary_record(out, list.entries[i], listed);
    }
    std::cout.write(reinterpret_cast<const char*>(out.data()), static_cast<std::streamsize>(out.size()));
  } else if (json_lines) {
    std::string out;
    for (size_t i = first; i < list.entries.size(); ++i) {
      out += entry_json(list, i, base).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + '\n';
    }
    std::cout << out;
  } else {
    nlohmann::json entries = nlohmann::json::array();
    for (size_t i = first; i < list.entries.size(); ++i) entries.push_back(entry_json(list, i, base));
    std::cout << entries.dump(2) << '\n';
  }
  std::cout.flush();
}

void add_log_command(CLI::App& app) {
  auto options = std::make_shared<LogOptions>();
  CLI::App* log = app.add_subcommand("log", "Print a measurement list: a file, or the running daemon's list");
  log->add_option("--input,-i", options->input,
                  "Binary measurement list to read ('-' for standard input); without it the list comes from imarotd "
                  "over D-Bus");
  log->add_option("--format,-f", options->format, "Output format: ascii (as the kernel's ascii list), binary or json")
      ->check(CLI::IsMember({"ascii", "binary", "json"}))
      ->capture_default_str();
  log->add_option("--column-bank", options->column_bank,
                  "Algorithm of the input's template-digest column: sha1 for binary_runtime_measurements, the bank "
                  "for binary_runtime_measurements_<bank>");
  log->add_option("--from", options->from, "First entry to print, counting from 1")
      ->check(CLI::Validator(
          [](std::string& value) {
            return value.find_first_not_of("0123456789") == std::string::npos && value.find_first_not_of('0') !=
                                                                                       std::string::npos
                       ? std::string()
                       : "must be an entry number of 1 or more (entries count from 1), not '" + value + "'";
          },
          "NUMBER>=1"));
  add_bus_option(log, options->bus);
  log->add_flag("--follow", options->follow,
                "Keep printing entries as imarotd commits them, until interrupted; JSON is then one object per line");
  log->callback([options] { run_log(*options); });
}

}  // namespace rotctl
