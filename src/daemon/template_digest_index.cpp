#include "template_digest_index.h"

#include <algorithm>
#include <chrono>
#include <cstring>

#include <fmt/format.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <openssl/rand.h>
#include <spdlog/spdlog.h>

namespace imarotd {
namespace {

constexpr int kOffsetBits = 48;
constexpr uint64_t kOffsetMask = (uint64_t{1} << kOffsetBits) - 1;
constexpr size_t kMinCapacity = 1024;
// Bytes read per call when growth reads every record's key back. With a
// 1 MiB buffer, bench_daemon_memory at 1,000,000 entries found about 18 MB
// more heap still resident after teardown than with this one.
constexpr size_t kRebuildChunk = size_t{1} << 16;

uint64_t load_le64(const uint8_t* bytes) {
  uint64_t value = 0;
  for (int i = 0; i < 8; ++i) value |= uint64_t{bytes[i]} << (8 * i);
  return value;
}

uint64_t tag_of(uint64_t hash_value) { return hash_value >> kOffsetBits; }
uint64_t stored_offset(uint64_t slot) { return (slot & kOffsetMask) - 1; }

// A per-process key for the table's hash, from OpenSSL's random generator.
SipHashKey random_hash_key() {
  SipHashKey key{};
  if (RAND_bytes(key.data(), static_cast<int>(key.size())) == 1) return key;
  // Exactness does not depend on the key, only the resistance of the probe
  // chains to chosen collisions does.
  spdlog::error("RAND_bytes failed ({}); the duplicate check's hash key comes from the clock, so crafted file "
                "contents may slow the check down",
                ERR_error_string(ERR_get_error(), nullptr));
  uint64_t now = static_cast<uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
  std::memcpy(key.data(), &now, sizeof now);
  return key;
}

}  // namespace

RecordKey record_key(const imarot::Entry& entry) {
  RecordKey key{};
  for (int i = 0; i < 4; ++i) key[static_cast<size_t>(i)] = static_cast<uint8_t>(entry.pcr >> (8 * i));
  std::copy(entry.sha1.begin(), entry.sha1.end(), key.begin() + 4);
  return key;
}

KeyedHash::KeyedHash(const SipHashKey& key) {
  struct Choice {
    const char* mac;
    bool siphash;
  };
  for (Choice choice : {Choice{"SIPHASH", true}, Choice{"HMAC", false}}) {
    EVP_MAC* mac = EVP_MAC_fetch(nullptr, choice.mac, nullptr);
    if (mac == nullptr) continue;
    EVP_MAC_CTX* context = EVP_MAC_CTX_new(mac);
    EVP_MAC_free(mac);  // the context keeps its own reference
    if (context == nullptr) continue;
    size_t size = 8;
    char digest[] = "SHA256";
    OSSL_PARAM params[2] = {choice.siphash ? OSSL_PARAM_construct_size_t(OSSL_MAC_PARAM_SIZE, &size)
                                           : OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
                            OSSL_PARAM_construct_end()};
    if (EVP_MAC_init(context, key.data(), key.size(), params) != 1) {
      EVP_MAC_CTX_free(context);
      continue;
    }
    context_ = context;
    algorithm_ = choice.mac;
    break;
  }
  if (context_ == nullptr) {
    spdlog::error("OpenSSL offers neither SIPHASH nor HMAC ({}); the duplicate check stays exact but slows down "
                  "as the list grows",
                  ERR_error_string(ERR_get_error(), nullptr));
  } else if (algorithm_ != "SIPHASH") {
    spdlog::info("OpenSSL offers no SIPHASH; the duplicate check hashes with HMAC-SHA-256");
  }
}

KeyedHash::~KeyedHash() { EVP_MAC_CTX_free(context_); }

uint64_t KeyedHash::operator()(std::span<const uint8_t> data) const {
  if (context_ == nullptr) return 0;
  // A null key restarts the MAC with the key given first.
  uint8_t out[EVP_MAX_MD_SIZE] = {};
  size_t written = 0;
  if (EVP_MAC_init(context_, nullptr, 0, nullptr) != 1 || EVP_MAC_update(context_, data.data(), data.size()) != 1 ||
      EVP_MAC_final(context_, out, &written, sizeof out) != 1 || written < 8) {
    return 0;
  }
  return load_le64(out);
}

uint64_t siphash_2_4(const SipHashKey& key, std::span<const uint8_t> data) {
  KeyedHash hash(key);
  return hash.algorithm() == "SIPHASH" ? hash(data) : 0;
}

TemplateDigestIndex::TemplateDigestIndex(ReadAt read_at, Hasher hasher)
    : read_at_(std::move(read_at)), hasher_(std::move(hasher)) {
  if (!hasher_) keyed_hash_ = std::make_unique<KeyedHash>(random_hash_key());
}

uint64_t TemplateDigestIndex::hash(const RecordKey& key) const {
  if (hasher_) return hasher_(key);
  return (*keyed_hash_)(key);
}

void TemplateDigestIndex::reserve(size_t count) {
  size_t capacity = std::max(slots_.size(), kMinCapacity);
  while (count > capacity / 4 * 3) capacity *= 2;
  if (capacity > slots_.size()) grow(capacity);
}

bool TemplateDigestIndex::contains(const RecordKey& key) {
  if (size_ == 0) return false;
  const uint64_t hash_value = hash(key);
  const uint64_t tag = tag_of(hash_value);
  const size_t mask = slots_.size() - 1;
  for (size_t i = hash_value & mask;; i = (i + 1) & mask) {
    const uint64_t slot = slots_[i];
    if (slot == 0) return false;
    // A tag match only makes equality likely: an attacker can find a
    // collision in any short tag, so the full key decides.
    if (tag_of(slot) == tag && record_matches(stored_offset(slot), key)) return true;
  }
}

void TemplateDigestIndex::insert(const RecordKey& key, uint64_t offset) {
  if (offset > kMaxOffset) {
    // NOTE: a list file this large (256 TiB) is far beyond what one boot
    // writes. Such records stay out of the index, so equal entries after
    // them are appended again.
    if (!offset_overflow_logged_) {
      spdlog::error("the duplicate check cannot index records past byte {} of the measurement list; entries equal "
                    "to later records are appended again",
                    kMaxOffset);
      offset_overflow_logged_ = true;
    }
    return;
  }
  if (slots_.empty() || size_ + 1 > slots_.size() / 4 * 3) {
    grow(std::max(kMinCapacity, slots_.size() * 2));
  }
  const uint64_t hash_value = hash(key);
  place(hash_value, tag_of(hash_value) << kOffsetBits | (offset + 1));
  ++size_;
}

void TemplateDigestIndex::place(uint64_t hash_value, uint64_t slot) {
  const size_t mask = slots_.size() - 1;
  size_t i = hash_value & mask;
  while (slots_[i] != 0) i = (i + 1) & mask;
  slots_[i] = slot;
}

// The slots store no hash, so each key is read back from the list file. In
// offset order, one read of kRebuildChunk bytes covers many records.
void TemplateDigestIndex::grow(size_t new_capacity) {
  std::vector<uint64_t> old_slots(new_capacity, 0);
  old_slots.swap(slots_);
  old_slots.erase(std::remove(old_slots.begin(), old_slots.end(), uint64_t{0}), old_slots.end());
  std::sort(old_slots.begin(), old_slots.end(),
            [](uint64_t a, uint64_t b) { return (a & kOffsetMask) < (b & kOffsetMask); });

  std::vector<uint8_t> buffer(old_slots.empty() ? 0 : kRebuildChunk);
  uint64_t buffer_start = 0;
  size_t buffer_size = 0;
  size_t failures = 0;
  std::string first_failure;
  for (uint64_t slot : old_slots) {
    const uint64_t offset = stored_offset(slot);
    if (offset < buffer_start || offset + sizeof(RecordKey) > buffer_start + buffer_size) {
      auto read = read_at_(offset, buffer);
      buffer_start = offset;
      buffer_size = read ? *read : 0;
      if (!read && first_failure.empty()) first_failure = read.error().message;
    }
    if (offset + sizeof(RecordKey) > buffer_start + buffer_size) {
      if (first_failure.empty()) first_failure = fmt::format("the file ends before byte {}", offset + sizeof(RecordKey));
      ++failures;
      continue;
    }
    RecordKey key;
    std::memcpy(key.data(), buffer.data() + (offset - buffer_start), key.size());
    const uint64_t hash_value = hash(key);
    place(hash_value, tag_of(hash_value) << kOffsetBits | (slot & kOffsetMask));
  }
  size_ = old_slots.size() - failures;
  if (failures > 0) {
    read_failures_ += failures;
    spdlog::error("duplicate check: cannot read {} of {} records back from the measurement list while growing its "
                  "table (first error: {}); entries equal to those records are appended again",
                  failures, old_slots.size(), first_failure);
  }
}

bool TemplateDigestIndex::record_matches(uint64_t offset, const RecordKey& key) {
  RecordKey stored;
  auto read = read_at_(offset, stored);
  if (!read) {
    log_read_failure(offset, read.error().message);
    return false;
  }
  if (*read < stored.size()) {
    log_read_failure(offset, fmt::format("the file ends {} bytes into the record", *read));
    return false;
  }
  return stored == key;
}

void TemplateDigestIndex::log_read_failure(uint64_t offset, const std::string& reason) {
  ++read_failures_;
  auto decision = failure_log_limit_.admit(LogRateLimit::Clock::now());
  if (decision.suppressed > 0) {
    spdlog::error("duplicate check: {} more read failures were not logged", decision.suppressed);
  }
  if (decision.log) {
    spdlog::error("duplicate check: cannot read the record at byte offset {} of the measurement list: {}. The "
                  "record counts as different from the new entry, so the entry may be appended although it is a "
                  "duplicate",
                  offset, reason);
  }
}

}  // namespace imarotd
