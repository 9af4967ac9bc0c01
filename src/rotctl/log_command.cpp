// rotctl log: print a measurement list as ascii (byte-identical to the
// kernel's ascii_runtime_measurements), binary or JSON.
#include <iostream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "rotctl.h"

namespace rotctl {
namespace {

struct LogOptions {
  std::string input;
  std::string format = "ascii";
  std::string column_bank = "sha1";
  size_t from = 1;
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

nlohmann::json entry_json(const imarot::ParsedList& list, size_t index) {
  const imarot::Entry& entry = list.entries[index];
  nlohmann::json out;
  out["index"] = index + 1;
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

void run_log(const LogOptions& options) {
  imarot::HashAlgo column = parse_algo_option("--column-bank", options.column_bank);
  imarot::ParsedList list = load_list(options.input, column, /*keep_prefix=*/true);
  size_t first = options.from == 0 ? 0 : options.from - 1;

  if (options.format == "ascii") {
    std::string out;
    for (size_t i = first; i < list.entries.size(); ++i) {
      const imarot::Digest* listed = column == imarot::HashAlgo::sha1 ? nullptr : &list.column_digests[i];
      imarot::append_ascii_line(out, list.entries[i], listed);
    }
    std::cout << out;
  } else if (options.format == "binary") {
    imarot::Bytes out;
    for (size_t i = first; i < list.entries.size(); ++i) {
      const imarot::Digest* listed = column == imarot::HashAlgo::sha1 ? nullptr : &list.column_digests[i];
      imarot::append_binary_record(out, list.entries[i], listed);
    }
    std::cout.write(reinterpret_cast<const char*>(out.data()), static_cast<std::streamsize>(out.size()));
  } else {
    nlohmann::json entries = nlohmann::json::array();
    for (size_t i = first; i < list.entries.size(); ++i) entries.push_back(entry_json(list, i));
    std::cout << entries.dump(2) << '\n';
  }
  std::cout.flush();

  if (list.error) {
    fail(kExitUsage, fmt::format("{}: {}; the {} entries before it were printed", options.input,
                                 imarot::format_parse_error(*list.error), list.entries.size()));
  }
}

}  // namespace

void add_log_command(CLI::App& app) {
  auto options = std::make_shared<LogOptions>();
  CLI::App* log = app.add_subcommand("log", "Print a measurement list");
  log->add_option("--input,-i", options->input, "Binary measurement list to read ('-' for standard input)")
      ->required();
  log->add_option("--format,-f", options->format, "Output format: ascii (as the kernel's ascii list), binary or json")
      ->check(CLI::IsMember({"ascii", "binary", "json"}));
  log->add_option("--column-bank", options->column_bank,
                  "Algorithm of the input's template-digest column: sha1 for binary_runtime_measurements, the bank "
                  "for binary_runtime_measurements_<bank>");
  log->add_option("--from", options->from, "First entry to print, counting from 1")->check(CLI::PositiveNumber);
  log->callback([options] { run_log(*options); });
}

}  // namespace rotctl
