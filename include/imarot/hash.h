// Hash algorithms as IMA names and numbers them, and hashing through OpenSSL EVP.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "imarot/result.h"

namespace imarot {

using Bytes = std::vector<uint8_t>;
using ByteView = std::span<const uint8_t>;

// The kernel's hash algorithm numbers (include/uapi/linux/hash_info.h). These
// are the values stored in security.ima signatures and digests.
enum class HashAlgo : uint8_t {
  md4 = 0,
  md5 = 1,
  sha1 = 2,
  rmd160 = 3,
  sha256 = 4,
  sha384 = 5,
  sha512 = 6,
  sha224 = 7,
  rmd128 = 8,
  rmd256 = 9,
  rmd320 = 10,
  wp256 = 11,
  wp384 = 12,
  wp512 = 13,
  tgr128 = 14,
  tgr160 = 15,
  tgr192 = 16,
  sm3 = 17,
  streebog256 = 18,
  streebog512 = 19,
  sha3_256 = 20,
  sha3_384 = 21,
  sha3_512 = 22,
};

inline constexpr size_t kHashAlgoCount = 23;
inline constexpr size_t kMaxDigestSize = 64;

struct HashAlgoInfo {
  HashAlgo algo;
  std::string_view name;  // kernel crypto name, as printed in d-ng ("sha256")
  size_t digest_size;
  uint16_t tpm_alg_id;        // TPM2_ALG_ID, 0 when the TPM defines none
  const char* openssl_name;   // nullptr when OpenSSL 3 has no implementation
};

const HashAlgoInfo& hash_info(HashAlgo algo);
std::string_view hash_name(HashAlgo algo);
size_t digest_size(HashAlgo algo);
std::optional<HashAlgo> hash_algo_from_name(std::string_view name);
std::optional<HashAlgo> hash_algo_from_tpm_id(uint16_t tpm_alg_id);
// True when OpenSSL in this process can compute the algorithm.
bool hash_supported(HashAlgo algo);

// A digest of at most 64 bytes, kept inline so that per-entry digests need no
// heap allocation.
class Digest {
 public:
  Digest() = default;
  explicit Digest(ByteView bytes);
  static Digest zeros(size_t size);
  static Digest filled(size_t size, uint8_t value);

  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  const uint8_t* data() const { return bytes_.data(); }
  uint8_t* data() { return bytes_.data(); }
  ByteView view() const { return {bytes_.data(), size_}; }
  bool is_zero() const;
  std::string hex() const;
  void resize(size_t size);

  friend bool operator==(const Digest& a, const Digest& b) {
    return a.view().size() == b.view().size() &&
           std::equal(a.view().begin(), a.view().end(), b.view().begin());
  }

 private:
  std::array<uint8_t, kMaxDigestSize> bytes_{};
  size_t size_ = 0;
};

// Incremental hashing of one algorithm. The EVP_MD is fetched once per
// algorithm and process, so creating a Hasher is cheap.
class Hasher {
 public:
  static Result<Hasher> create(HashAlgo algo);
  Hasher(Hasher&&) noexcept;
  Hasher& operator=(Hasher&&) noexcept;
  ~Hasher();

  void update(ByteView data);
  void update(std::string_view data);
  // Finishes the digest and resets the hasher for the next message.
  Digest finish();
  HashAlgo algo() const { return algo_; }

 private:
  struct Context;
  Hasher(HashAlgo algo, std::unique_ptr<Context> context);
  HashAlgo algo_;
  std::unique_ptr<Context> context_;
};

Result<Digest> hash_bytes(HashAlgo algo, ByteView data);

// Hashes what can be read from `fd`, from its current offset to the end, in
// one streaming pass that feeds every algorithm in `algos`. The file is read
// in chunks, never loaded whole.
Result<std::vector<Digest>> hash_fd(int fd, std::span<const HashAlgo> algos);
Result<Digest> hash_fd(int fd, HashAlgo algo);
Result<Digest> hash_file(const std::string& path, HashAlgo algo);

std::string to_hex(ByteView bytes);
// Parses hex digits (either case); returns nullopt on an odd length or a
// non-hex character.
std::optional<Bytes> from_hex(std::string_view text);

}  // namespace imarot
