// IMA template fields and template descriptors, and the template data the
// kernel builds from them.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "imarot/hash.h"
#include "imarot/result.h"

namespace imarot {

// Template field identifiers as the kernel's template_fmt strings spell them.
enum class FieldId : uint8_t {
  d,             // legacy digest: raw SHA-1 or MD5 bytes
  n,             // legacy name: at most 255 bytes, NUL-terminated
  d_ng,          // "<alg>:" NUL digest
  d_ngv2,        // "<type>:<alg>:" NUL digest
  n_ng,          // name, NUL-terminated, no length limit
  sig,           // security.ima signature (types 0x03 and 0x06) or evmsig
  buf,           // raw buffer of a buffer measurement
  d_modsig,      // d-ng of the file without its appended signature
  modsig,        // appended PKCS#7 signature
  evmsig,        // security.evm portable signature (type 0x05)
  xattrnames,    // names of the EVM-protected xattrs, joined with '|'
  xattrlengths,  // u32 length of each of those xattrs
  xattrvalues,   // their values, concatenated
  iuid,          // u32 inode uid
  igid,          // u32 inode gid
  imode,         // u16 inode mode
};

std::string_view field_id_name(FieldId id);
std::optional<FieldId> field_id_from_name(std::string_view name);

// Maximum number of fields in a template (IMA_TEMPLATE_NUM_FIELDS_MAX).
inline constexpr size_t kMaxTemplateFields = 15;
// Maximum name length of the legacy `n` field (IMA_EVENT_NAME_LEN_MAX).
inline constexpr size_t kLegacyNameMax = 255;

struct TemplateDescriptor {
  std::string name;    // "ima-ng"; empty for a custom template
  std::string format;  // "d-ng|n-ng"
  std::vector<FieldId> fields;

  // The text the lists print in the template-name column: the name, or the
  // format string for a custom template.
  std::string_view list_name() const { return name.empty() ? format : name; }
  // The legacy `ima` template has its own binary layout and hash input.
  bool is_legacy_ima() const { return name == "ima"; }
  bool has_field(FieldId id) const;
};

// The kernel's built-in templates, in its table order: ima, ima-ng, ima-ngv2,
// ima-sig, ima-sigv2, ima-buf, ima-modsig, evm-sig.
const std::vector<const TemplateDescriptor*>& builtin_templates();
const TemplateDescriptor* find_builtin_template(std::string_view name);

// Resolves a template-name column or a policy `template=` value: a built-in
// name, or a custom format string such as "d-ng|n-ng|iuid". The returned
// descriptor lives for the rest of the process, so entries can point at it.
Result<const TemplateDescriptor*> resolve_template(std::string_view name_or_format);

// Values from which template data is built. Each template uses the ones its
// fields name; the others are ignored.
struct TemplateInput {
  // File digest and the algorithm the file was hashed with (d-ng, d-ngv2).
  HashAlgo digest_algo = HashAlgo::sha256;
  Digest digest;
  // Digest for the legacy `d` field when the file digest is neither SHA-1
  // nor MD5; the kernel hashes the file a second time with SHA-1 for it.
  std::optional<Digest> legacy_digest;
  std::string digest_type = "ima";  // d-ngv2 prefix: "ima" or "verity"

  // The path as the event source reports it, before the kernel's
  // space-to-underscore rule, and the final path component that the legacy
  // `n` field falls back to for paths longer than 255 bytes.
  std::string name;
  std::string final_component;

  Bytes ima_xattr;  // raw security.ima, empty when absent
  Bytes evm_xattr;  // raw security.evm, empty when absent
  Bytes buffer;     // ima-buf payload
  Bytes modsig;     // appended signature, empty when absent
  std::optional<Digest> modsig_digest;
  HashAlgo modsig_digest_algo = HashAlgo::sha256;
  std::string xattr_names;
  Bytes xattr_lengths;
  Bytes xattr_values;
  uint32_t uid = 0;
  uint32_t gid = 0;
  uint16_t mode = 0;

  // A violation keeps the name and signature fields but zeroes every
  // digest: the d-ng digest has the size of `digest_algo`, `d` is 20 bytes.
  bool violation = false;
};

// Applies the kernel's name rule: every space becomes '_', nothing else
// changes.
std::string kernel_event_name(std::string_view name);

// Builds template data as the kernel lays it out in memory and in every
// non-`ima` binary record: for each field, a little-endian u32 length and the
// field bytes. The legacy `ima` template uses the same layout here; only its
// binary record and its hash input differ (see measurement_list.h).
Bytes build_template_data(const TemplateDescriptor& tmpl, const TemplateInput& input);

// One field of parsed template data.
struct FieldView {
  FieldId id;
  ByteView bytes;
};

// Splits template data into fields and checks each against its encoding
// (digest prefixes, lengths, terminating NULs). On error the message names the
// field and the offset within the template data.
Result<std::vector<FieldView>> split_template_data(const TemplateDescriptor& tmpl, ByteView data);

// Parsed form of a d-ng, d-ngv2 or d-modsig field.
struct DigestField {
  std::string digest_type;  // d-ngv2 only: "ima" or "verity"
  std::string algo_name;    // as written, "sha256"
  std::optional<HashAlgo> algo;
  ByteView digest;
};
Result<DigestField> parse_digest_field(FieldId id, ByteView bytes);

}  // namespace imarot
