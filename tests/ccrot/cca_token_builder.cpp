#include "cca_token_builder.h"

#include <stdexcept>

namespace imarot::test {

CborItem cbor_bytes(ByteView bytes) { return CborItem(cbor_build_bytestring(bytes.data(), bytes.size())); }

CborItem cbor_text(const std::string& text) { return CborItem(cbor_build_stringn(text.data(), text.size())); }

CborItem cbor_uint(uint64_t value) { return CborItem(cbor_build_uint64(value)); }

CborItem cbor_tagged(uint64_t tag, CborItem item) {
  // cbor_build_tag takes its own reference to the tagged item.
  return CborItem(cbor_build_tag(tag, item.get()));
}

CborItem cbor_array_of(std::vector<CborItem> items) {
  CborItem array(cbor_new_definite_array(items.size()));
  for (CborItem& item : items) {
    if (!cbor_array_push(array.get(), item.get())) throw std::runtime_error("cbor_array_push failed");
  }
  return array;
}

CborItem cbor_map_of(std::vector<std::pair<CborItem, CborItem>> entries) {
  CborItem map(cbor_new_definite_map(entries.size()));
  for (auto& [key, value] : entries) {
    if (!cbor_map_add(map.get(), cbor_pair{key.get(), value.get()})) throw std::runtime_error("cbor_map_add failed");
  }
  return map;
}

Bytes cbor_encode(const CborItem& item) {
  unsigned char* buffer = nullptr;
  size_t capacity = 0;
  size_t length = cbor_serialize_alloc(item.get(), &buffer, &capacity);
  if (length == 0) throw std::runtime_error("cbor_serialize_alloc failed");
  Bytes out(buffer, buffer + length);
  free(buffer);
  return out;
}

void ClaimMap::set(uint64_t key, CborItem value) {
  for (auto& [existing, item] : claims_) {
    if (existing == key) {
      item = std::move(value);
      return;
    }
  }
  claims_.emplace_back(key, std::move(value));
}

void ClaimMap::erase(uint64_t key) {
  std::erase_if(claims_, [key](const auto& claim) { return claim.first == key; });
}

Bytes ClaimMap::encode() {
  std::vector<std::pair<CborItem, CborItem>> entries;
  for (auto& [key, value] : claims_) entries.emplace_back(cbor_uint(key), std::move(value));
  claims_.clear();
  return cbor_encode(cbor_map_of(std::move(entries)));
}

ClaimMap realm_claims(ByteView challenge, const std::string& algo_name, const Digest& rim,
                      const std::array<Digest, 4>& rems) {
  ClaimMap claims;
  claims.set(10, cbor_bytes(challenge));
  claims.set(44235, cbor_bytes(Bytes(64, 0x5a)));
  claims.set(44238, cbor_bytes(rim.view()));
  std::vector<CborItem> rem_items;
  for (const Digest& rem : rems) rem_items.push_back(cbor_bytes(rem.view()));
  claims.set(44239, cbor_array_of(std::move(rem_items)));
  claims.set(44236, cbor_text(algo_name));
  claims.set(44237, cbor_bytes(Bytes(97, 0x04)));
  claims.set(44240, cbor_text("sha-256"));
  return claims;
}

Bytes cose_sign1(ByteView payload) {
  std::vector<std::pair<CborItem, CborItem>> protected_header;
  protected_header.emplace_back(cbor_uint(1), CborItem(cbor_build_negint8(6)));  // alg: -7 (ES256)
  Bytes protected_bytes = cbor_encode(cbor_map_of(std::move(protected_header)));

  std::vector<CborItem> parts;
  parts.push_back(cbor_bytes(protected_bytes));
  parts.push_back(cbor_map_of({}));
  parts.push_back(cbor_bytes(payload));
  parts.push_back(cbor_bytes(Bytes(96, 0)));
  return cbor_encode(cbor_tagged(18, cbor_array_of(std::move(parts))));
}

Bytes token_collection(const std::vector<std::pair<uint64_t, Bytes>>& entries, uint64_t tag) {
  std::vector<std::pair<CborItem, CborItem>> map;
  for (const auto& [key, bytes] : entries) map.emplace_back(cbor_uint(key), cbor_bytes(bytes));
  return cbor_encode(cbor_tagged(tag, cbor_map_of(std::move(map))));
}

Bytes realm_token(ByteView challenge, const std::string& algo_name, const Digest& rim,
                  const std::array<Digest, 4>& rems, bool platform) {
  Bytes realm = cose_sign1(realm_claims(challenge, algo_name, rim, rems).encode());
  std::vector<std::pair<uint64_t, Bytes>> entries;
  if (platform) {
    ClaimMap platform_claims;
    platform_claims.set(10, cbor_bytes(Bytes(32, 0x11)));
    platform_claims.set(265, cbor_text("tag:arm.com,2023:cca_platform#1.0.0"));
    entries.emplace_back(44234, cose_sign1(platform_claims.encode()));
  }
  entries.emplace_back(44241, std::move(realm));
  return token_collection(entries);
}

}  // namespace imarot::test
