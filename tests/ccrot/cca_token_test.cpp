// Arm CCA and VirtCCA attestation tokens built with libcbor are parsed into
// RIM and REMs, and malformed ones are rejected with messages that name the
// fault. The read-only backends read tokens from /dev/tsi (a test double
// behind the ioctl interface) and from a configfs-tsm report (ccrot-fs).
#include <gtest/gtest.h>

#include <cerrno>
#include <cstring>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "cc_backend.h"
#include "cca_token.h"
#include "cca_token_builder.h"
#include "ccrot_mount.h"
#include "imarot/rot_backend_set.h"
#include "rot_test_util.h"
#include "token_source.h"

namespace imarot::test {
namespace {

using cc::TokenFormat;
using rot::Status;

std::array<Digest, 4> sample_rems(HashAlgo algo) {
  size_t size = digest_size(algo);
  return {Digest::filled(size, 0x10), Digest::filled(size, 0x11), Digest::zeros(size), Digest::filled(size, 0x13)};
}

Bytes challenge() { return Bytes(64, 0xc7); }

// A token whose realm claims are `claims`, with or without a platform token.
Bytes token_with(ClaimMap claims, bool platform = true) {
  std::vector<std::pair<uint64_t, Bytes>> entries;
  if (platform) entries.emplace_back(44234, cose_sign1(ClaimMap().encode()));
  entries.emplace_back(44241, cose_sign1(claims.encode()));
  return token_collection(entries);
}

ClaimMap good_claims(HashAlgo algo = HashAlgo::sha256) {
  return realm_claims(challenge(), algo == HashAlgo::sha256 ? "sha-256" : "sha-512",
                      Digest::filled(digest_size(algo), 0x71), sample_rems(algo));
}

std::string rejection(ByteView token, TokenFormat format = TokenFormat::arm_cca) {
  auto parsed = cc::parse_cca_token(token, format);
  if (parsed) return "(accepted)";
  EXPECT_EQ(parsed.error().status, Status::invalid);
  return parsed.error().message;
}

TEST(CcaToken, ArmTokenSha256) {
  Bytes token = realm_token(challenge(), "sha-256", Digest::filled(32, 0x71), sample_rems(HashAlgo::sha256), true);
  auto parsed = cc::parse_cca_token(token, TokenFormat::arm_cca);
  ASSERT_TRUE(parsed) << parsed.error().message;
  EXPECT_EQ(parsed->algo, HashAlgo::sha256);
  EXPECT_EQ(parsed->algo_name, "sha-256");
  EXPECT_EQ(parsed->rim, Digest::filled(32, 0x71));
  for (size_t i = 0; i < 4; ++i) EXPECT_EQ(parsed->rems[i], sample_rems(HashAlgo::sha256)[i]) << "REM" << i;
  EXPECT_EQ(parsed->challenge, challenge());
  EXPECT_TRUE(parsed->has_platform_token);
}

TEST(CcaToken, ArmTokenSha512) {
  Bytes token = realm_token(challenge(), "sha-512", Digest::filled(64, 0x71), sample_rems(HashAlgo::sha512), true);
  auto parsed = cc::parse_cca_token(token, TokenFormat::arm_cca);
  ASSERT_TRUE(parsed) << parsed.error().message;
  EXPECT_EQ(parsed->algo, HashAlgo::sha512);
  EXPECT_EQ(parsed->rems[3], Digest::filled(64, 0x13));
}

TEST(CcaToken, VirtccaTokenWithoutPlatform) {
  Bytes token = realm_token(challenge(), "sha-256", Digest::filled(32, 0x71), sample_rems(HashAlgo::sha256), false);
  auto parsed = cc::parse_cca_token(token, TokenFormat::virtcca);
  ASSERT_TRUE(parsed) << parsed.error().message;
  EXPECT_FALSE(parsed->has_platform_token);
  EXPECT_EQ(parsed->rems[0], Digest::filled(32, 0x10));

  EXPECT_NE(rejection(token, TokenFormat::arm_cca).find("missing key 44234 (platform token)"), std::string::npos);
}

TEST(CcaToken, UnknownClaimsIgnored) {
  ClaimMap claims = good_claims();
  claims.set(99999, cbor_text("a claim from a later profile"));
  claims.set(265, cbor_text("tag:arm.com,2023:realm#1.0.0"));
  auto parsed = cc::parse_cca_token(token_with(std::move(claims)), TokenFormat::arm_cca);
  EXPECT_TRUE(parsed) << parsed.error().message;
}

TEST(CcaTokenMalformed, WrongCollectionTag) {
  Bytes token = token_collection({{44241, cose_sign1(good_claims().encode())}}, 398);
  EXPECT_NE(rejection(token, TokenFormat::virtcca).find("token collection: expected tag 399, got tag 398"),
            std::string::npos)
      << rejection(token, TokenFormat::virtcca);
}

TEST(CcaTokenMalformed, UntaggedCollection) {
  std::vector<std::pair<CborItem, CborItem>> map;
  map.emplace_back(cbor_uint(44241), cbor_bytes(cose_sign1(good_claims().encode())));
  Bytes token = cbor_encode(cbor_map_of(std::move(map)));
  EXPECT_NE(rejection(token).find("expected tag 399, got a map"), std::string::npos) << rejection(token);
}

TEST(CcaTokenMalformed, RealmTokenNotByteString) {
  std::vector<std::pair<CborItem, CborItem>> map;
  map.emplace_back(cbor_uint(44241), cbor_text("not a token"));
  Bytes token = cbor_encode(cbor_tagged(399, cbor_map_of(std::move(map))));
  EXPECT_NE(rejection(token, TokenFormat::virtcca).find("cVM token: expected a byte string holding a COSE_Sign1, got a "
                                                        "text string"),
            std::string::npos)
      << rejection(token, TokenFormat::virtcca);
}

TEST(CcaTokenMalformed, CoseWithoutTag) {
  std::vector<CborItem> parts;
  parts.push_back(cbor_bytes(Bytes{0xa0}));
  parts.push_back(cbor_map_of({}));
  parts.push_back(cbor_bytes(good_claims().encode()));
  parts.push_back(cbor_bytes(Bytes(96, 0)));
  Bytes cose = cbor_encode(cbor_array_of(std::move(parts)));
  Bytes token = token_collection({{44241, cose}});
  EXPECT_NE(rejection(token, TokenFormat::virtcca).find("cVM token COSE_Sign1: expected tag 18, got an array"),
            std::string::npos)
      << rejection(token, TokenFormat::virtcca);
}

TEST(CcaTokenMalformed, CoseWithThreeParts) {
  std::vector<CborItem> parts;
  parts.push_back(cbor_bytes(Bytes{0xa0}));
  parts.push_back(cbor_map_of({}));
  parts.push_back(cbor_bytes(good_claims().encode()));
  Bytes cose = cbor_encode(cbor_tagged(18, cbor_array_of(std::move(parts))));
  Bytes token = token_collection({{44241, cose}});
  EXPECT_NE(rejection(token, TokenFormat::virtcca).find("COSE_Sign1 must be an array of 4 items, got an array of 3"),
            std::string::npos)
      << rejection(token, TokenFormat::virtcca);
}

TEST(CcaTokenMalformed, MissingRim) {
  ClaimMap claims = good_claims();
  claims.erase(44238);
  Bytes token = token_with(std::move(claims));
  EXPECT_NE(rejection(token).find("realm token claims: missing claim 44238 (initial measurement, RIM)"),
            std::string::npos)
      << rejection(token);
}

TEST(CcaTokenMalformed, MissingHashAlgorithm) {
  ClaimMap claims = good_claims();
  claims.erase(44236);
  Bytes token = token_with(std::move(claims));
  EXPECT_NE(rejection(token).find("missing claim 44236 (hash algorithm)"), std::string::npos) << rejection(token);
}

TEST(CcaTokenMalformed, RimSizeDoesNotMatchAlgorithm) {
  ClaimMap claims = good_claims();
  claims.set(44238, cbor_bytes(Bytes(48, 0x71)));
  Bytes token = token_with(std::move(claims));
  EXPECT_NE(rejection(token).find("claim 44238 (RIM) is 48 bytes; the realm hash algorithm needs 32"),
            std::string::npos)
      << rejection(token);
}

TEST(CcaTokenMalformed, RemOversized) {
  ClaimMap claims = good_claims();
  std::vector<CborItem> rems;
  for (int i = 0; i < 3; ++i) rems.push_back(cbor_bytes(Bytes(32, 0x10)));
  rems.push_back(cbor_bytes(Bytes(65, 0x10)));
  claims.set(44239, cbor_array_of(std::move(rems)));
  Bytes token = token_with(std::move(claims));
  EXPECT_NE(rejection(token).find("REM3 in claim 44239 is 65 bytes"), std::string::npos) << rejection(token);
}

TEST(CcaTokenMalformed, ThreeRems) {
  ClaimMap claims = good_claims();
  std::vector<CborItem> rems;
  for (int i = 0; i < 3; ++i) rems.push_back(cbor_bytes(Bytes(32, 0x10)));
  claims.set(44239, cbor_array_of(std::move(rems)));
  Bytes token = token_with(std::move(claims));
  EXPECT_NE(rejection(token).find("claim 44239 (REMs) is an array of 3; expected an array of 4 byte strings"),
            std::string::npos)
      << rejection(token);
}

TEST(CcaTokenMalformed, RemWrongType) {
  ClaimMap claims = good_claims();
  std::vector<CborItem> rems;
  for (int i = 0; i < 3; ++i) rems.push_back(cbor_bytes(Bytes(32, 0x10)));
  rems.push_back(cbor_text("00"));
  claims.set(44239, cbor_array_of(std::move(rems)));
  Bytes token = token_with(std::move(claims));
  EXPECT_NE(rejection(token).find("REM3 in claim 44239 is a text string; expected a byte string"), std::string::npos)
      << rejection(token);
}

TEST(CcaTokenMalformed, HashAlgorithmWrongType) {
  ClaimMap claims = good_claims();
  claims.set(44236, cbor_uint(1));
  Bytes token = token_with(std::move(claims));
  EXPECT_NE(rejection(token).find("claim 44236 (hash algorithm) is an unsigned integer; expected a text string"),
            std::string::npos)
      << rejection(token);
}

TEST(CcaTokenMalformed, UnknownHashAlgorithm) {
  ClaimMap claims = good_claims();
  claims.set(44236, cbor_text("sha-1"));
  Bytes token = token_with(std::move(claims));
  EXPECT_NE(rejection(token).find("claim 44236 (hash algorithm) is \"sha-1\""), std::string::npos) << rejection(token);
}

TEST(CcaTokenMalformed, ShortChallenge) {
  ClaimMap claims = good_claims();
  claims.set(10, cbor_bytes(Bytes(32, 0xc7)));
  Bytes token = token_with(std::move(claims));
  EXPECT_NE(rejection(token).find("claim 10 (challenge) is 32 bytes; expected 64"), std::string::npos)
      << rejection(token);
}

TEST(CcaTokenMalformed, PublicKeyWrongType) {
  ClaimMap claims = good_claims();
  claims.set(44237, cbor_text("key"));
  Bytes token = token_with(std::move(claims));
  EXPECT_NE(rejection(token).find("claim 44237 (public key) is a text string; expected a byte string"),
            std::string::npos)
      << rejection(token);
}

TEST(CcaTokenMalformed, TextClaimKey) {
  std::vector<std::pair<CborItem, CborItem>> claims;
  claims.emplace_back(cbor_text("rim"), cbor_bytes(Bytes(32, 0x71)));
  Bytes payload = cbor_encode(cbor_map_of(std::move(claims)));
  Bytes token = token_collection({{44234, cose_sign1(ClaimMap().encode())}, {44241, cose_sign1(payload)}});
  EXPECT_NE(rejection(token).find("map key 1 is a text string; expected an unsigned integer"), std::string::npos)
      << rejection(token);
}

TEST(CcaTokenMalformed, UnexpectedCollectionKey) {
  Bytes token = token_collection({{44234, cose_sign1(ClaimMap().encode())},
                                  {44241, cose_sign1(good_claims().encode())},
                                  {1, Bytes{0x00}}});
  EXPECT_NE(rejection(token).find("unexpected key 1"), std::string::npos) << rejection(token);
}

TEST(CcaTokenMalformed, Truncated) {
  Bytes token = realm_token(challenge(), "sha-256", Digest::filled(32, 0x71), sample_rems(HashAlgo::sha256), true);
  for (size_t cut : {size_t{1}, token.size() / 2, token.size() - 1}) {
    Bytes truncated(token.begin(), token.begin() + static_cast<std::ptrdiff_t>(cut));
    std::string message = rejection(truncated);
    EXPECT_NE(message.find("malformed attestation token: token: truncated CBOR"), std::string::npos)
        << cut << ": " << message;
  }
}

TEST(CcaTokenMalformed, TrailingBytes) {
  Bytes token = realm_token(challenge(), "sha-256", Digest::filled(32, 0x71), sample_rems(HashAlgo::sha256), true);
  token.push_back(0x00);
  EXPECT_NE(rejection(token).find("1 bytes after the CBOR item"), std::string::npos) << rejection(token);
}

TEST(CcaTokenMalformed, Empty) { EXPECT_NE(rejection(ByteView()).find("token: empty"), std::string::npos); }

// Serves TMM_GET_ATTESTATION_TOKEN as VirtCCA's TSI driver does: a cVM token
// with the request's challenge, its size in token_size.
class FakeTsi : public cc::IoctlDevice {
 public:
  HashAlgo algo = HashAlgo::sha256;
  std::array<Digest, 4> rems = sample_rems(HashAlgo::sha256);
  int fail_with = 0;
  std::optional<uint64_t> size_override;  // a token_size other than the token's
  bool echo_challenge = true;
  int calls = 0;

  const std::string& path() const override { return path_; }
  int call(unsigned long request, std::span<uint8_t> argument) override {
    ++calls;
    if (request != cc::kTmmGetAttestationToken) return ENOTTY;
    if (argument.size() != sizeof(cc::TsiTokenRequest)) return EINVAL;
    if (fail_with != 0) return fail_with;
    auto* raw = reinterpret_cast<cc::TsiTokenRequest*>(argument.data());
    Bytes nonce(raw->challenge, raw->challenge + 64);
    if (!echo_challenge) nonce.assign(64, 0);
    Bytes token = realm_token(nonce, algo == HashAlgo::sha256 ? "sha-256" : "sha-512",
                              Digest::filled(digest_size(algo), 0x71), rems, false);
    std::memcpy(raw->token, token.data(), token.size());
    raw->token_size = size_override.value_or(token.size());
    return 0;
  }

 private:
  std::string path_ = "/dev/tsi (test)";
};

std::unique_ptr<cc::Backend> open_virtcca(std::unique_ptr<FakeTsi> tsi) {
  auto backend = cc::open_token("virtcca", std::make_unique<cc::TsiTokenSource>(std::move(tsi)), TokenFormat::virtcca,
                                "VirtCCA's /dev/tsi has no extend ioctl");
  if (!backend) throw std::runtime_error(backend.error().message);
  return std::move(*backend);
}

TEST(VirtccaTokenBackend, ReadsRemsAndRim) {
  auto tsi = std::make_unique<FakeTsi>();
  FakeTsi* device = tsi.get();
  auto backend = open_virtcca(std::move(tsi));
  EXPECT_EQ(backend->layout().algo, HashAlgo::sha256);
  EXPECT_TRUE(backend->layout().read_only);

  std::vector<uint32_t> regs = {0, 1, 2, 3, 4};
  auto values = backend->read(regs);
  ASSERT_TRUE(values) << values.error().message;
  for (size_t i = 0; i < 4; ++i) EXPECT_EQ((*values)[i], device->rems[i]) << "REM" << i;
  EXPECT_EQ((*values)[4], Digest::filled(32, 0x71));

  auto aggregate = backend->boot_aggregate();
  ASSERT_TRUE(aggregate);
  EXPECT_EQ(aggregate->bank, HashAlgo::sha256);
  EXPECT_EQ(aggregate->digest, Digest::filled(32, 0x71));
}

TEST(VirtccaTokenBackend, ExtendRejectedWithReason) {
  auto tsi = std::make_unique<FakeTsi>();
  FakeTsi* device = tsi.get();
  auto backend = open_virtcca(std::move(tsi));
  int calls = device->calls;
  auto extended = backend->extend(0, Digest::filled(32, 0x01));
  ASSERT_FALSE(extended);
  EXPECT_EQ(extended.error().status, Status::read_only);
  EXPECT_NE(extended.error().message.find("no extend ioctl"), std::string::npos) << extended.error().message;
  EXPECT_EQ(device->calls, calls);
}

TEST(VirtccaTokenBackend, StaleChallengeRejected) {
  auto tsi = std::make_unique<FakeTsi>();
  tsi->echo_challenge = false;
  auto backend = cc::open_token("virtcca", std::make_unique<cc::TsiTokenSource>(std::move(tsi)),
                                TokenFormat::virtcca, "read-only");
  ASSERT_FALSE(backend);
  EXPECT_NE(backend.error().message.find("carries another challenge"), std::string::npos) << backend.error().message;
}

TEST(VirtccaTokenBackend, OversizedTokenSizeRejected) {
  auto tsi = std::make_unique<FakeTsi>();
  tsi->size_override = 8193;
  auto backend = cc::open_token("virtcca", std::make_unique<cc::TsiTokenSource>(std::move(tsi)),
                                TokenFormat::virtcca, "read-only");
  ASSERT_FALSE(backend);
  EXPECT_NE(backend.error().message.find("token size of 8193 bytes; expected 1 to 8192"), std::string::npos)
      << backend.error().message;
}

TEST(VirtccaTokenBackend, TruncatedTokenSizeRejected) {
  auto tsi = std::make_unique<FakeTsi>();
  tsi->size_override = 100;
  auto backend = cc::open_token("virtcca", std::make_unique<cc::TsiTokenSource>(std::move(tsi)),
                                TokenFormat::virtcca, "read-only");
  ASSERT_FALSE(backend);
  EXPECT_NE(backend.error().message.find("token from '/dev/tsi (test)': malformed attestation token"),
            std::string::npos)
      << backend.error().message;
}

TEST(VirtccaTokenBackend, AlgorithmChangeRejected) {
  auto tsi = std::make_unique<FakeTsi>();
  FakeTsi* device = tsi.get();
  auto backend = open_virtcca(std::move(tsi));
  device->algo = HashAlgo::sha512;
  device->rems = sample_rems(HashAlgo::sha512);
  std::vector<uint32_t> regs = {0};
  auto values = backend->read(regs);
  ASSERT_FALSE(values);
  EXPECT_NE(values.error().message.find("names hash algorithm sha-512, but earlier tokens named sha256"),
            std::string::npos)
      << values.error().message;
}

TEST(VirtccaPlugin, MissingTsiDeviceUnavailable) {
  TempDir dir;
  auto backend =
      rot::RotBackend::load("virtcca", nlohmann::json{{"device", dir.file("tsi")}}.dump(), plugin_dir());
  ASSERT_FALSE(backend);
  EXPECT_EQ(backend.error().status, Status::unavailable);
  EXPECT_NE(backend.error().message.find(fmt::format("TMM_GET_ATTESTATION_TOKEN on '{}' failed", dir.file("tsi"))),
            std::string::npos)
      << backend.error().message;
}

// A configfs-tsm report directory of an Arm CCA realm, from ccrot-fs.
class CcaConfigfsReport : public ::testing::Test {
 protected:
  static std::unique_ptr<CcrotMount>& mount() {
    static std::unique_ptr<CcrotMount> instance;
    return instance;
  }
  static std::string& error() {
    static std::string instance;
    return instance;
  }
  static void SetUpTestSuite() {
    static TempDir dir;
    nlohmann::json claims = {{"format", "arm_cca"},
                             {"algo", "sha-512"},
                             {"rim", Digest::filled(64, 0x71).hex()},
                             {"rems", nlohmann::json::array()}};
    for (const Digest& rem : sample_rems(HashAlgo::sha512)) claims["rems"].push_back(rem.hex());
    write_text_file(dir.file("claims.json"), claims.dump());
    auto started = CcrotMount::start({"tsm-report", "arm_cca_guest", dir.file("claims.json")});
    if (started) {
      mount() = std::move(*started);
    } else {
      error() = started.error().message;
    }
  }
  static void TearDownTestSuite() { mount().reset(); }
  void SetUp() override { ASSERT_TRUE(mount()) << error(); }

  nlohmann::json config() const {
    return {{"path", mount()->scratch("no-measurements")}, {"report_dir", mount()->path()}};
  }
};

TEST_F(CcaConfigfsReport, SourceReturnsTokenWithChallenge) {
  cc::ConfigfsTsmSource source(mount()->path(), {"arm_cca_guest"});
  Bytes nonce(64, 0x2b);
  auto token = source.request(nonce);
  ASSERT_TRUE(token) << token.error().message;
  auto parsed = cc::parse_cca_token(*token, TokenFormat::arm_cca);
  ASSERT_TRUE(parsed) << parsed.error().message;
  EXPECT_EQ(parsed->challenge, nonce);
  EXPECT_EQ(parsed->rems[1], Digest::filled(64, 0x11));

  // The report directory is removed after the request.
  CommandResult listing = run_command({"ls", "-A", mount()->path()});
  EXPECT_EQ(listing.out, "");
}

TEST_F(CcaConfigfsReport, OtherProviderRejected) {
  cc::ConfigfsTsmSource source(mount()->path(), {"tdx_guest"});
  auto token = source.request(Bytes(64, 0x2b));
  ASSERT_FALSE(token);
  EXPECT_EQ(token.error().status, Status::unavailable);
  EXPECT_NE(token.error().message.find("provider is 'arm_cca_guest', expected tdx_guest"), std::string::npos)
      << token.error().message;
}

TEST_F(CcaConfigfsReport, PluginIsReadOnlyWithReason) {
  auto backend = rot::RotBackend::load("cca", config().dump(), plugin_dir());
  ASSERT_TRUE(backend) << backend.error().message;
  const rot::Description& description = (*backend)->description();
  EXPECT_TRUE(description.read_only);
  EXPECT_NE(description.read_only_reason.find("exposes no REMs through tsm-mr"), std::string::npos)
      << description.read_only_reason;
  ASSERT_EQ(description.banks.size(), 1u);
  EXPECT_EQ(description.banks[0].algo, HashAlgo::sha512);

  auto rem1 = (*backend)->read(1, HashAlgo::sha512);
  ASSERT_TRUE(rem1) << rem1.error().message;
  EXPECT_EQ(**rem1, Digest::filled(64, 0x11));
  auto aggregate = (*backend)->boot_aggregate(HashAlgo::sha256);
  ASSERT_TRUE(aggregate) << aggregate.error().message;
  EXPECT_EQ(aggregate->bank, HashAlgo::sha512);
  EXPECT_EQ(aggregate->digest, Digest::filled(64, 0x71));

  auto checked = (*backend)->check_register(0);
  ASSERT_FALSE(checked);
  EXPECT_EQ(checked.error().status, Status::read_only);
}

TEST_F(CcaConfigfsReport, BackendSetRejectsReadOnlyBackend) {
  auto backend = rot::RotBackend::load("cca", config().dump(), plugin_dir());
  ASSERT_TRUE(backend) << backend.error().message;
  rot::BackendSetOptions options;
  options.plugin_dir = plugin_dir();
  rot::BackendSet set(options);
  auto added = set.add("realm", std::move(*backend), std::nullopt);
  ASSERT_FALSE(added);
  EXPECT_EQ(added.error().status, Status::read_only);
  EXPECT_NE(added.error().message.find("cannot be extended"), std::string::npos) << added.error().message;
}

TEST_F(CcaConfigfsReport, RotctlRegistersDumpsRimAndRems) {
  CommandResult result = run_command({ROTCTL_PATH, "registers", "--backend", "cca", "--config", config().dump(),
                                      "--plugin-dir", plugin_dir()});
  ASSERT_EQ(result.exit_code, 0) << result.err;
  EXPECT_NE(result.out.find("register_kind: REM\n"), std::string::npos) << result.out;
  EXPECT_NE(result.out.find("read_only: "), std::string::npos) << result.out;
  EXPECT_NE(result.out.find("  sha512:\n"), std::string::npos) << result.out;
  EXPECT_NE(result.out.find(fmt::format("    1 : 0x{}  # REM1 (measurement index 2)\n",
                                        std::string(128, '1'))),
            std::string::npos)
      << result.out;
  std::string rim_hex;
  for (int i = 0; i < 64; ++i) rim_hex += "71";
  EXPECT_NE(result.out.find(fmt::format("    4 : 0x{}  # RIM (measurement index 0), read-only\n", rim_hex)),
            std::string::npos)
      << result.out;
}

// REM0 read from a token verifies a kernel IMA list whose entries carry
// register number 10, as openEuler's IMA writes them on VirtCCA.
TEST(VirtccaVerify, ListAgainstRem0FromToken) {
  std::vector<Entry> entries = make_entries(10, 12);
  std::vector<HashAlgo> banks = {HashAlgo::sha256};
  auto replayed = replay_list(entries, banks);
  ASSERT_TRUE(replayed);

  auto tsi = std::make_unique<FakeTsi>();
  tsi->rems[0] = replayed->at(RegisterId{10, HashAlgo::sha256});
  auto backend = open_virtcca(std::move(tsi));
  std::vector<uint32_t> rem0 = {0};
  auto value = backend->read(rem0);
  ASSERT_TRUE(value) << value.error().message;

  TempDir dir;
  Bytes binary = serialize_binary(entries);
  write_text_file(dir.file("list"), std::string(binary.begin(), binary.end()));
  write_text_file(dir.file("rem0.txt"), fmt::format("sha256:10:{}\n", value->front().hex()));
  CommandResult verified = run_command({ROTCTL_PATH, "verify", "--input", dir.file("list"), "--pcrs",
                                        dir.file("rem0.txt")});
  EXPECT_EQ(verified.exit_code, 0) << verified.out << verified.err;
  EXPECT_NE(verified.out.find("OK: 12 entries"), std::string::npos) << verified.out;
}

}  // namespace
}  // namespace imarot::test
