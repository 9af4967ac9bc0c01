// The set behind the kernel's duplicate check: the (PCR, template digest)
// pairs of the records already in the durable measurement list. It keeps
// 8 bytes per slot, the record's byte offset in the list file and a short
// tag of the key's hash, and reads the key itself back from the file.
#pragma once

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include <openssl/types.h>

#include "imarot/measurement_list.h"
#include "imarot/result.h"
#include "log_rate_limit.h"

namespace imarotd {

// The first 24 bytes of a binary list record: the PCR as a little-endian
// u32, then the SHA-1 template digest.
using RecordKey = std::array<uint8_t, 24>;
RecordKey record_key(const imarot::Entry& entry);

using SipHashKey = std::array<uint8_t, 16>;

// A keyed 64-bit hash through OpenSSL's EVP_MAC interface: SipHash-2-4
// with an 8-byte output, or the first 8 bytes of HMAC-SHA-256 where the
// loaded providers lack SipHash (a FIPS-only configuration).
class KeyedHash {
 public:
  explicit KeyedHash(const SipHashKey& key);
  ~KeyedHash();
  KeyedHash(const KeyedHash&) = delete;
  KeyedHash& operator=(const KeyedHash&) = delete;

  uint64_t operator()(std::span<const uint8_t> data) const;
  // "SIPHASH" or "HMAC"; empty when neither could be set up. Every hash is
  // then 0, so lookups stay exact but every key shares one probe chain.
  // NOTE: no OpenSSL provider known to us lacks HMAC, so this is untested.
  const std::string& algorithm() const { return algorithm_; }

 private:
  EVP_MAC_CTX* context_ = nullptr;
  std::string algorithm_;
};

// SipHash-2-4 of `data` under `key`, little-endian, from OpenSSL.
uint64_t siphash_2_4(const SipHashKey& key, std::span<const uint8_t> data);

// A set of RecordKey values, each stored as the offset of a record that
// starts with that key. Membership is exact: a tag match is confirmed by
// reading the record's first 24 bytes back and comparing all of them.
//
// Open addressing with linear probing. The table doubles once more than
// 3/4 of its slots are used, so a slot array of 2^k slots contains at most
// 0.75 * 2^k keys. The hash is KeyedHash with a key drawn from OpenSSL's
// random generator when the index is built, so file contents chosen to collide cannot steer
// entries into one probe chain. Not thread-safe.
class TemplateDigestIndex {
 public:
  // Reads up to buffer.size() bytes of the list file at `offset` and returns
  // the count read, which is smaller only at the end of the file.
  using ReadAt = std::function<imarot::Result<size_t>(uint64_t offset, std::span<uint8_t> buffer)>;
  // Replaces the keyed hash in tests, for example to force collisions.
  using Hasher = std::function<uint64_t(const RecordKey&)>;

  explicit TemplateDigestIndex(ReadAt read_at, Hasher hasher = nullptr);

  // Sizes the table for `count` keys, so that inserting them needs no growth.
  void reserve(size_t count);

  // Returns whether a record with `key` was inserted. A candidate record
  // that cannot be read is logged and counted in read_failures(), and counts
  // as not equal, so the new entry is appended rather than dropped.
  bool contains(const RecordKey& key);

  // Adds the record at byte `offset` of the list file, which starts with
  // `key`. Growing the table reads the keys of all records back from the
  // file, in offset order. A record that cannot be read then leaves the
  // index (logged and counted), so an equal entry would be appended again.
  // NOTE: growth blocks the caller. The growth at 786,432 keys took 0.15
  // to 0.39 s in bench_duplicate_check on a shared 2-core VM.
  void insert(const RecordKey& key, uint64_t offset);

  size_t size() const { return size_; }
  size_t capacity() const { return slots_.size(); }
  uint64_t read_failures() const { return read_failures_; }

  // Maximum offset a slot can store.
  static constexpr uint64_t kMaxOffset = (uint64_t{1} << 48) - 2;

 private:
  uint64_t hash(const RecordKey& key) const;
  // Stores `slot` at the first free position of its probe sequence.
  void place(uint64_t hash_value, uint64_t slot);
  void grow(size_t new_capacity);
  bool record_matches(uint64_t offset, const RecordKey& key);
  void log_read_failure(uint64_t offset, const std::string& reason);

  ReadAt read_at_;
  Hasher hasher_;
  std::unique_ptr<KeyedHash> keyed_hash_;
  // Each slot is 0 when free, else the tag (the hash's top 16 bits) in the
  // high 16 bits and the record's offset plus 1 in the low 48 bits.
  std::vector<uint64_t> slots_;
  size_t size_ = 0;
  uint64_t read_failures_ = 0;
  bool offset_overflow_logged_ = false;
  LogRateLimit failure_log_limit_{10, std::chrono::minutes(1)};
};

}  // namespace imarotd
