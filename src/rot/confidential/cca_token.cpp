#include "cca_token.h"

#include <cbor.h>

#include <memory>
#include <optional>
#include <tuple>
#include <vector>

#include <fmt/format.h>

namespace imarot::cc {
namespace {

struct ItemRelease {
  void operator()(cbor_item_t* item) const { cbor_decref(&item); }
};
using ItemPtr = std::unique_ptr<cbor_item_t, ItemRelease>;

// The CBOR head of tag 18 in its one-byte form: major type 6, value 18.
constexpr uint8_t kCoseSign1TagHead = 0xd2;

std::string_view type_name(const cbor_item_t* item) {
  switch (cbor_typeof(item)) {
    case CBOR_TYPE_UINT: return "an unsigned integer";
    case CBOR_TYPE_NEGINT: return "a negative integer";
    case CBOR_TYPE_BYTESTRING: return "a byte string";
    case CBOR_TYPE_STRING: return "a text string";
    case CBOR_TYPE_ARRAY: return "an array";
    case CBOR_TYPE_MAP: return "a map";
    case CBOR_TYPE_TAG: return "a tagged item";
    case CBOR_TYPE_FLOAT_CTRL: return "a simple value or float";
  }
  return "an unknown item";
}

RotError malformed(std::string_view where, const std::string& what) {
  return invalid_error(fmt::format("malformed attestation token: {}: {}", where, what));
}

// Decodes one complete CBOR item that fills all of `data`.
RotResult<ItemPtr> decode(ByteView data, std::string_view where) {
  if (data.empty()) return malformed(where, "empty");
  cbor_load_result result{};
  ItemPtr item(cbor_load(data.data(), data.size(), &result));
  if (item == nullptr) {
    std::string_view reason = "not valid CBOR";
    switch (result.error.code) {
      case CBOR_ERR_NOTENOUGHDATA: reason = "truncated CBOR"; break;
      case CBOR_ERR_MEMERROR: reason = "out of memory while decoding"; break;
      default: break;
    }
    return malformed(where, fmt::format("{} at byte {} of {}", reason, result.error.position, data.size()));
  }
  if (result.read != data.size()) {
    return malformed(where, fmt::format("{} bytes after the CBOR item ending at byte {}", data.size() - result.read,
                                        result.read));
  }
  return item;
}

// The content of a tagged item after checking its tag number.
RotResult<ItemPtr> untag(const cbor_item_t* item, uint64_t tag, std::string_view where) {
  if (!cbor_isa_tag(item)) return malformed(where, fmt::format("expected tag {}, got {}", tag, type_name(item)));
  if (cbor_tag_value(item) != tag) {
    return malformed(where, fmt::format("expected tag {}, got tag {}", tag, cbor_tag_value(item)));
  }
  return ItemPtr(cbor_tag_item(item));
}

// The bytes of a byte string, definite or indefinite.
std::optional<Bytes> byte_string(const cbor_item_t* item) {
  if (!cbor_isa_bytestring(item)) return std::nullopt;
  Bytes out;
  if (cbor_bytestring_is_definite(item)) {
    const unsigned char* data = cbor_bytestring_handle(item);
    out.assign(data, data + cbor_bytestring_length(item));
    return out;
  }
  cbor_item_t** chunks = cbor_bytestring_chunks_handle(item);
  for (size_t i = 0; i < cbor_bytestring_chunk_count(item); ++i) {
    const unsigned char* data = cbor_bytestring_handle(chunks[i]);
    out.insert(out.end(), data, data + cbor_bytestring_length(chunks[i]));
  }
  return out;
}

std::optional<std::string> text_string(const cbor_item_t* item) {
  if (!cbor_isa_string(item)) return std::nullopt;
  std::string out;
  if (cbor_string_is_definite(item)) {
    out.assign(reinterpret_cast<const char*>(cbor_string_handle(item)), cbor_string_length(item));
    return out;
  }
  cbor_item_t** chunks = cbor_string_chunks_handle(item);
  for (size_t i = 0; i < cbor_string_chunk_count(item); ++i) {
    out.append(reinterpret_cast<const char*>(cbor_string_handle(chunks[i])), cbor_string_length(chunks[i]));
  }
  return out;
}

// A map with unsigned-integer keys, as the token collection and the claims
// use. Keys of any other type are rejected. A key given twice is rejected too,
// because which of its values counts would be ambiguous.
struct IntMap {
  std::vector<std::pair<uint64_t, cbor_item_t*>> entries;  // borrowed from the map item

  const cbor_item_t* find(uint64_t key) const {
    for (const auto& [k, value] : entries) {
      if (k == key) return value;
    }
    return nullptr;
  }
};

RotResult<IntMap> int_map(const cbor_item_t* item, std::string_view where) {
  if (!cbor_isa_map(item)) return malformed(where, fmt::format("expected a map, got {}", type_name(item)));
  IntMap out;
  const cbor_pair* pairs = cbor_map_handle(item);
  for (size_t i = 0; i < cbor_map_size(item); ++i) {
    if (!cbor_isa_uint(pairs[i].key)) {
      return malformed(where, fmt::format("map key {} is {}; expected an unsigned integer", i + 1,
                                          type_name(pairs[i].key)));
    }
    uint64_t key = cbor_get_int(pairs[i].key);
    if (out.find(key) != nullptr) return malformed(where, fmt::format("key {} appears twice", key));
    out.entries.emplace_back(key, pairs[i].value);
  }
  return out;
}

// Decodes the COSE_Sign1 held in a byte string and returns its payload bytes.
RotResult<Bytes> cose_sign1_payload(const cbor_item_t* wrapped, std::string_view where) {
  auto bytes = byte_string(wrapped);
  if (!bytes) return malformed(where, fmt::format("expected a byte string holding a COSE_Sign1, got {}",
                                                  type_name(wrapped)));
  // libcbor 0.8 (Debian 12) rejects the one-byte tag heads of tags 6 to 20
  // (0xc6 to 0xd4) as malformed, and tag 18 is written as the one byte 0xd2.
  // That head is checked and removed here, and the rest decoded as the
  // array; the longer forms of tag 18 (0xd8 0x12) go through libcbor.
  ItemPtr message;
  if (!bytes->empty() && bytes->front() == kCoseSign1TagHead) {
    auto item = decode(ByteView(*bytes).subspan(1), where);
    if (!item) return item.error();
    message = std::move(*item);
  } else {
    auto item = decode(*bytes, where);
    if (!item) return item.error();
    auto untagged = untag(item->get(), kCoseSign1Tag, fmt::format("{} COSE_Sign1", where));
    if (!untagged) return untagged.error();
    message = std::move(*untagged);
  }

  const cbor_item_t* array = message.get();
  if (!cbor_isa_array(array) || cbor_array_size(array) != 4) {
    return malformed(where, fmt::format("COSE_Sign1 must be an array of 4 items, got {}{}", type_name(array),
                                        cbor_isa_array(array) ? fmt::format(" of {}", cbor_array_size(array)) : ""));
  }
  cbor_item_t** parts = cbor_array_handle(array);
  if (!cbor_isa_bytestring(parts[0])) {
    return malformed(where, fmt::format("COSE_Sign1 protected header is {}; expected a byte string",
                                        type_name(parts[0])));
  }
  if (!cbor_isa_map(parts[1])) {
    return malformed(where, fmt::format("COSE_Sign1 unprotected header is {}; expected a map", type_name(parts[1])));
  }
  auto payload = byte_string(parts[2]);
  if (!payload) {
    return malformed(where, fmt::format("COSE_Sign1 payload is {}; expected a byte string with the claims",
                                        type_name(parts[2])));
  }
  if (!cbor_isa_bytestring(parts[3])) {
    return malformed(where, fmt::format("COSE_Sign1 signature is {}; expected a byte string", type_name(parts[3])));
  }
  return std::move(*payload);
}

RotResult<Bytes> bytes_claim(const IntMap& claims, uint64_t key, std::string_view name, std::string_view where) {
  const cbor_item_t* item = claims.find(key);
  if (item == nullptr) return malformed(where, fmt::format("missing claim {} ({})", key, name));
  auto bytes = byte_string(item);
  if (!bytes) {
    return malformed(where, fmt::format("claim {} ({}) is {}; expected a byte string", key, name, type_name(item)));
  }
  return std::move(*bytes);
}

// Checks the type of a claim this code does not use, when it is present.
RotResult<void> check_optional(const IntMap& claims, uint64_t key, std::string_view name, bool text,
                               std::string_view where) {
  const cbor_item_t* item = claims.find(key);
  if (item == nullptr) return Ok{};
  bool ok = text ? cbor_isa_string(item) : cbor_isa_bytestring(item);
  if (!ok) {
    return malformed(where, fmt::format("claim {} ({}) is {}; expected a {}", key, name, type_name(item),
                                        text ? "text string" : "byte string"));
  }
  return Ok{};
}

RotResult<Digest> measurement(const cbor_item_t* item, size_t size, std::string_view name, std::string_view where) {
  auto bytes = byte_string(item);
  if (!bytes) return malformed(where, fmt::format("{} is {}; expected a byte string", name, type_name(item)));
  if (bytes->size() != size) {
    return malformed(where, fmt::format("{} is {} bytes; the realm hash algorithm needs {}", name, bytes->size(), size));
  }
  return Digest(*bytes);
}

RotResult<RealmMeasurements> parse_realm_claims(ByteView payload, std::string_view where) {
  auto item = decode(payload, where);
  if (!item) return item.error();
  auto claims = int_map(item->get(), where);
  if (!claims) return claims.error();

  RealmMeasurements out;
  auto challenge = bytes_claim(*claims, kRealmChallengeClaim, "challenge", where);
  if (!challenge) return challenge.error();
  if (challenge->size() != kRealmChallengeSize) {
    return malformed(where, fmt::format("claim {} (challenge) is {} bytes; expected {}", kRealmChallengeClaim,
                                        challenge->size(), kRealmChallengeSize));
  }
  out.challenge = std::move(*challenge);

  const cbor_item_t* algo_item = claims->find(kRealmHashAlgoClaim);
  if (algo_item == nullptr) return malformed(where, fmt::format("missing claim {} (hash algorithm)", kRealmHashAlgoClaim));
  auto algo_name = text_string(algo_item);
  if (!algo_name) {
    return malformed(where, fmt::format("claim {} (hash algorithm) is {}; expected a text string such as \"sha-256\"",
                                        kRealmHashAlgoClaim, type_name(algo_item)));
  }
  auto algo = realm_hash_algo(*algo_name);
  if (!algo) {
    return malformed(where, fmt::format("claim {} (hash algorithm) is \"{}\"; expected \"sha-256\", \"sha-384\" or "
                                        "\"sha-512\"",
                                        kRealmHashAlgoClaim, *algo_name));
  }
  out.algo = *algo;
  out.algo_name = *algo_name;
  size_t size = digest_size(*algo);

  const cbor_item_t* rim = claims->find(kRealmInitialMeasurementClaim);
  if (rim == nullptr) {
    return malformed(where, fmt::format("missing claim {} (initial measurement, RIM)", kRealmInitialMeasurementClaim));
  }
  auto rim_value = measurement(rim, size, fmt::format("claim {} (RIM)", kRealmInitialMeasurementClaim), where);
  if (!rim_value) return rim_value.error();
  out.rim = *rim_value;

  const cbor_item_t* rems = claims->find(kRealmExtensibleMeasurementsClaim);
  if (rems == nullptr) {
    return malformed(where,
                     fmt::format("missing claim {} (extensible measurements, REMs)", kRealmExtensibleMeasurementsClaim));
  }
  if (!cbor_isa_array(rems) || cbor_array_size(rems) != kRemCount) {
    return malformed(where, fmt::format("claim {} (REMs) is {}{}; expected an array of {} byte strings",
                                        kRealmExtensibleMeasurementsClaim, type_name(rems),
                                        cbor_isa_array(rems) ? fmt::format(" of {}", cbor_array_size(rems)) : "",
                                        kRemCount));
  }
  cbor_item_t** rem_items = cbor_array_handle(rems);
  for (size_t i = 0; i < kRemCount; ++i) {
    auto value = measurement(rem_items[i], size, fmt::format("REM{} in claim {}", i, kRealmExtensibleMeasurementsClaim),
                             where);
    if (!value) return value.error();
    out.rems[i] = *value;
  }

  for (auto [key, name, text] : {std::tuple{kRealmPersonalizationClaim, "personalization value", false},
                                 std::tuple{kRealmPublicKeyClaim, "public key", false},
                                 std::tuple{kRealmPublicKeyHashAlgoClaim, "public key hash algorithm", true},
                                 std::tuple{kRealmProfileClaim, "profile", true}}) {
    if (auto checked = check_optional(*claims, key, name, text, where); !checked) return checked.error();
  }
  return out;
}

}  // namespace

std::optional<HashAlgo> realm_hash_algo(std::string_view name) {
  if (name == "sha-256") return HashAlgo::sha256;
  if (name == "sha-384") return HashAlgo::sha384;
  if (name == "sha-512") return HashAlgo::sha512;
  return std::nullopt;
}

RotResult<RealmMeasurements> parse_cca_token(ByteView token, TokenFormat format) {
  auto item = decode(token, "token");
  if (!item) return item.error();
  auto collection_item = untag(item->get(), kCcaTokenCollectionTag, "token collection");
  if (!collection_item) return collection_item.error();
  auto collection = int_map(collection_item->get(), "token collection");
  if (!collection) return collection.error();

  bool arm = format == TokenFormat::arm_cca;
  std::string_view realm_where = arm ? "realm token" : "cVM token";
  for (const auto& [key, value] : collection->entries) {
    if (key != kCcaRealmTokenKey && key != kCcaPlatformTokenKey) {
      return malformed("token collection", fmt::format("unexpected key {}; expected {} ({}) and {} (platform token)",
                                                       key, kCcaRealmTokenKey, realm_where, kCcaPlatformTokenKey));
    }
  }
  const cbor_item_t* realm = collection->find(kCcaRealmTokenKey);
  if (realm == nullptr) {
    return malformed("token collection", fmt::format("missing key {} ({})", kCcaRealmTokenKey, realm_where));
  }
  const cbor_item_t* platform = collection->find(kCcaPlatformTokenKey);
  if (platform == nullptr && arm) {
    return malformed("token collection", fmt::format("missing key {} (platform token)", kCcaPlatformTokenKey));
  }
  if (platform != nullptr) {
    // Only the envelope is checked: the platform claims hold no register.
    auto platform_payload = cose_sign1_payload(platform, "platform token");
    if (!platform_payload) return platform_payload.error();
  }

  auto payload = cose_sign1_payload(realm, realm_where);
  if (!payload) return payload.error();
  auto measurements = parse_realm_claims(*payload, fmt::format("{} claims", realm_where));
  if (!measurements) return measurements.error();
  measurements->has_platform_token = platform != nullptr;
  return measurements;
}

}  // namespace imarot::cc
