#include "imarot/measurement_list.h"

#include <algorithm>
#include <cstring>

#include <fmt/format.h>

#include "byte_io.h"

namespace imarot {
namespace {

// The legacy `ima` template hashes its name padded to IMA_EVENT_NAME_LEN_MAX + 1.
constexpr size_t kLegacyPaddedName = kLegacyNameMax + 1;

std::string_view as_chars(ByteView bytes) {
  return {reinterpret_cast<const char*>(bytes.data()), bytes.size()};
}

// The string part of a name-like field, up to its first NUL, as the kernel's
// "%s" prints it.
std::string_view c_string(ByteView bytes) {
  auto nul = std::find(bytes.begin(), bytes.end(), uint8_t{0});
  return as_chars(bytes.first(static_cast<size_t>(nul - bytes.begin())));
}

// Splits template data that was built or parsed by this library; it was
// validated then, so a failure here is a broken invariant.
std::vector<FieldView> fields_of(const Entry& entry) {
  auto fields = split_template_data(*entry.tmpl, entry.data);
  assert(fields.has_value());
  return fields ? std::move(*fields) : std::vector<FieldView>{};
}

void append_hex(std::string& out, ByteView bytes) { out += to_hex(bytes); }

}  // namespace

bool Entry::is_violation() const {
  return std::all_of(sha1.begin(), sha1.end(), [](uint8_t b) { return b == 0; });
}

Result<Entry> make_entry(uint32_t pcr, const TemplateDescriptor& tmpl, const TemplateInput& input) {
  Entry entry;
  entry.pcr = pcr;
  entry.tmpl = &tmpl;
  entry.data = build_template_data(tmpl, input);
  if (input.violation) return entry;

  // The digest slot is still zero here, so hash directly rather than through
  // template_digest(), which would take the entry for a violation.
  auto digest = hash_bytes(HashAlgo::sha1, template_hash_input(entry));
  if (!digest) return digest.error();
  std::copy_n(digest->data(), 20, entry.sha1.begin());
  return entry;
}

Bytes template_hash_input(const Entry& entry) {
  if (!entry.tmpl->is_legacy_ima()) return entry.data;

  Bytes input;
  for (const FieldView& field : fields_of(entry)) {
    if (field.id == FieldId::n) {
      // Name and NUL, then zeros up to 256 bytes.
      size_t start = input.size();
      input.insert(input.end(), field.bytes.begin(), field.bytes.end());
      input.resize(start + kLegacyPaddedName, 0);
    } else {
      input.insert(input.end(), field.bytes.begin(), field.bytes.end());
    }
  }
  return input;
}

Result<Digest> template_digest(const Entry& entry, HashAlgo bank) {
  if (entry.is_violation()) return Digest::zeros(digest_size(bank));
  if (entry.tmpl->is_legacy_ima()) return hash_bytes(bank, template_hash_input(entry));
  return hash_bytes(bank, entry.data);
}

Result<Digest> extend_digest(const Entry& entry, HashAlgo bank) {
  if (entry.is_violation()) return Digest::filled(digest_size(bank), 0xff);
  return template_digest(entry, bank);
}

Result<EntryFields> decode_fields(const Entry& entry) {
  auto fields = split_template_data(*entry.tmpl, entry.data);
  if (!fields) return fields.error();

  EntryFields out;
  for (const FieldView& field : *fields) {
    switch (field.id) {
      case FieldId::n:
      case FieldId::n_ng:
        out.name = std::string(c_string(field.bytes));
        break;
      case FieldId::d:
        out.digest_algo = field.bytes.size() == 16 ? HashAlgo::md5 : HashAlgo::sha1;
        out.digest_algo_name = std::string(hash_name(*out.digest_algo));
        out.file_digest.assign(field.bytes.begin(), field.bytes.end());
        break;
      case FieldId::d_ng:
      case FieldId::d_ngv2: {
        auto digest = parse_digest_field(field.id, field.bytes);
        if (!digest) return digest.error();
        out.digest_algo = digest->algo;
        out.digest_algo_name = digest->algo_name;
        out.digest_type = digest->digest_type;
        out.file_digest.assign(digest->digest.begin(), digest->digest.end());
        break;
      }
      case FieldId::sig:
        out.signature.assign(field.bytes.begin(), field.bytes.end());
        break;
      case FieldId::buf:
        out.buffer.assign(field.bytes.begin(), field.bytes.end());
        break;
      default:
        break;
    }
  }
  return out;
}

void append_binary_record(Bytes& out, const Entry& entry, const Digest* column_digest) {
  put_le32(out, entry.pcr);
  if (column_digest != nullptr) {
    out.insert(out.end(), column_digest->data(), column_digest->data() + column_digest->size());
  } else {
    out.insert(out.end(), entry.sha1.begin(), entry.sha1.end());
  }
  std::string_view name = entry.tmpl->list_name();
  put_le32(out, static_cast<uint32_t>(name.size()));
  out.insert(out.end(), name.begin(), name.end());

  if (!entry.tmpl->is_legacy_ima()) {
    put_le32(out, static_cast<uint32_t>(entry.data.size()));
    out.insert(out.end(), entry.data.begin(), entry.data.end());
    return;
  }
  // Legacy `ima`: the digest without a length, then the name with its
  // length and without its NUL, and no template-data length before them.
  for (const FieldView& field : fields_of(entry)) {
    if (field.id == FieldId::d) {
      out.insert(out.end(), field.bytes.begin(), field.bytes.end());
    } else {
      std::string_view text = c_string(field.bytes);
      put_le32(out, static_cast<uint32_t>(text.size()));
      out.insert(out.end(), text.begin(), text.end());
    }
  }
}

Bytes serialize_binary(const std::vector<Entry>& entries) {
  Bytes out;
  size_t total = 0;
  for (const Entry& entry : entries) total += 40 + entry.data.size();
  out.reserve(total);
  for (const Entry& entry : entries) append_binary_record(out, entry);
  return out;
}

namespace {

class Reader {
 public:
  explicit Reader(ByteView data) : data_(data) {}
  size_t offset() const { return offset_; }
  size_t remaining() const { return data_.size() - offset_; }
  bool at_end() const { return offset_ == data_.size(); }
  bool read_le32(uint32_t& value) {
    if (remaining() < 4) return false;
    value = get_le32(data_.data() + offset_);
    offset_ += 4;
    return true;
  }
  bool read_bytes(size_t count, ByteView& bytes) {
    if (remaining() < count) return false;
    bytes = data_.subspan(offset_, count);
    offset_ += count;
    return true;
  }

 private:
  ByteView data_;
  size_t offset_ = 0;
};

}  // namespace

ParsedList parse_binary_list(ByteView data, const ParseOptions& options) {
  ParsedList list;
  list.column_algo = options.column_algo;
  const size_t column_size = digest_size(options.column_algo);
  Reader reader(data);

  while (!reader.at_end()) {
    const size_t record_offset = reader.offset();
    const size_t index = list.entries.size();
    auto fail = [&](std::string message) {
      list.error = ParseError{std::move(message), record_offset, index};
      return list;
    };
    auto truncated = [&](std::string_view what) {
      return fail(fmt::format("record is truncated: {} needs more bytes than the {} left in the file", what,
                              reader.remaining()));
    };

    Entry entry;
    ByteView column;
    uint32_t name_length = 0;
    ByteView name;
    if (!reader.read_le32(entry.pcr)) return truncated("the PCR index");
    if (!reader.read_bytes(column_size, column)) return truncated("the template digest");
    if (!reader.read_le32(name_length)) return truncated("the template name length");
    if (name_length == 0 || name_length > options.max_template_name) {
      return fail(fmt::format("template name length {} is out of range (1 to {})", name_length,
                              options.max_template_name));
    }
    if (!reader.read_bytes(name_length, name)) return truncated("the template name");

    auto tmpl = resolve_template(as_chars(name));
    if (!tmpl) return fail(tmpl.error().message);
    entry.tmpl = *tmpl;
    // A legacy `ima` record has no data length, so a list that mixes it
    // with other templates cannot be split into records reliably: a damaged
    // name length of 3 would read as "ima". evmctl rejects such lists too.
    if (!list.entries.empty() && list.entries.front().tmpl->is_legacy_ima() != entry.tmpl->is_legacy_ima()) {
      return fail(fmt::format("template '{}' follows '{}' entries; a list cannot mix the legacy ima template with "
                              "other templates",
                              entry.tmpl->list_name(), list.entries.front().tmpl->list_name()));
    }

    if (entry.tmpl->is_legacy_ima()) {
      // Digest without a length; then the name with a length and no NUL.
      // NOTE: the record does not say whether the digest is SHA-1 or MD5,
      // so 20 bytes are assumed, as evmctl does.
      ByteView file_digest;
      uint32_t path_length = 0;
      ByteView path;
      if (!reader.read_bytes(20, file_digest)) return truncated("the legacy file digest");
      if (!reader.read_le32(path_length)) return truncated("the legacy name length");
      if (path_length > kLegacyNameMax) {
        return fail(fmt::format("legacy ima name length {} exceeds {}", path_length, kLegacyNameMax));
      }
      if (!reader.read_bytes(path_length, path)) return truncated("the legacy name");
      if (std::find(path.begin(), path.end(), uint8_t{0}) != path.end()) {
        return fail("legacy ima name contains a NUL byte");
      }
      put_le32(entry.data, 20);
      entry.data.insert(entry.data.end(), file_digest.begin(), file_digest.end());
      put_le32(entry.data, path_length + 1);
      entry.data.insert(entry.data.end(), path.begin(), path.end());
      entry.data.push_back(0);
    } else {
      uint32_t data_length = 0;
      ByteView template_data;
      if (!reader.read_le32(data_length)) return truncated("the template data length");
      if (data_length > options.max_template_data) {
        return fail(fmt::format("template data length {} exceeds the limit of {} bytes", data_length,
                                options.max_template_data));
      }
      if (!reader.read_bytes(data_length, template_data)) return truncated("the template data");
      auto fields = split_template_data(*entry.tmpl, template_data);
      if (!fields) return fail(fields.error().message);
      entry.data.assign(template_data.begin(), template_data.end());
    }

    if (options.column_algo == HashAlgo::sha1) {
      std::copy(column.begin(), column.end(), entry.sha1.begin());
    } else {
      Digest listed(column);
      if (!listed.is_zero()) {
        // Keep the SHA-1 digest consistent so the entry serializes into the
        // legacy files; the listed bank digest is checked by verification.
        auto sha1 = hash_bytes(HashAlgo::sha1, template_hash_input(entry));
        if (!sha1) return fail(sha1.error().message);
        std::copy_n(sha1->data(), 20, entry.sha1.begin());
      }
      list.column_digests.push_back(listed);
    }
    list.offsets.push_back(record_offset);
    list.entries.push_back(std::move(entry));
  }
  return list;
}

std::string format_parse_error(const ParseError& error) {
  return fmt::format("entry {} (byte offset {}): {}", error.entry_index + 1, error.offset, error.message);
}

void append_ascii_line(std::string& out, const Entry& entry, const Digest* column_digest) {
  out += fmt::format("{:2d} ", entry.pcr);
  if (column_digest != nullptr) {
    append_hex(out, column_digest->view());
  } else {
    append_hex(out, entry.sha1);
  }
  out += ' ';
  out += entry.tmpl->list_name();

  for (const FieldView& field : fields_of(entry)) {
    out += ' ';
    switch (field.id) {
      case FieldId::n:
      case FieldId::n_ng:
      case FieldId::xattrnames:
        out += c_string(field.bytes);
        break;
      case FieldId::d_ng:
      case FieldId::d_ngv2:
      case FieldId::d_modsig: {
        if (field.bytes.empty()) break;
        // The prefix up to its NUL as text, then the digest in hex.
        std::string_view prefix = c_string(field.bytes);
        out += prefix;
        append_hex(out, field.bytes.subspan(prefix.size() + 1));
        break;
      }
      case FieldId::iuid:
      case FieldId::igid:
        out += fmt::format("{}", get_le32(field.bytes.data()));
        break;
      case FieldId::imode:
        out += fmt::format("{}", get_le16(field.bytes.data()));
        break;
      case FieldId::d:
      case FieldId::sig:
      case FieldId::buf:
      case FieldId::modsig:
      case FieldId::evmsig:
      case FieldId::xattrlengths:
      case FieldId::xattrvalues:
        append_hex(out, field.bytes);
        break;
    }
  }
  out += '\n';
}

std::string serialize_ascii(const std::vector<Entry>& entries) {
  std::string out;
  for (const Entry& entry : entries) append_ascii_line(out, entry);
  return out;
}

}  // namespace imarot
