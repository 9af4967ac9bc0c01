// Arm CCA and Huawei VirtCCA attestation tokens: a CBOR map tagged 399 (CCA
// token collection) whose entry 44241 is the realm (VirtCCA: cVM) token and,
// for Arm CCA, entry 44234 the platform token. Each token is a byte string
// holding a COSE_Sign1 (tag 18, array of protected header, unprotected
// header, payload, signature) whose payload is the claims map, keyed by
// integers. The realm claims give the measurement registers: RIM (44238),
// REM0-3 (44239) and the realm hash algorithm (44236, "sha-256" or
// "sha-512"). Signatures are not verified here: the values are for local
// display and replay, and a remote verifier checks the signed token.
#pragma once

#include <array>
#include <cstdint>
#include <string>

#include "cc_errors.h"

namespace imarot::cc {

inline constexpr uint64_t kCcaTokenCollectionTag = 399;
inline constexpr uint64_t kCoseSign1Tag = 18;
inline constexpr uint64_t kCcaPlatformTokenKey = 44234;
inline constexpr uint64_t kCcaRealmTokenKey = 44241;

inline constexpr uint64_t kRealmChallengeClaim = 10;
inline constexpr uint64_t kRealmProfileClaim = 265;
inline constexpr uint64_t kRealmPersonalizationClaim = 44235;
inline constexpr uint64_t kRealmHashAlgoClaim = 44236;
inline constexpr uint64_t kRealmPublicKeyClaim = 44237;
inline constexpr uint64_t kRealmInitialMeasurementClaim = 44238;
inline constexpr uint64_t kRealmExtensibleMeasurementsClaim = 44239;
inline constexpr uint64_t kRealmPublicKeyHashAlgoClaim = 44240;

inline constexpr size_t kRealmChallengeSize = 64;
inline constexpr size_t kRemCount = 4;

enum class TokenFormat {
  arm_cca,  // platform token and realm token
  virtcca,  // the cVM token; a platform token is optional
};

struct RealmMeasurements {
  Bytes challenge;
  HashAlgo algo = HashAlgo::sha256;
  std::string algo_name;  // as the token writes it: "sha-256"
  Digest rim;
  std::array<Digest, kRemCount> rems;
  bool has_platform_token = false;
};

// Parses and checks a token: its structure, the type of every claim this
// code reads or recognizes, the sizes of the challenge and the measurements. The
// error names the token part and claim that is wrong and what was expected.
RotResult<RealmMeasurements> parse_cca_token(ByteView token, TokenFormat format);

// The IANA hash function text name ("sha-256") as imarot's algorithm;
// nullopt for names that a realm cannot use.
std::optional<HashAlgo> realm_hash_algo(std::string_view name);

}  // namespace imarot::cc
