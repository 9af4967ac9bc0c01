// The tsm-mr, tdx, cca and virtcca plugins on ccrot-fs measurement files:
// loaded through the plugin loader, extended through RotBackend and
// BackendSet, compared with replays of the list, and shown by rotctl.
#include <gtest/gtest.h>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "cc_backend.h"
#include "ccrot_mount.h"
#include "imarot/rot_backend_set.h"
#include "rot_test_util.h"

namespace imarot::test {
namespace {

using rot::RotBackend;
using rot::Status;

std::unique_ptr<RotBackend> load(const std::string& plugin, const nlohmann::json& config) {
  auto backend = RotBackend::load(plugin, config.dump(), plugin_dir());
  if (!backend) throw std::runtime_error(backend.error().message);
  return std::move(*backend);
}

Digest read_file_value(const std::string& path) {
  std::string text = read_text_file(path);
  return Digest(ByteView(reinterpret_cast<const uint8_t*>(text.data()), text.size()));
}

// The value of a register that started at `start` after extending `entries`.
Digest replay_from(HashAlgo bank, Digest start, const std::vector<Entry>& entries) {
  for (const Entry& entry : entries) start = *extend_value(bank, start, *extend_digest(entry, bank));
  return start;
}

CommandResult rotctl(std::vector<std::string> arguments) {
  arguments.insert(arguments.begin(), ROTCTL_PATH);
  return run_command(arguments, std::chrono::seconds(60));
}

std::unique_ptr<CcrotMount> mount_or_fail(const std::vector<std::string>& files) {
  auto started = CcrotMount::tsm_mr(files);
  if (!started) throw std::runtime_error(started.error().message);
  return std::move(*started);
}

// A TDX measurements directory with every RTMR at zero.
std::vector<std::string> zero_tdx_files() {
  return {"mrtd:sha384=ro", "rtmr0:sha384=rw", "rtmr1:sha384=rw", "rtmr2:sha384=rw", "rtmr3:sha384=rw"};
}

class TdxOnTsmMr : public ::testing::Test {
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
    auto started = CcrotMount::tsm_mr(tdx_measurement_files());
    if (started) {
      mount() = std::move(*started);
    } else {
      error() = started.error().message;
    }
  }
  static void TearDownTestSuite() { mount().reset(); }
  void SetUp() override { ASSERT_TRUE(mount()) << error(); }

  nlohmann::json preset_config() const { return {{"path", mount()->path()}, {"preset", "tdx"}}; }
};

TEST_F(TdxOnTsmMr, PresetDescribesRtmrsAndMrtd) {
  auto backend = load("tsm-mr", preset_config());
  const rot::Description& description = backend->description();
  EXPECT_EQ(description.name, "tsm-mr");
  EXPECT_EQ(description.register_kind, "RTMR");
  EXPECT_EQ(description.register_count, 5u);
  EXPECT_EQ(description.default_register, 2u);
  ASSERT_EQ(description.banks.size(), 1u);
  EXPECT_EQ(description.banks[0].algo, HashAlgo::sha384);
  EXPECT_FALSE(description.read_only);

  ASSERT_EQ(description.registers.size(), 5u);
  for (uint32_t i = 0; i < 4; ++i) {
    EXPECT_EQ(description.registers[i].name, fmt::format("RTMR{}", i));
    EXPECT_EQ(description.registers[i].alias, fmt::format("CC MR {}", i + 1));
    EXPECT_FALSE(description.registers[i].read_only);
  }
  EXPECT_EQ(description.registers[4].name, "MRTD");
  EXPECT_EQ(description.registers[4].alias, "CC MR 0");
  EXPECT_TRUE(description.registers[4].read_only);
  EXPECT_EQ(description.register_name(2), "RTMR2");
}

TEST_F(TdxOnTsmMr, TdxPluginUsesTsmMrWhenPresent) {
  auto backend = load("tdx", {{"path", mount()->path()}, {"device", mount()->scratch("no-device")}});
  EXPECT_EQ(backend->description().name, "tdx");
  EXPECT_FALSE(backend->description().read_only);
  auto mrtd = backend->read(4, HashAlgo::sha384);
  ASSERT_TRUE(mrtd) << mrtd.error().message;
  EXPECT_EQ(**mrtd, tdx_initial_value("mrtd"));
}

TEST_F(TdxOnTsmMr, ReadsEveryRegisterOfTheFiles) {
  auto backend = load("tsm-mr", preset_config());
  std::vector<uint32_t> regs = {0, 1, 2, 3, 4};
  auto read = backend->read_bank(HashAlgo::sha384, regs);
  ASSERT_TRUE(read) << read.error().message;
  ASSERT_EQ(read->values.size(), 5u);
  EXPECT_EQ(read->values[0], read_file_value(mount()->file("rtmr0:sha384")));
  EXPECT_EQ(read->values[1], read_file_value(mount()->file("rtmr1:sha384")));
  EXPECT_EQ(read->values[2], read_file_value(mount()->file("rtmr2:sha384")));
  EXPECT_EQ(read->values[3], read_file_value(mount()->file("rtmr3:sha384")));
  EXPECT_EQ(read->values[4], tdx_initial_value("mrtd"));
}

TEST_F(TdxOnTsmMr, ExtendsMatchReplayFromStart) {
  auto backend = load("tsm-mr", preset_config());
  Digest start = read_file_value(mount()->file("rtmr2:sha384"));
  std::vector<Entry> entries = make_entries(2, 20);
  for (const Entry& entry : entries) {
    auto extended = backend->extend(2, entry);
    ASSERT_TRUE(extended) << extended.error().message;
  }
  EXPECT_EQ(read_file_value(mount()->file("rtmr2:sha384")), replay_from(HashAlgo::sha384, start, entries));
}

TEST_F(TdxOnTsmMr, MrtdRejectedBeforeWrite) {
  auto backend = load("tsm-mr", preset_config());
  auto checked = backend->check_register(4);
  ASSERT_FALSE(checked);
  EXPECT_EQ(checked.error().status, Status::read_only);
  EXPECT_NE(checked.error().message.find("MRTD"), std::string::npos) << checked.error().message;
  EXPECT_NE(checked.error().message.find("build-time measurement"), std::string::npos) << checked.error().message;

  std::vector<Digest> digests = {Digest::filled(48, 0x11)};
  auto extended = backend->extend_digests(4, digests);
  ASSERT_FALSE(extended);
  EXPECT_EQ(extended.error().status, Status::read_only);
  EXPECT_EQ(read_file_value(mount()->file("mrtd:sha384")), tdx_initial_value("mrtd"));
}

TEST_F(TdxOnTsmMr, BadRegisterIndexRejected) {
  auto backend = load("tsm-mr", preset_config());
  auto checked = backend->check_register(5);
  ASSERT_FALSE(checked);
  EXPECT_EQ(checked.error().status, Status::invalid);
  EXPECT_NE(checked.error().message.find("no register 5"), std::string::npos) << checked.error().message;

  auto read = backend->read(9, HashAlgo::sha384);
  ASSERT_FALSE(read);
  EXPECT_EQ(read.error().status, Status::invalid);
}

TEST_F(TdxOnTsmMr, WrongDigestSizeRejectedBeforeWrite) {
  Digest before = read_file_value(mount()->file("rtmr3:sha384"));
  auto backend = load("tsm-mr", preset_config());
  std::vector<Digest> digests = {Digest::filled(32, 0x11)};
  auto extended = backend->extend_digests(3, digests);
  ASSERT_FALSE(extended);
  EXPECT_EQ(extended.error().status, Status::invalid);

  // The same check inside the plugin, without RotBackend's.
  cc::TsmMrOptions options;
  options.path = mount()->path();
  options.preset = cc::Preset::tdx;
  auto direct = cc::open_tsm_mr("tsm-mr", options);
  ASSERT_TRUE(direct) << direct.error().message;
  auto direct_extend = (*direct)->extend(3, Digest::filled(32, 0x11));
  ASSERT_FALSE(direct_extend);
  EXPECT_EQ(direct_extend.error().status, Status::invalid);
  EXPECT_NE(direct_extend.error().message.find("48-byte sha384"), std::string::npos) << direct_extend.error().message;
  EXPECT_EQ(read_file_value(mount()->file("rtmr3:sha384")), before);
}

TEST_F(TdxOnTsmMr, BootAggregateSkipsZeroRegisters) {
  auto backend = load("tsm-mr", preset_config());
  Digest rtmr1 = read_file_value(mount()->file("rtmr1:sha384"));
  ASSERT_TRUE(rtmr1.is_zero()) << "the suite keeps RTMR1 at zero to cover the skip";

  Bytes input;
  for (const char* name : {"mrtd:sha384", "rtmr0:sha384", "rtmr1:sha384", "rtmr2:sha384"}) {
    Digest value = read_file_value(mount()->file(name));
    if (!value.is_zero()) input.insert(input.end(), value.view().begin(), value.view().end());
  }
  ASSERT_EQ(input.size(), 3u * 48);

  auto aggregate = backend->boot_aggregate(HashAlgo::sha256);
  ASSERT_TRUE(aggregate) << aggregate.error().message;
  EXPECT_EQ(aggregate->bank, HashAlgo::sha384);
  EXPECT_EQ(aggregate->digest, *hash_bytes(HashAlgo::sha384, input));
}

TEST_F(TdxOnTsmMr, RotctlBootAggregateIsSha384) {
  auto backend = load("tsm-mr", preset_config());
  auto aggregate = backend->boot_aggregate(HashAlgo::sha384);
  ASSERT_TRUE(aggregate) << aggregate.error().message;

  CommandResult result = rotctl({"boot-aggregate", "--backend", "tdx", "--config",
                                 nlohmann::json{{"path", mount()->path()}}.dump(), "--plugin-dir", plugin_dir()});
  ASSERT_EQ(result.exit_code, 0) << result.err;
  EXPECT_EQ(result.out, fmt::format("sha384:{}\n", aggregate->digest.hex()));
}

TEST_F(TdxOnTsmMr, RotctlRegistersShowsNamesAndValues) {
  CommandResult result = rotctl({"registers", "--backend", "tsm-mr", "--config", preset_config().dump(),
                                 "--plugin-dir", plugin_dir()});
  ASSERT_EQ(result.exit_code, 0) << result.err;
  EXPECT_NE(result.out.find("backend: tsm-mr\nregister_kind: RTMR\ndefault_register: 2\n"), std::string::npos)
      << result.out;
  std::string mrtd_hex = tdx_initial_value("mrtd").hex();
  for (char& c : mrtd_hex) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  EXPECT_NE(result.out.find(fmt::format("    4 : 0x{}  # MRTD (CC MR 0), read-only\n", mrtd_hex)), std::string::npos)
      << result.out;
  EXPECT_NE(result.out.find("  # RTMR2 (CC MR 3)\n"), std::string::npos) << result.out;
  EXPECT_NE(result.out.find("  sha384:\n"), std::string::npos) << result.out;
}

TEST_F(TdxOnTsmMr, RotctlRtmrsUsesTheTdxPlugin) {
  nlohmann::json config = {{"path", mount()->path()}};
  CommandResult result = rotctl({"rtmrs", "--config", config.dump(), "--plugin-dir", plugin_dir(), "--json"});
  ASSERT_EQ(result.exit_code, 0) << result.err;
  nlohmann::json out = nlohmann::json::parse(result.out);
  EXPECT_EQ(out["backend"], "tdx");
  EXPECT_EQ(out["register_names"]["4"]["name"], "MRTD");
  EXPECT_EQ(out["register_names"]["4"]["read_only"], true);
  EXPECT_EQ(out["register_names"]["2"]["alias"], "CC MR 3");
  EXPECT_EQ(out["banks"][0]["bank"], "sha384");
  EXPECT_EQ(out["banks"][0]["registers"]["4"], tdx_initial_value("mrtd").hex());
  EXPECT_EQ(out["banks"][0]["registers"]["0"], read_file_value(mount()->file("rtmr0:sha384")).hex());
}

TEST_F(TdxOnTsmMr, UnknownConfigKeyRejected) {
  auto backend = RotBackend::load("tdx", R"({"path": "/x", "rtmr": 2})", plugin_dir());
  ASSERT_FALSE(backend);
  EXPECT_EQ(backend.error().status, Status::invalid);
  EXPECT_NE(backend.error().message.find("unknown config key 'rtmr'"), std::string::npos) << backend.error().message;
  EXPECT_NE(backend.error().message.find("path, device, interface"), std::string::npos) << backend.error().message;
}

TEST(TdxPlugin, NoInterfaceNamesBothPaths) {
  TempDir dir;
  auto backend = RotBackend::load(
      "tdx", nlohmann::json{{"path", dir.file("measurements")}, {"device", dir.file("tdx_guest")}}.dump(), plugin_dir());
  ASSERT_FALSE(backend);
  EXPECT_EQ(backend.error().status, Status::unavailable);
  EXPECT_NE(backend.error().message.find(dir.file("measurements")), std::string::npos) << backend.error().message;
  EXPECT_NE(backend.error().message.find(dir.file("tdx_guest")), std::string::npos) << backend.error().message;
}

TEST(TdxPlugin, RotctlRtmrsWithoutTdxExitsThree) {
  TempDir dir;
  nlohmann::json config = {{"path", dir.file("measurements")}, {"device", dir.file("tdx_guest")}};
  CommandResult result = rotctl({"rtmrs", "--config", config.dump(), "--plugin-dir", plugin_dir()});
  EXPECT_EQ(result.exit_code, 3) << result.out;
  EXPECT_NE(result.err.find("no TDX guest interface"), std::string::npos) << result.err;
}

TEST(TdxPlugin, PresetFilesMissingNamed) {
  auto mount = mount_or_fail(realm_measurement_files(HashAlgo::sha256));
  auto backend = RotBackend::load("tsm-mr", nlohmann::json{{"path", mount->path()}, {"preset", "tdx"}}.dump(),
                                  plugin_dir());
  ASSERT_FALSE(backend);
  EXPECT_NE(backend.error().message.find("has no register file rtmr0:sha384"), std::string::npos)
      << backend.error().message;
  EXPECT_NE(backend.error().message.find("rem0:sha256"), std::string::npos) << backend.error().message;
}

TEST(TdxPlugin, MissingDirectoryNamed) {
  TempDir dir;
  auto backend = RotBackend::load("tsm-mr", nlohmann::json{{"path", dir.file("none")}, {"preset", "tdx"}}.dump(),
                                  plugin_dir());
  ASSERT_FALSE(backend);
  EXPECT_EQ(backend.error().status, Status::unavailable);
  EXPECT_NE(backend.error().message.find(dir.file("none")), std::string::npos) << backend.error().message;
}

TEST(TdxReplay, RegisterEqualsListReplay) {
  auto mount = mount_or_fail(zero_tdx_files());
  auto backend = load("tdx", {{"path", mount->path()}});
  std::vector<Entry> entries = make_entries(2, 40);
  for (const Entry& entry : entries) {
    auto extended = backend->extend(2, entry);
    ASSERT_TRUE(extended) << extended.error().message;
  }
  std::vector<HashAlgo> banks = {HashAlgo::sha384};
  auto replayed = replay_list(entries, banks);
  ASSERT_TRUE(replayed) << replayed.error().message;
  auto value = backend->read(2, HashAlgo::sha384);
  ASSERT_TRUE(value) << value.error().message;
  EXPECT_EQ(**value, replayed->at(RegisterId{2, HashAlgo::sha384}));
  EXPECT_EQ(read_file_value(mount->file("rtmr2:sha384")), replayed->at(RegisterId{2, HashAlgo::sha384}));
  EXPECT_TRUE(read_file_value(mount->file("rtmr3:sha384")).is_zero());
}

TEST(TdxReplay, BackendSetExtendsInListOrder) {
  auto mount = mount_or_fail(zero_tdx_files());
  rot::BackendSetOptions options;
  options.plugin_dir = plugin_dir();
  rot::BackendSet set(options);
  auto added = set.add("rtmr", load("tdx", {{"path", mount->path()}}), std::nullopt);
  ASSERT_TRUE(added) << added.error().message;

  std::vector<Entry> entries = make_entries(2, 30);
  for (const Entry& entry : entries) set.submit(entry);
  ASSERT_TRUE(set.drain(std::chrono::seconds(30)));
  std::vector<rot::BackendStatus> status = set.status();
  ASSERT_EQ(status.size(), 1u);
  EXPECT_EQ(status[0].state, rot::BackendState::ok) << status[0].last_error;
  EXPECT_EQ(status[0].register_index, 2u);
  EXPECT_EQ(status[0].extends, entries.size());

  std::vector<HashAlgo> banks = {HashAlgo::sha384};
  auto replayed = replay_list(entries, banks);
  ASSERT_TRUE(replayed);
  EXPECT_EQ(read_file_value(mount->file("rtmr2:sha384")), replayed->at(RegisterId{2, HashAlgo::sha384}));
}

TEST(TdxReplay, BackendSetRejectsMrtd) {
  auto mount = mount_or_fail(zero_tdx_files());
  rot::BackendSetOptions options;
  options.plugin_dir = plugin_dir();
  rot::BackendSet set(options);
  auto added = set.add("mrtd", load("tdx", {{"path", mount->path()}}), 4u);
  ASSERT_FALSE(added);
  EXPECT_EQ(added.error().status, Status::read_only);
  EXPECT_NE(added.error().message.find("MRTD"), std::string::npos) << added.error().message;
}

TEST(TdxReplay, RotctlVerifyChecksListAgainstDump) {
  auto mount = mount_or_fail(zero_tdx_files());
  auto backend = load("tdx", {{"path", mount->path()}});
  std::vector<Entry> entries = make_entries(2, 15);
  for (const Entry& entry : entries) ASSERT_TRUE(backend->extend(2, entry));

  std::string list = mount->scratch("binary_runtime_measurements");
  Bytes binary = serialize_binary(entries);
  write_text_file(list, std::string(binary.begin(), binary.end()));

  CommandResult dump = rotctl({"rtmrs", "--config", nlohmann::json{{"path", mount->path()}}.dump(), "--plugin-dir",
                               plugin_dir(), "--register", "2", "--json"});
  ASSERT_EQ(dump.exit_code, 0) << dump.err;
  std::string rtmr2 = nlohmann::json::parse(dump.out)["banks"][0]["registers"]["2"].get<std::string>();

  std::string good = mount->scratch("good.txt");
  write_text_file(good, fmt::format("# RTMR2 (CC MR 3) read with rotctl rtmrs\nsha384:2:{}\n", rtmr2));
  CommandResult verified = rotctl({"verify", "--input", list, "--pcrs", good});
  EXPECT_EQ(verified.exit_code, 0) << verified.out << verified.err;
  EXPECT_NE(verified.out.find("OK: 15 entries"), std::string::npos) << verified.out;

  std::string bad = mount->scratch("bad.txt");
  write_text_file(bad, fmt::format("sha384:2:{}\n", Digest::filled(48, 0x01).hex()));
  CommandResult rejected = rotctl({"verify", "--input", list, "--pcrs", bad});
  EXPECT_EQ(rejected.exit_code, 1) << rejected.out << rejected.err;
  EXPECT_NE(rejected.out.find("MISMATCH"), std::string::npos) << rejected.out;
}

class RealmOnTsmMr : public ::testing::TestWithParam<HashAlgo> {};

TEST_P(RealmOnTsmMr, RemsExtendAndRimIsBootAggregate) {
  HashAlgo algo = GetParam();
  auto mount = mount_or_fail(realm_measurement_files(algo));
  auto backend = load("cca", {{"path", mount->path()}, {"report_dir", mount->scratch("no-tsm")}});
  const rot::Description& description = backend->description();
  EXPECT_EQ(description.name, "cca");
  EXPECT_EQ(description.register_kind, "REM");
  EXPECT_EQ(description.default_register, 0u);
  ASSERT_EQ(description.banks.size(), 1u);
  EXPECT_EQ(description.banks[0].algo, algo);
  ASSERT_EQ(description.registers.size(), 5u);
  EXPECT_EQ(description.registers[0].name, "REM0");
  EXPECT_EQ(description.registers[0].alias, "measurement index 1");
  EXPECT_EQ(description.registers[4].name, "RIM");
  EXPECT_TRUE(description.registers[4].read_only);

  std::vector<Entry> entries = make_entries(0, 25);
  for (const Entry& entry : entries) {
    auto extended = backend->extend(0, entry);
    ASSERT_TRUE(extended) << extended.error().message;
  }
  std::vector<HashAlgo> banks = {algo};
  auto replayed = replay_list(entries, banks);
  ASSERT_TRUE(replayed);
  EXPECT_EQ(read_file_value(mount->file(fmt::format("rem0:{}", hash_name(algo)))),
            replayed->at(RegisterId{0, algo}));

  auto aggregate = backend->boot_aggregate(HashAlgo::sha256);
  ASSERT_TRUE(aggregate) << aggregate.error().message;
  EXPECT_EQ(aggregate->bank, algo);
  EXPECT_EQ(aggregate->digest, realm_rim(algo));

  auto rim = backend->check_register(4);
  ASSERT_FALSE(rim);
  EXPECT_EQ(rim.error().status, Status::read_only);
  EXPECT_NE(rim.error().message.find("RIM"), std::string::npos) << rim.error().message;
}

INSTANTIATE_TEST_SUITE_P(Algorithms, RealmOnTsmMr, ::testing::Values(HashAlgo::sha256, HashAlgo::sha512),
                         [](const auto& param_info) { return std::string(hash_name(param_info.param)); });

TEST(RealmOnTsmMrConfig, TsmMrPresetAndVirtccaPath) {
  auto mount = mount_or_fail(realm_measurement_files(HashAlgo::sha512));
  auto preset = load("tsm-mr", {{"path", mount->path()}, {"preset", "cca"}});
  EXPECT_EQ(preset->description().banks[0].algo, HashAlgo::sha512);
  EXPECT_FALSE(preset->description().read_only);

  auto virtcca = load("virtcca", {{"path", mount->path()}, {"device", mount->scratch("no-tsi")}});
  EXPECT_EQ(virtcca->description().name, "virtcca");
  EXPECT_FALSE(virtcca->description().read_only);
  EXPECT_TRUE(virtcca->extend(0, make_entries(0, 1).front()));
}

// Files laid out as the kernel's tsm-mr sample driver (samples/tsm-mr) has
// them: several algorithms, read-only and writable registers, and a register
// without a hash.
std::vector<std::string> sample_files() {
  return {fmt::format("static_mr:sha384=ro,{}", Digest::filled(48, 0x5a).hex()),
          fmt::format("config_mr=ro,{}", Digest::filled(48, 0x5b).hex()),
          "rtmr0:sha256=ro",
          "rtmr1:sha384=rw",
          "rtmr_crypto_agile:sha256=rw",
          "rtmr_crypto_agile:sha384=rw",
          "report_digest:sha512=ro"};
}

TEST(GenericTsmMr, SeveralAlgorithmsNeedHash) {
  auto mount = mount_or_fail(sample_files());
  auto backend = RotBackend::load("tsm-mr", nlohmann::json{{"path", mount->path()}}.dump(), plugin_dir());
  ASSERT_FALSE(backend);
  EXPECT_EQ(backend.error().status, Status::invalid);
  EXPECT_NE(backend.error().message.find("several algorithms (sha256, sha384, sha512)"), std::string::npos)
      << backend.error().message;
  EXPECT_NE(backend.error().message.find("\"hash\""), std::string::npos) << backend.error().message;
}

TEST(GenericTsmMr, DiscoversRegistersOfOneAlgorithm) {
  auto mount = mount_or_fail(sample_files());
  auto backend = load("tsm-mr", {{"path", mount->path()}, {"hash", "sha384"}});
  const rot::Description& description = backend->description();
  EXPECT_EQ(description.register_kind, "MR");
  ASSERT_EQ(description.registers.size(), 3u);
  EXPECT_EQ(description.registers[0].name, "RTMR1");
  EXPECT_EQ(description.registers[1].name, "RTMR_CRYPTO_AGILE");
  EXPECT_EQ(description.registers[2].name, "STATIC_MR");
  EXPECT_TRUE(description.registers[2].read_only);
  EXPECT_EQ(description.default_register, 0u);

  std::vector<Entry> entries = make_entries(0, 5);
  for (const Entry& entry : entries) ASSERT_TRUE(backend->extend(0, entry));
  EXPECT_EQ(read_file_value(mount->file("rtmr1:sha384")), replay_from(HashAlgo::sha384, Digest::zeros(48), entries));
  EXPECT_TRUE(read_file_value(mount->file("rtmr_crypto_agile:sha384")).is_zero());

  auto aggregate = backend->boot_aggregate(HashAlgo::sha384);
  ASSERT_FALSE(aggregate);
  EXPECT_NE(aggregate.error().message.find("no boot_aggregate rule"), std::string::npos) << aggregate.error().message;
}

TEST(GenericTsmMr, ConfiguredOrderAndDefault) {
  auto mount = mount_or_fail(sample_files());
  auto backend = load("tsm-mr", {{"path", mount->path()},
                                 {"hash", "sha256"},
                                 {"registers", {"rtmr_crypto_agile", "rtmr0"}},
                                 {"default_register", "rtmr_crypto_agile"}});
  const rot::Description& description = backend->description();
  ASSERT_EQ(description.registers.size(), 2u);
  EXPECT_EQ(description.registers[0].name, "RTMR_CRYPTO_AGILE");
  EXPECT_EQ(description.registers[1].name, "RTMR0");
  EXPECT_TRUE(description.registers[1].read_only);
  EXPECT_EQ(description.default_register, 0u);

  auto rejected = RotBackend::load(
      "tsm-mr",
      nlohmann::json{{"path", mount->path()}, {"hash", "sha256"}, {"default_register", "rtmr0"}}.dump(),
      plugin_dir());
  ASSERT_FALSE(rejected);
  EXPECT_NE(rejected.error().message.find("'rtmr0' is read-only"), std::string::npos) << rejected.error().message;
}

}  // namespace
}  // namespace imarot::test
