// Measurement-list entries and the kernel's binary and ascii list formats.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "imarot/hash.h"
#include "imarot/result.h"
#include "imarot/template.h"

namespace imarot {

// One entry of a measurement list.
struct Entry {
  uint32_t pcr = 10;
  const TemplateDescriptor* tmpl = nullptr;
  // Template data in the kernel's in-memory layout (u32 length + bytes per
  // field), also for the legacy `ima` template.
  Bytes data;
  // The SHA-1 template digest stored in binary_runtime_measurements; all
  // zeros marks a violation.
  std::array<uint8_t, 20> sha1{};

  bool is_violation() const;
  Digest stored_digest() const { return Digest(ByteView(sha1)); }
};

// Builds an entry and its SHA-1 template digest. A violation gets a zero
// digest, as the kernel records it.
Result<Entry> make_entry(uint32_t pcr, const TemplateDescriptor& tmpl, const TemplateInput& input);

// The bytes each bank hashes for the template digest: the template data, or
// for the legacy `ima` template the file digest followed by the name padded
// with zeros to 256 bytes.
Bytes template_hash_input(const Entry& entry);

// The template digest of `entry` in `bank`, computed from its template data.
// For a violation it is all zeros, as the kernel stores it.
Result<Digest> template_digest(const Entry& entry, HashAlgo bank);

// The value a register of algorithm `bank` is extended with for `entry`: the
// template digest, or 0xFF bytes for a violation.
Result<Digest> extend_digest(const Entry& entry, HashAlgo bank);

// Fields of an entry that callers commonly want, decoded from its template
// data. Fields the template lacks are left empty.
struct EntryFields {
  std::string name;                // n or n-ng, without the NUL
  std::optional<HashAlgo> digest_algo;
  std::string digest_algo_name;    // as written in d-ng, "sha1" for a legacy `d` digest
  std::string digest_type;         // d-ngv2 only
  Bytes file_digest;
  Bytes signature;                 // sig field
  Bytes buffer;                    // buf field
};
Result<EntryFields> decode_fields(const Entry& entry);

// --- Binary lists -----------------------------------------------------------

// Appends the kernel's binary record for `entry`. With `column_digest`, the
// record carries that digest instead of the SHA-1 one, as the per-bank
// binary_runtime_measurements_<alg> files of Linux 6.10 and later do.
void append_binary_record(Bytes& out, const Entry& entry, const Digest* column_digest = nullptr);
Bytes serialize_binary(const std::vector<Entry>& entries);

struct ParseOptions {
  // Algorithm of the template-digest column: sha1 for the legacy files,
  // the bank's for binary_runtime_measurements_<alg>.
  HashAlgo column_algo = HashAlgo::sha1;
  // Upper bounds that keep a hostile file from claiming absurd sizes.
  uint32_t max_template_name = 255;
  uint32_t max_template_data = 16 * 1024 * 1024;
};

struct ParseError {
  std::string message;
  size_t offset = 0;       // byte offset of the record in the input
  size_t entry_index = 0;  // zero-based index of the failing record
};

struct ParsedList {
  std::vector<Entry> entries;
  HashAlgo column_algo = HashAlgo::sha1;
  // The digest column as read, one per entry, when column_algo is not sha1.
  // For sha1 columns it is in Entry::sha1 and this stays empty.
  std::vector<Digest> column_digests;
  // Byte offset at which each entry starts.
  std::vector<size_t> offsets;
  std::optional<ParseError> error;  // set when parsing stopped early
};

// Parses a binary list written by the kernel or by imarotd. Parsing stops at
// the first malformed record. `entries` contains the records before it, and
// `error` states what is wrong, at which byte offset and in which entry.
ParsedList parse_binary_list(ByteView data, const ParseOptions& options = {});

std::string format_parse_error(const ParseError& error);

// --- ASCII lists ------------------------------------------------------------

// Appends the kernel's ascii line for `entry`. `column_digest` replaces the
// SHA-1 column, as in ascii_runtime_measurements_<alg>.
void append_ascii_line(std::string& out, const Entry& entry, const Digest* column_digest = nullptr);
std::string serialize_ascii(const std::vector<Entry>& entries);

}  // namespace imarot
