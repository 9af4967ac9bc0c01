#include "imarot/hash.h"

#include <fcntl.h>
#include <openssl/evp.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <mutex>

#include <fmt/format.h>

namespace imarot {
namespace {

// Kernel names from crypto/hash_info.c, TPM ids from the TCG algorithm
// registry, OpenSSL names from the OpenSSL 3 default provider.
constexpr std::array<HashAlgoInfo, kHashAlgoCount> kAlgos = {{
    {HashAlgo::md4, "md4", 16, 0, "MD4"},
    {HashAlgo::md5, "md5", 16, 0, "MD5"},
    {HashAlgo::sha1, "sha1", 20, 0x0004, "SHA1"},
    {HashAlgo::rmd160, "rmd160", 20, 0, "RIPEMD160"},
    {HashAlgo::sha256, "sha256", 32, 0x000B, "SHA256"},
    {HashAlgo::sha384, "sha384", 48, 0x000C, "SHA384"},
    {HashAlgo::sha512, "sha512", 64, 0x000D, "SHA512"},
    {HashAlgo::sha224, "sha224", 28, 0, "SHA224"},
    {HashAlgo::rmd128, "rmd128", 16, 0, nullptr},
    {HashAlgo::rmd256, "rmd256", 32, 0, nullptr},
    {HashAlgo::rmd320, "rmd320", 40, 0, nullptr},
    {HashAlgo::wp256, "wp256", 32, 0, nullptr},
    {HashAlgo::wp384, "wp384", 48, 0, nullptr},
    {HashAlgo::wp512, "wp512", 64, 0, nullptr},
    {HashAlgo::tgr128, "tgr128", 16, 0, nullptr},
    {HashAlgo::tgr160, "tgr160", 20, 0, nullptr},
    {HashAlgo::tgr192, "tgr192", 24, 0, nullptr},
    {HashAlgo::sm3, "sm3", 32, 0x0012, "SM3"},
    {HashAlgo::streebog256, "streebog256", 32, 0, nullptr},
    {HashAlgo::streebog512, "streebog512", 64, 0, nullptr},
    {HashAlgo::sha3_256, "sha3-256", 32, 0x0027, "SHA3-256"},
    {HashAlgo::sha3_384, "sha3-384", 48, 0x0028, "SHA3-384"},
    {HashAlgo::sha3_512, "sha3-512", 64, 0x0029, "SHA3-512"},
}};

struct EvpMdDeleter {
  void operator()(EVP_MD* md) const { EVP_MD_free(md); }
};

// EVP_MD_fetch is slow enough to matter per file, so each algorithm is
// fetched once. A failed fetch (legacy provider not loaded, no SM3) stays
// nullptr and the algorithm is reported as unsupported.
const EVP_MD* fetched_md(HashAlgo algo) {
  static std::array<std::unique_ptr<EVP_MD, EvpMdDeleter>, kHashAlgoCount> table;
  static std::once_flag once;
  std::call_once(once, [] {
    for (const auto& info : kAlgos) {
      if (info.openssl_name != nullptr) {
        table[static_cast<size_t>(info.algo)].reset(EVP_MD_fetch(nullptr, info.openssl_name, nullptr));
      }
    }
  });
  return table[static_cast<size_t>(algo)].get();
}

}  // namespace

const HashAlgoInfo& hash_info(HashAlgo algo) { return kAlgos.at(static_cast<size_t>(algo)); }
std::string_view hash_name(HashAlgo algo) { return hash_info(algo).name; }
size_t digest_size(HashAlgo algo) { return hash_info(algo).digest_size; }

std::optional<HashAlgo> hash_algo_from_name(std::string_view name) {
  for (const auto& info : kAlgos) {
    if (info.name == name) return info.algo;
  }
  return std::nullopt;
}

std::optional<HashAlgo> hash_algo_from_tpm_id(uint16_t tpm_alg_id) {
  if (tpm_alg_id == 0) return std::nullopt;
  for (const auto& info : kAlgos) {
    if (info.tpm_alg_id == tpm_alg_id) return info.algo;
  }
  return std::nullopt;
}

bool hash_supported(HashAlgo algo) { return fetched_md(algo) != nullptr; }

Digest::Digest(ByteView bytes) {
  assert(bytes.size() <= kMaxDigestSize);
  size_ = std::min(bytes.size(), kMaxDigestSize);
  std::copy_n(bytes.begin(), size_, bytes_.begin());
}

Digest Digest::zeros(size_t size) { return filled(size, 0); }

Digest Digest::filled(size_t size, uint8_t value) {
  Digest digest;
  digest.resize(size);
  std::fill_n(digest.bytes_.begin(), digest.size_, value);
  return digest;
}

bool Digest::is_zero() const {
  return std::all_of(bytes_.begin(), bytes_.begin() + static_cast<std::ptrdiff_t>(size_),
                     [](uint8_t b) { return b == 0; });
}

std::string Digest::hex() const { return to_hex(view()); }

void Digest::resize(size_t size) {
  assert(size <= kMaxDigestSize);
  size_ = std::min(size, kMaxDigestSize);
}

struct Hasher::Context {
  EVP_MD_CTX* ctx = nullptr;
  ~Context() { EVP_MD_CTX_free(ctx); }
};

Hasher::Hasher(HashAlgo algo, std::unique_ptr<Context> context) : algo_(algo), context_(std::move(context)) {}
Hasher::Hasher(Hasher&&) noexcept = default;
Hasher& Hasher::operator=(Hasher&&) noexcept = default;
Hasher::~Hasher() = default;

Result<Hasher> Hasher::create(HashAlgo algo) {
  const EVP_MD* md = fetched_md(algo);
  if (md == nullptr) {
    return Error{fmt::format("hash algorithm {} is not available in this OpenSSL build", hash_name(algo))};
  }
  auto context = std::make_unique<Context>();
  context->ctx = EVP_MD_CTX_new();
  if (context->ctx == nullptr || EVP_DigestInit_ex2(context->ctx, md, nullptr) != 1) {
    return Error{fmt::format("failed to initialize {} hashing in OpenSSL", hash_name(algo))};
  }
  return Hasher(algo, std::move(context));
}

void Hasher::update(ByteView data) {
  if (!data.empty()) EVP_DigestUpdate(context_->ctx, data.data(), data.size());
}

void Hasher::update(std::string_view data) {
  if (!data.empty()) EVP_DigestUpdate(context_->ctx, data.data(), data.size());
}

Digest Hasher::finish() {
  Digest digest;
  unsigned int size = 0;
  digest.resize(kMaxDigestSize);
  EVP_DigestFinal_ex(context_->ctx, digest.data(), &size);
  digest.resize(size);
  EVP_DigestInit_ex2(context_->ctx, nullptr, nullptr);
  return digest;
}

Result<Digest> hash_bytes(HashAlgo algo, ByteView data) {
  auto hasher = Hasher::create(algo);
  if (!hasher) return hasher.error();
  hasher->update(data);
  return hasher->finish();
}

Result<std::vector<Digest>> hash_fd(int fd, std::span<const HashAlgo> algos) {
  std::vector<Hasher> hashers;
  hashers.reserve(algos.size());
  for (HashAlgo algo : algos) {
    auto hasher = Hasher::create(algo);
    if (!hasher) return hasher.error();
    hashers.push_back(std::move(*hasher));
  }

  (void)posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
  // 256 KiB per read keeps the syscall count low while the buffer stays in L2.
  constexpr size_t kChunk = 256 * 1024;
  std::unique_ptr<uint8_t[]> buffer(new uint8_t[kChunk]);
  for (;;) {
    ssize_t n = ::read(fd, buffer.get(), kChunk);
    if (n < 0) {
      if (errno == EINTR) continue;
      int saved = errno;
      return Error{fmt::format("read failed while hashing: {}", std::strerror(saved)), saved};
    }
    if (n == 0) break;
    for (auto& hasher : hashers) hasher.update(ByteView(buffer.get(), static_cast<size_t>(n)));
  }

  std::vector<Digest> digests;
  digests.reserve(hashers.size());
  for (auto& hasher : hashers) digests.push_back(hasher.finish());
  return digests;
}

Result<Digest> hash_fd(int fd, HashAlgo algo) {
  auto digests = hash_fd(fd, std::span<const HashAlgo>(&algo, 1));
  if (!digests) return digests.error();
  return digests->front();
}

Result<Digest> hash_file(const std::string& path, HashAlgo algo) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY);
  if (fd < 0) {
    int saved = errno;
    return Error{fmt::format("cannot open '{}' for hashing: {}", path, std::strerror(saved)), saved};
  }
  auto digest = hash_fd(fd, algo);
  ::close(fd);
  if (!digest) return Error{fmt::format("'{}': {}", path, digest.error().message), digest.error().code};
  return digest;
}

std::string to_hex(ByteView bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out(bytes.size() * 2, '\0');
  for (size_t i = 0; i < bytes.size(); ++i) {
    out[2 * i] = kDigits[bytes[i] >> 4];
    out[2 * i + 1] = kDigits[bytes[i] & 0x0f];
  }
  return out;
}

std::optional<Bytes> from_hex(std::string_view text) {
  if (text.size() % 2 != 0) return std::nullopt;
  auto nibble = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  Bytes out(text.size() / 2);
  for (size_t i = 0; i < out.size(); ++i) {
    int hi = nibble(text[2 * i]);
    int lo = nibble(text[2 * i + 1]);
    if (hi < 0 || lo < 0) return std::nullopt;
    out[i] = static_cast<uint8_t>(hi << 4 | lo);
  }
  return out;
}

}  // namespace imarot
