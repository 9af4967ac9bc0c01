// Builds Arm CCA and VirtCCA attestation tokens with libcbor, for the tests
// and for the configfs-tsm emulation of ccrot-fs. The claims are plain
// values that a test can remove or replace to make a malformed token.
#pragma once

#include <cbor.h>

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "imarot/hash.h"

namespace imarot::test {

struct CborRelease {
  void operator()(cbor_item_t* item) const { cbor_decref(&item); }
};
using CborItem = std::unique_ptr<cbor_item_t, CborRelease>;

CborItem cbor_bytes(ByteView bytes);
CborItem cbor_text(const std::string& text);
CborItem cbor_uint(uint64_t value);
CborItem cbor_tagged(uint64_t tag, CborItem item);
CborItem cbor_array_of(std::vector<CborItem> items);
CborItem cbor_map_of(std::vector<std::pair<CborItem, CborItem>> entries);
Bytes cbor_encode(const CborItem& item);

// A claims map under construction, keyed by claim number, in insertion order.
class ClaimMap {
 public:
  void set(uint64_t key, CborItem value);
  void erase(uint64_t key);
  // Encodes the map; each value is encoded once, so encode() consumes it.
  Bytes encode();

 private:
  std::vector<std::pair<uint64_t, CborItem>> claims_;
};

// The claims a realm token carries, with the realm hash algorithm as the
// token names it ("sha-256") and measurements of that algorithm.
ClaimMap realm_claims(ByteView challenge, const std::string& algo_name, const Digest& rim,
                      const std::array<Digest, 4>& rems);

// A COSE_Sign1 with `payload`: tag 18 over [protected header, {}, payload,
// signature]. The signature is 96 zero bytes: nothing here verifies it.
Bytes cose_sign1(ByteView payload);

// A token collection: `tag` (399 for CCA) over a map from each key to a byte
// string holding the given bytes.
Bytes token_collection(const std::vector<std::pair<uint64_t, Bytes>>& entries, uint64_t tag = 399);

// A well-formed token. With `platform` the collection has a platform token
// (Arm CCA); without it only the realm (VirtCCA cVM) token.
Bytes realm_token(ByteView challenge, const std::string& algo_name, const Digest& rim,
                  const std::array<Digest, 4>& rems, bool platform);

}  // namespace imarot::test
