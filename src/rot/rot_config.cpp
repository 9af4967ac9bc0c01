// Parsing of the root-of-trust config section.
#include <set>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "imarot/rot_backend_set.h"

namespace imarot::rot {
namespace {

using nlohmann::json;

Result<BackendSpec> parse_backend(const json& item, std::string_view where) {
  if (!item.is_object()) return Error{fmt::format("{}: expected an object, got {}", where, item.type_name())};

  BackendSpec spec;
  for (const auto& [key, value] : item.items()) {
    if (key == "backend") {
      if (!value.is_string()) return Error{fmt::format("{}.backend: expected a string, got {}", where, value.type_name())};
      spec.backend = value.get<std::string>();
    } else if (key == "id") {
      if (!value.is_string() || value.get<std::string>().empty()) {
        return Error{fmt::format("{}.id: expected a non-empty string", where)};
      }
      spec.id = value.get<std::string>();
    } else if (key == "register") {
      if (!value.is_number_unsigned() || value.get<uint64_t>() > UINT32_MAX) {
        return Error{fmt::format("{}.register: expected a register number, got {}", where, value.dump())};
      }
      spec.register_index = value.get<uint32_t>();
    } else if (key == "config") {
      if (!value.is_object()) return Error{fmt::format("{}.config: expected an object, got {}", where, value.type_name())};
      spec.config_json = value.dump();
    } else {
      return Error{fmt::format("{}: unknown key '{}'; expected backend, id, register or config", where, key)};
    }
  }
  if (spec.backend.empty()) return Error{fmt::format("{}: missing \"backend\", the plugin name such as \"tpm2\"", where)};
  if (spec.id.empty()) spec.id = spec.backend;
  return spec;
}

}  // namespace

Result<RotConfig> parse_rot_config(std::string_view json_text, std::string_view source) {
  json root;
  try {
    root = json::parse(json_text);
  } catch (const json::parse_error& e) {
    std::string_view detail = e.what();
    if (size_t end = detail.find("] "); detail.starts_with("[json.exception") && end != std::string_view::npos) {
      detail.remove_prefix(end + 2);
    }
    return Error{fmt::format("{}: invalid JSON: {}", source, detail)};
  }

  RotConfig config;
  const json* backends = &root;
  if (root.is_object()) {
    backends = nullptr;
    for (const auto& [key, value] : root.items()) {
      if (key == "plugin_dir") {
        if (!value.is_string()) return Error{fmt::format("{}: plugin_dir: expected a string", source)};
        config.plugin_dir = value.get<std::string>();
      } else if (key == "backends") {
        backends = &value;
      } else {
        return Error{fmt::format("{}: unknown key '{}'; expected plugin_dir or backends", source, key)};
      }
    }
    if (backends == nullptr) return Error{fmt::format("{}: missing \"backends\", the list of roots of trust", source)};
  }
  if (!backends->is_array()) {
    return Error{fmt::format("{}: backends: expected an array, got {}", source, backends->type_name())};
  }

  std::set<std::string> ids;
  for (size_t i = 0; i < backends->size(); ++i) {
    auto spec = parse_backend((*backends)[i], fmt::format("{}: backends[{}]", source, i));
    if (!spec) return spec.error();
    if (!ids.insert(spec->id).second) {
      return Error{fmt::format("{}: backends[{}]: id '{}' is used twice; give each backend its own \"id\"", source, i,
                               spec->id)};
    }
    config.backends.push_back(std::move(*spec));
  }
  return config;
}

}  // namespace imarot::rot
