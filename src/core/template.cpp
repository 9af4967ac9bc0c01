#include "imarot/template.h"

#include <algorithm>
#include <array>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>

#include <fmt/format.h>

#include "byte_io.h"

namespace imarot {
namespace {

struct FieldName {
  FieldId id;
  std::string_view name;
};

constexpr std::array<FieldName, 16> kFieldNames = {{
    {FieldId::d, "d"},
    {FieldId::n, "n"},
    {FieldId::d_ng, "d-ng"},
    {FieldId::d_ngv2, "d-ngv2"},
    {FieldId::n_ng, "n-ng"},
    {FieldId::sig, "sig"},
    {FieldId::buf, "buf"},
    {FieldId::d_modsig, "d-modsig"},
    {FieldId::modsig, "modsig"},
    {FieldId::evmsig, "evmsig"},
    {FieldId::xattrnames, "xattrnames"},
    {FieldId::xattrlengths, "xattrlengths"},
    {FieldId::xattrvalues, "xattrvalues"},
    {FieldId::iuid, "iuid"},
    {FieldId::igid, "igid"},
    {FieldId::imode, "imode"},
}};

// security.ima and security.evm type bytes (enum evm_ima_xattr_type).
constexpr uint8_t kImaXattrDigsig = 0x03;
constexpr uint8_t kEvmXattrPortableDigsig = 0x05;
constexpr uint8_t kImaVerityDigsig = 0x06;

Result<std::vector<FieldId>> parse_format(std::string_view format) {
  std::vector<FieldId> fields;
  size_t start = 0;
  while (start <= format.size()) {
    size_t end = format.find('|', start);
    if (end == std::string_view::npos) end = format.size();
    std::string_view token = format.substr(start, end - start);
    auto id = field_id_from_name(token);
    if (!id) {
      return Error{fmt::format("unknown template field '{}' in template format '{}'; known fields are d, n, d-ng, "
                               "d-ngv2, n-ng, sig, buf, d-modsig, modsig, evmsig, xattrnames, xattrlengths, "
                               "xattrvalues, iuid, igid, imode",
                               token, format)};
    }
    fields.push_back(*id);
    start = end + 1;
  }
  if (fields.size() > kMaxTemplateFields) {
    return Error{fmt::format("template format '{}' has {} fields; the kernel allows at most {}", format,
                             fields.size(), kMaxTemplateFields)};
  }
  return fields;
}

TemplateDescriptor make_builtin(std::string_view name, std::string_view format) {
  auto fields = parse_format(format);
  assert(fields.has_value());
  return TemplateDescriptor{std::string(name), std::string(format), std::move(*fields)};
}

void append_field(Bytes& out, ByteView bytes) {
  put_le32(out, static_cast<uint32_t>(bytes.size()));
  out.insert(out.end(), bytes.begin(), bytes.end());
}

void append_string_field(Bytes& out, std::string_view text) {
  put_le32(out, static_cast<uint32_t>(text.size() + 1));
  out.insert(out.end(), text.begin(), text.end());
  out.push_back(0);
}

void append_digest_field(Bytes& out, std::string_view prefix, HashAlgo algo, const Digest* digest) {
  // The kernel writes "<prefix><alg>:" and a NUL, then the digest. A missing
  // digest (a violation) is written as zeros of the algorithm's size.
  size_t size = digest_size(algo);
  put_le32(out, static_cast<uint32_t>(prefix.size() + hash_name(algo).size() + 2 + size));
  out.insert(out.end(), prefix.begin(), prefix.end());
  std::string_view name = hash_name(algo);
  out.insert(out.end(), name.begin(), name.end());
  out.push_back(':');
  out.push_back(0);
  if (digest != nullptr) {
    out.insert(out.end(), digest->data(), digest->data() + digest->size());
  } else {
    out.insert(out.end(), size, 0);
  }
}


}  // namespace

std::string_view field_id_name(FieldId id) { return kFieldNames.at(static_cast<size_t>(id)).name; }

std::optional<FieldId> field_id_from_name(std::string_view name) {
  for (const auto& entry : kFieldNames) {
    if (entry.name == name) return entry.id;
  }
  return std::nullopt;
}

bool TemplateDescriptor::has_field(FieldId id) const {
  return std::find(fields.begin(), fields.end(), id) != fields.end();
}

const std::vector<const TemplateDescriptor*>& builtin_templates() {
  static const std::array<TemplateDescriptor, 8> kBuiltins = {
      make_builtin("ima", "d|n"),
      make_builtin("ima-ng", "d-ng|n-ng"),
      make_builtin("ima-ngv2", "d-ngv2|n-ng"),
      make_builtin("ima-sig", "d-ng|n-ng|sig"),
      make_builtin("ima-sigv2", "d-ngv2|n-ng|sig"),
      make_builtin("ima-buf", "d-ng|n-ng|buf"),
      make_builtin("ima-modsig", "d-ng|n-ng|sig|d-modsig|modsig"),
      make_builtin("evm-sig", "d-ng|n-ng|evmsig|xattrnames|xattrlengths|xattrvalues|iuid|igid|imode"),
  };
  static const std::vector<const TemplateDescriptor*> kList = [] {
    std::vector<const TemplateDescriptor*> list;
    for (const auto& tmpl : kBuiltins) list.push_back(&tmpl);
    return list;
  }();
  return kList;
}

const TemplateDescriptor* find_builtin_template(std::string_view name) {
  for (const auto* tmpl : builtin_templates()) {
    if (tmpl->name == name) return tmpl;
  }
  return nullptr;
}

Result<const TemplateDescriptor*> resolve_template(std::string_view name_or_format) {
  if (const auto* builtin = find_builtin_template(name_or_format)) return builtin;
  if (name_or_format.empty()) return Error{"empty template name"};

  // Custom formats are interned: a list of a million entries shares a few
  // descriptors, and entries keep plain pointers to them.
  static std::mutex mutex;
  static std::map<std::string, std::unique_ptr<TemplateDescriptor>, std::less<>> custom;
  std::lock_guard lock(mutex);
  if (auto it = custom.find(name_or_format); it != custom.end()) return it->second.get();

  auto fields = parse_format(name_or_format);
  if (!fields) {
    return Error{fmt::format("unknown template '{}': not a built-in template (ima, ima-ng, ima-ngv2, ima-sig, "
                             "ima-sigv2, ima-buf, ima-modsig, evm-sig) and not a valid format string: {}",
                             name_or_format, fields.error().message)};
  }
  auto tmpl = std::make_unique<TemplateDescriptor>(TemplateDescriptor{"", std::string(name_or_format), *fields});
  const TemplateDescriptor* pointer = tmpl.get();
  custom.emplace(std::string(name_or_format), std::move(tmpl));
  return pointer;
}

std::string kernel_event_name(std::string_view name) {
  std::string out(name);
  std::replace(out.begin(), out.end(), ' ', '_');
  return out;
}

Bytes build_template_data(const TemplateDescriptor& tmpl, const TemplateInput& input) {
  Bytes out;
  out.reserve(64 + input.name.size() + input.ima_xattr.size() + input.buffer.size());

  for (FieldId id : tmpl.fields) {
    switch (id) {
      case FieldId::d: {
        // 20 zero bytes for a violation; otherwise the file digest when it
        // is SHA-1 or MD5, else the separate SHA-1 digest.
        if (input.violation) {
          append_field(out, Digest::zeros(20).view());
        } else if (input.digest_algo == HashAlgo::sha1 || input.digest_algo == HashAlgo::md5) {
          append_field(out, input.digest.view());
        } else if (input.legacy_digest) {
          append_field(out, input.legacy_digest->view());
        } else {
          append_field(out, Digest::zeros(20).view());
        }
        break;
      }
      case FieldId::n: {
        std::string_view name = input.name;
        if (name.size() > kLegacyNameMax) {
          name = input.final_component.empty() ? name.substr(0, kLegacyNameMax) : input.final_component;
          name = name.substr(0, kLegacyNameMax);
        }
        append_string_field(out, kernel_event_name(name));
        break;
      }
      case FieldId::n_ng:
        append_string_field(out, kernel_event_name(input.name));
        break;
      case FieldId::d_ng:
        append_digest_field(out, "", input.digest_algo, input.violation ? nullptr : &input.digest);
        break;
      case FieldId::d_ngv2: {
        std::string prefix = input.digest_type + ":";
        append_digest_field(out, prefix, input.digest_algo, input.violation ? nullptr : &input.digest);
        break;
      }
      case FieldId::sig: {
        // The kernel takes security.ima only when it is a signature, and a
        // violation carries no security.ima at all. Otherwise sig falls back
        // to the evmsig content.
        bool is_signature = !input.ima_xattr.empty() && (input.ima_xattr[0] == kImaXattrDigsig ||
                                                         input.ima_xattr[0] == kImaVerityDigsig);
        if (is_signature && !input.violation) {
          append_field(out, input.ima_xattr);
          break;
        }
        [[fallthrough]];
      }
      case FieldId::evmsig: {
        bool portable = !input.evm_xattr.empty() && input.evm_xattr[0] == kEvmXattrPortableDigsig;
        append_field(out, portable ? ByteView(input.evm_xattr) : ByteView());
        break;
      }
      case FieldId::buf:
        append_field(out, input.buffer);
        break;
      case FieldId::d_modsig:
        if (input.modsig.empty() || !input.modsig_digest) {
          append_field(out, ByteView());
        } else {
          append_digest_field(out, "", input.modsig_digest_algo, &*input.modsig_digest);
        }
        break;
      case FieldId::modsig:
        append_field(out, input.modsig);
        break;
      case FieldId::xattrnames:
        if (input.xattr_names.empty()) {
          append_field(out, ByteView());
        } else {
          append_string_field(out, input.xattr_names);
        }
        break;
      case FieldId::xattrlengths:
        append_field(out, input.xattr_lengths);
        break;
      case FieldId::xattrvalues:
        append_field(out, input.xattr_values);
        break;
      case FieldId::iuid:
      case FieldId::igid: {
        Bytes value;
        put_le32(value, id == FieldId::iuid ? input.uid : input.gid);
        append_field(out, value);
        break;
      }
      case FieldId::imode: {
        Bytes value;
        put_le16(value, input.mode);
        append_field(out, value);
        break;
      }
    }
  }
  return out;
}

Result<DigestField> parse_digest_field(FieldId id, ByteView bytes) {
  auto nul = std::find(bytes.begin(), bytes.end(), uint8_t{0});
  if (nul == bytes.end()) {
    return Error{fmt::format("{} field has no NUL after its algorithm prefix", field_id_name(id))};
  }
  std::string prefix(bytes.begin(), nul);
  if (prefix.empty() || prefix.back() != ':') {
    return Error{fmt::format("{} field prefix '{}' does not end with ':'", field_id_name(id), prefix)};
  }
  prefix.pop_back();

  DigestField field;
  if (id == FieldId::d_ngv2) {
    size_t colon = prefix.find(':');
    if (colon == std::string::npos) {
      return Error{fmt::format("d-ngv2 field prefix '{}:' lacks the digest type; expected 'ima:<alg>:' or "
                               "'verity:<alg>:'",
                               prefix)};
    }
    field.digest_type = prefix.substr(0, colon);
    prefix = prefix.substr(colon + 1);
    if (field.digest_type != "ima" && field.digest_type != "verity") {
      return Error{fmt::format("d-ngv2 field has digest type '{}'; expected 'ima' or 'verity'", field.digest_type)};
    }
  }
  field.algo_name = prefix;
  field.algo = hash_algo_from_name(prefix);
  if (!field.algo) {
    return Error{fmt::format("{} field names unknown hash algorithm '{}'", field_id_name(id), prefix)};
  }
  field.digest = bytes.subspan(static_cast<size_t>(nul - bytes.begin()) + 1);
  if (field.digest.size() != digest_size(*field.algo)) {
    return Error{fmt::format("{} field has a {}-byte digest, but {} digests are {} bytes", field_id_name(id),
                             field.digest.size(), prefix, digest_size(*field.algo))};
  }
  return field;
}

Result<std::vector<FieldView>> split_template_data(const TemplateDescriptor& tmpl, ByteView data) {
  std::vector<FieldView> fields;
  fields.reserve(tmpl.fields.size());
  size_t offset = 0;
  for (FieldId id : tmpl.fields) {
    if (data.size() - offset < 4) {
      return Error{fmt::format("template data ends at byte {} before the length of field '{}'", offset,
                               field_id_name(id))};
    }
    uint32_t length = get_le32(data.data() + offset);
    if (length > data.size() - offset - 4) {
      return Error{fmt::format("field '{}' at template data byte {} claims {} bytes, but only {} remain",
                               field_id_name(id), offset, length, data.size() - offset - 4)};
    }
    ByteView bytes = data.subspan(offset + 4, length);
    auto where = [&] { return fmt::format("field '{}' at template data byte {}", field_id_name(id), offset); };

    switch (id) {
      case FieldId::d:
        if (length != 20 && length != 16) {
          return Error{fmt::format("{} is {} bytes; a legacy digest is 20 (SHA-1) or 16 (MD5)", where(), length)};
        }
        break;
      case FieldId::n:
      case FieldId::n_ng: {
        if (length == 0 || bytes.back() != 0) {
          return Error{fmt::format("{} is not NUL-terminated", where())};
        }
        if (std::find(bytes.begin(), bytes.end() - 1, uint8_t{0}) != bytes.end() - 1) {
          return Error{fmt::format("{} contains a NUL byte before its end", where())};
        }
        if (id == FieldId::n && length > kLegacyNameMax + 1) {
          return Error{fmt::format("{} is {} bytes; the legacy name field is at most {} bytes", where(), length,
                                   kLegacyNameMax + 1)};
        }
        break;
      }
      case FieldId::d_ng:
      case FieldId::d_ngv2:
      case FieldId::d_modsig: {
        if (id == FieldId::d_modsig && length == 0) break;
        auto parsed = parse_digest_field(id, bytes);
        if (!parsed) return Error{fmt::format("{}: {}", where(), parsed.error().message)};
        break;
      }
      case FieldId::xattrnames:
        if (length != 0 && bytes.back() != 0) {
          return Error{fmt::format("{} is not NUL-terminated", where())};
        }
        break;
      case FieldId::xattrlengths:
        if (length % 4 != 0) {
          return Error{fmt::format("{} is {} bytes; expected a multiple of 4", where(), length)};
        }
        break;
      case FieldId::iuid:
      case FieldId::igid:
        if (length != 4) return Error{fmt::format("{} is {} bytes; expected 4", where(), length)};
        break;
      case FieldId::imode:
        if (length != 2) return Error{fmt::format("{} is {} bytes; expected 2", where(), length)};
        break;
      case FieldId::sig:
      case FieldId::buf:
      case FieldId::modsig:
      case FieldId::evmsig:
      case FieldId::xattrvalues:
        break;
    }
    fields.push_back(FieldView{id, bytes});
    offset += 4 + length;
  }
  if (offset != data.size()) {
    return Error{fmt::format("{} bytes of template data follow the last field of template '{}'", data.size() - offset,
                             tmpl.list_name())};
  }
  return fields;
}

}  // namespace imarot
