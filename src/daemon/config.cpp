#include "config.h"

#include <cerrno>
#include <fstream>
#include <iterator>
#include <map>
#include <set>

#include <fmt/format.h>

#include "text_file.h"

namespace imarotd {
namespace {

using nlohmann::json;

// Byte offset of every value in a JSON text, keyed by its JSON pointer
// ("/backends/0/register"). nlohmann::json keeps no positions, and errors
// about values must point at their line, so the text is scanned once more.
// The text has already been parsed, so it is known to be valid JSON.
class PositionIndex {
 public:
  explicit PositionIndex(const std::string& text) : text_(text) { scan_value(""); }
  size_t offset_of(const std::string& pointer) const {
    auto it = positions_.find(pointer);
    return it == positions_.end() ? 0 : it->second;
  }

 private:
  void skip_space() {
    while (pos_ < text_.size() && (text_[pos_] == ' ' || text_[pos_] == '\t' || text_[pos_] == '\n' ||
                                   text_[pos_] == '\r')) {
      ++pos_;
    }
  }
  std::string scan_string() {
    std::string raw;
    ++pos_;  // opening quote
    while (pos_ < text_.size() && text_[pos_] != '"') {
      if (text_[pos_] == '\\') raw += text_[pos_++];
      if (pos_ < text_.size()) raw += text_[pos_++];
    }
    ++pos_;  // closing quote
    return raw;
  }
  static std::string escape_pointer(const std::string& key) {
    std::string out;
    for (char c : key) {
      if (c == '~') {
        out += "~0";
      } else if (c == '/') {
        out += "~1";
      } else {
        out += c;
      }
    }
    return out;
  }
  void scan_value(const std::string& pointer) {
    skip_space();
    if (pos_ >= text_.size()) return;
    positions_[pointer] = pos_;
    char c = text_[pos_];
    if (c == '{') {
      ++pos_;
      for (;;) {
        skip_space();
        if (pos_ >= text_.size() || text_[pos_] == '}') break;
        std::string key = scan_string();
        skip_space();
        ++pos_;  // ':'
        scan_value(pointer + "/" + escape_pointer(key));
        skip_space();
        if (pos_ < text_.size() && text_[pos_] == ',') ++pos_;
      }
      ++pos_;
    } else if (c == '[') {
      ++pos_;
      for (size_t index = 0;; ++index) {
        skip_space();
        if (pos_ >= text_.size() || text_[pos_] == ']') break;
        scan_value(pointer + "/" + std::to_string(index));
        skip_space();
        if (pos_ < text_.size() && text_[pos_] == ',') ++pos_;
      }
      ++pos_;
    } else if (c == '"') {
      scan_string();
    } else {
      while (pos_ < text_.size() && text_[pos_] != ',' && text_[pos_] != '}' && text_[pos_] != ']' &&
             text_[pos_] != ' ' && text_[pos_] != '\n' && text_[pos_] != '\t' && text_[pos_] != '\r') {
        ++pos_;
      }
    }
  }

  const std::string& text_;
  size_t pos_ = 0;
  std::map<std::string, size_t> positions_;
};

struct LineColumn {
  size_t line = 1;
  size_t column = 1;
};

LineColumn line_column(const std::string& text, size_t offset) {
  LineColumn where;
  for (size_t i = 0; i < offset && i < text.size(); ++i) {
    if (text[i] == '\n') {
      ++where.line;
      where.column = 1;
    } else {
      ++where.column;
    }
  }
  return where;
}

class Validator {
 public:
  Validator(const std::string& text, const std::string& source) : text_(text), source_(source), index_(text) {}

  imarot::Error error(const std::string& pointer, const std::string& message) const {
    LineColumn where = line_column(text_, index_.offset_of(pointer));
    return imarot::Error{fmt::format("{}:{}:{}: {}", source_, where.line, where.column, message)};
  }

 private:
  const std::string& text_;
  const std::string& source_;
  PositionIndex index_;
};

std::string type_name(const json& value) { return value.type_name(); }

}  // namespace

imarot::Result<DaemonConfig> parse_config(const std::string& text, const std::string& source_path,
                                          const std::string& default_plugin_directory) {
  json root;
  try {
    root = json::parse(text);
  } catch (const json::parse_error& e) {
    LineColumn where = line_column(text, e.byte == 0 ? 0 : e.byte - 1);
    std::string what = e.what();
    // nlohmann's text starts with "[json.exception.parse_error.101] parse error at line L, column C: ".
    size_t colon = what.find(": ", what.find("column"));
    return imarot::Error{fmt::format("{}:{}:{}: invalid JSON: {}", source_path, where.line, where.column,
                                     colon == std::string::npos ? what : what.substr(colon + 2))};
  }

  Validator validator(text, source_path);
  if (!root.is_object()) return validator.error("", "the configuration must be a JSON object");

  DaemonConfig config;
  config.source_path = source_path;
  config.plugin_directory = default_plugin_directory;
  config.default_template = imarot::find_builtin_template("ima-ng");

  static const std::set<std::string> kKeys = {
      "policy",      "template",      "hash_algorithm",   "state_directory", "runtime_directory", "event_source",
      "measure_before_use", "queue_size", "hash_threads", "plugin_directory", "filesystems",      "backends",
      "log_level",   "dbus",          "bpf_ring_buffer_kib", "fanotify_events"};
  for (const auto& [key, value] : root.items()) {
    if (kKeys.count(key) == 0) {
      return validator.error("/" + key, fmt::format("unknown setting \"{}\"; see imarotd.json(5) for the settings",
                                                    key));
    }
  }

  auto get_string = [&](const char* key, std::string& out) -> imarot::Result<void> {
    if (!root.contains(key)) return imarot::Ok{};
    const json& value = root[key];
    if (!value.is_string() || value.get<std::string>().empty()) {
      return validator.error(std::string("/") + key,
                             fmt::format("\"{}\" must be a non-empty string, not {}", key, type_name(value)));
    }
    out = value.get<std::string>();
    return imarot::Ok{};
  };
  auto get_uint = [&](const char* key, uint32_t& out, uint32_t min, uint32_t max) -> imarot::Result<void> {
    if (!root.contains(key)) return imarot::Ok{};
    const json& value = root[key];
    if (!value.is_number_integer() || value.get<int64_t>() < min || value.get<int64_t>() > max) {
      return validator.error(std::string("/") + key, fmt::format("\"{}\" must be an integer from {} to {}, not {}", key,
                                                                 min, max, value.dump()));
    }
    out = value.get<uint32_t>();
    return imarot::Ok{};
  };

  for (auto [key, target] : {std::pair<const char*, std::string*>{"policy", &config.policy},
                             {"state_directory", &config.state_directory},
                             {"runtime_directory", &config.runtime_directory},
                             {"plugin_directory", &config.plugin_directory},
                             {"log_level", &config.log_level}}) {
    if (auto ok = get_string(key, *target); !ok) return ok.error();
  }
  static const std::set<std::string> kLevels = {"trace", "debug", "info", "warning", "error"};
  if (kLevels.count(config.log_level) == 0) {
    return validator.error("/log_level", fmt::format("unknown log level \"{}\"; expected trace, debug, info, warning "
                                                     "or error",
                                                     config.log_level));
  }

  if (root.contains("template")) {
    std::string name;
    if (auto ok = get_string("template", name); !ok) return ok.error();
    auto tmpl = imarot::resolve_template(name);
    if (!tmpl) return validator.error("/template", tmpl.error().message);
    config.default_template = *tmpl;
  }

  if (root.contains("hash_algorithm")) {
    std::string name;
    if (auto ok = get_string("hash_algorithm", name); !ok) return ok.error();
    auto algo = imarot::hash_algo_from_name(name);
    if (!algo || !imarot::hash_supported(*algo)) {
      return validator.error("/hash_algorithm", fmt::format("hash algorithm \"{}\" is not supported; expected sha1, "
                                                            "sha256, sha384, sha512 or sm3",
                                                            name));
    }
    config.hash_algorithm = *algo;
  }

  if (root.contains("event_source")) {
    std::string name;
    if (auto ok = get_string("event_source", name); !ok) return ok.error();
    if (name == "auto") {
      config.event_source = EventSourceChoice::automatic;
    } else if (name == "bpf") {
      config.event_source = EventSourceChoice::bpf;
    } else if (name == "fanotify") {
      config.event_source = EventSourceChoice::fanotify;
    } else {
      return validator.error("/event_source",
                             fmt::format("unknown event source \"{}\"; expected auto, bpf or fanotify", name));
    }
  }

  if (root.contains("measure_before_use")) {
    if (!root["measure_before_use"].is_boolean()) {
      return validator.error("/measure_before_use", "\"measure_before_use\" must be true or false");
    }
    config.measure_before_use = root["measure_before_use"].get<bool>();
  }
  if (root.contains("fanotify_events")) {
    std::string events;
    if (auto ok = get_string("fanotify_events", events); !ok) return ok.error();
    if (events == "notification") {
      config.fanotify_notification_events = true;
    } else if (events != "permission") {
      return validator.error("/fanotify_events", fmt::format("unknown fanotify event kind \"{}\"; expected "
                                                             "\"permission\" or \"notification\"",
                                                             events));
    }
    if (config.fanotify_notification_events && config.measure_before_use) {
      return validator.error("/fanotify_events",
                             "\"fanotify_events\" is \"notification\", but measure_before_use needs permission "
                             "events: an access can only wait for its measurement in a permission event");
    }
  }
  if (root.contains("dbus")) {
    if (auto ok = get_string("dbus", config.dbus); !ok) return ok.error();
    bool named = config.dbus == "system" || config.dbus == "session" || config.dbus == "none";
    if (!named && config.dbus.find(':') == std::string::npos) {
      return validator.error("/dbus", fmt::format("\"dbus\" is \"{}\"; expected \"system\", \"session\", \"none\" or a "
                                                  "D-Bus address such as \"unix:path=/run/dbus/system_bus_socket\"",
                                                  config.dbus));
    }
  }
  if (auto ok = get_uint("queue_size", config.queue_size, 1, 1u << 24); !ok) return ok.error();
  if (auto ok = get_uint("hash_threads", config.hash_threads, 0, 256); !ok) return ok.error();
  if (auto ok = get_uint("bpf_ring_buffer_kib", config.bpf_ring_buffer_kib, 16, 1u << 20); !ok) return ok.error();

  if (root.contains("filesystems")) {
    const json& list = root["filesystems"];
    if (!list.is_array()) return validator.error("/filesystems", "\"filesystems\" must be an array of mount points");
    for (size_t i = 0; i < list.size(); ++i) {
      if (!list[i].is_string() || list[i].get<std::string>().empty() || list[i].get<std::string>()[0] != '/') {
        return validator.error(fmt::format("/filesystems/{}", i), "each filesystem must be an absolute mount point");
      }
      config.filesystems.push_back(list[i].get<std::string>());
    }
  }

  if (root.contains("backends")) {
    const json& list = root["backends"];
    if (!list.is_array()) return validator.error("/backends", "\"backends\" must be an array of objects");
    std::set<std::string> names;
    for (size_t i = 0; i < list.size(); ++i) {
      std::string pointer = fmt::format("/backends/{}", i);
      const json& item = list[i];
      if (!item.is_object()) return validator.error(pointer, "each backend must be an object with a \"name\"");
      for (const auto& [key, value] : item.items()) {
        if (key != "name" && key != "register" && key != "config") {
          return validator.error(pointer + "/" + key,
                                 fmt::format("unknown backend setting \"{}\"; expected name, register or config", key));
        }
      }
      BackendConfig backend;
      if (!item.contains("name") || !item["name"].is_string() || item["name"].get<std::string>().empty()) {
        return validator.error(pointer, "backend needs a \"name\", such as \"tpm2\"");
      }
      backend.name = item["name"].get<std::string>();
      if (!names.insert(backend.name).second) {
        return validator.error(pointer + "/name", fmt::format("backend \"{}\" is listed twice", backend.name));
      }
      if (item.contains("register")) {
        const json& value = item["register"];
        if (!value.is_number_integer() || value.get<int64_t>() < 0 || value.get<int64_t>() > 63) {
          return validator.error(pointer + "/register",
                                 fmt::format("\"register\" must be an integer from 0 to 63, not {}", value.dump()));
        }
        backend.register_index = value.get<uint32_t>();
      }
      if (item.contains("config")) {
        if (!item["config"].is_object()) {
          return validator.error(pointer + "/config", "\"config\" must be an object; it is passed to the backend");
        }
        backend.config = item["config"];
      }
      config.backends.push_back(std::move(backend));
    }
  }
  return config;
}

imarot::Result<DaemonConfig> load_config(const std::string& path, const std::string& default_plugin_directory) {
  auto text = read_text_file(path);
  if (!text && text.error().code == EISDIR) {
    return imarot::Error{fmt::format("{}: is a directory, expected a configuration file", path), EISDIR};
  }
  if (!text) {
    return imarot::Error{fmt::format("cannot read the configuration file '{}': {}", path, text.error().message),
                         text.error().code};
  }
  return parse_config(*text, path, default_plugin_directory);
}

}  // namespace imarotd
