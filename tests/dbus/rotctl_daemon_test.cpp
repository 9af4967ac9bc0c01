// rotctl's daemon commands as a user runs them, against the real imarotd on
// a private bus: each command's output, its --json parsed back, and the
// exit codes.
#include <signal.h>

#include <sstream>

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "daemon_harness.h"
#include "rot_test_util.h"
#include "imarot/measurement_list.h"
#include "imarot/replay.h"

namespace imarotd::test {
namespace {

using namespace std::chrono_literals;

CommandResult rotctl(std::vector<std::string> arguments) {
  arguments.insert(arguments.begin(), ROTCTL_PATH);
  return imarot::test::run_command(arguments, 60s);
}

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

class RotctlDaemon : public ::testing::Test {
 protected:
  void SetUp() override {
    auto started = harness_.start();
    ASSERT_TRUE(started) << started.error().message;
    bus_ = std::make_unique<TestBus>(harness_.address());
    ASSERT_TRUE(bus_->connected());
  }

  void measure(const std::string& name, const std::string& content) {
    uint64_t before = bus_->entry_count();
    harness_.measure_file(name, content);
    ASSERT_TRUE(wait_until([&] { return bus_->entry_count() > before; }, 10s)) << harness_.daemon_log();
  }

  // `command` with --bus pointing at the harness's bus.
  CommandResult run(std::vector<std::string> command) {
    command.push_back("--bus");
    command.push_back(harness_.address());
    return rotctl(command);
  }

  imarot::ParsedList durable_list() {
    std::string bytes = imarot::test::read_text_file(harness_.durable_list());
    return imarot::parse_binary_list(imarot::ByteView(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()));
  }

  DaemonHarness harness_;
  std::unique_ptr<TestBus> bus_;
};

TEST_F(RotctlDaemon, StatusForPeople) {
  measure("status-file", "status");
  CommandResult result = run({"status"});
  ASSERT_EQ(result.exit_code, 0) << result.err;
  std::vector<std::string> lines = lines_of(result.out);
  ASSERT_GE(lines.size(), 10u) << result.out;
  EXPECT_EQ(lines[0], "imarotd on the " + harness_.address() + " bus");
  EXPECT_EQ(lines[1], "  event source:       fanotify");
  EXPECT_EQ(lines[2], "  policy:             " + harness_.policy_path());
  EXPECT_EQ(lines[3], "  template:           ima-ng");
  EXPECT_EQ(lines[4], "  hash algorithm:     sha256");
  EXPECT_EQ(lines[5], "  measure before use: no");
  EXPECT_EQ(lines[7], "  entries:            2 (0 violations, 0 lost events)");
  EXPECT_EQ(lines[8], "backends: 1");
  EXPECT_EQ(lines[9], "  tpm2 (tpm2): PCR 10, banks sha1,sha256, ok, 0 pending");
}

TEST_F(RotctlDaemon, StatusJsonParsesBack) {
  CommandResult result = run({"status", "--json"});
  ASSERT_EQ(result.exit_code, 0) << result.err;
  auto status = nlohmann::json::parse(result.out);
  EXPECT_EQ(status["event_source"], "fanotify");
  EXPECT_EQ(status["template"], "ima-ng");
  EXPECT_EQ(status["hash_algorithm"], "sha256");
  EXPECT_EQ(status["entries"], 1);
  EXPECT_EQ(status["violations"], 0);
  EXPECT_EQ(status["measure_before_use"], false);
  ASSERT_EQ(status["backends"].size(), 1u);
  EXPECT_EQ(status["backends"][0]["id"], "tpm2");
  EXPECT_EQ(status["backends"][0]["register_kind"], "PCR");
  EXPECT_EQ(status["backends"][0]["register"], 10);
  EXPECT_EQ(status["backends"][0]["banks"], nlohmann::json({"sha1", "sha256"}));
  EXPECT_EQ(status["backends"][0]["state"], "ok");
}

TEST_F(RotctlDaemon, LogAsciiIsTheExportedFile) {
  for (int i = 0; i < 3; ++i) measure(fmt::format("log{}", i), fmt::format("log {}", i));
  CommandResult result = run({"log"});
  ASSERT_EQ(result.exit_code, 0) << result.err;
  EXPECT_EQ(result.out, imarot::test::read_text_file(harness_.runtime_directory() + "/ascii_runtime_measurements"));
  EXPECT_EQ(lines_of(result.out).size(), 4u);
}

TEST_F(RotctlDaemon, LogBinaryIsTheDurableList) {
  measure("binary", "binary");
  CommandResult result = run({"log", "--format", "binary"});
  ASSERT_EQ(result.exit_code, 0) << result.err;
  EXPECT_EQ(result.out, imarot::test::read_text_file(harness_.durable_list()));
}

TEST_F(RotctlDaemon, LogFromPrintsTheTail) {
  for (int i = 0; i < 4; ++i) measure(fmt::format("tail{}", i), fmt::format("tail {}", i));
  CommandResult all = run({"log"});
  ASSERT_EQ(all.exit_code, 0) << all.err;
  std::vector<std::string> all_lines = lines_of(all.out);
  ASSERT_EQ(all_lines.size(), 5u);

  CommandResult tail = run({"log", "--from", "3"});
  ASSERT_EQ(tail.exit_code, 0) << tail.err;
  EXPECT_EQ(lines_of(tail.out), std::vector<std::string>(all_lines.begin() + 2, all_lines.end()));

  CommandResult beyond = run({"log", "--from", "9"});
  EXPECT_EQ(beyond.exit_code, 2);
  EXPECT_NE(beyond.err.find("--from 9: the list has 5 entries"), std::string::npos) << beyond.err;
}

TEST_F(RotctlDaemon, LogJsonParsesBack) {
  measure("json file", "json");
  CommandResult result = run({"log", "--format", "json"});
  ASSERT_EQ(result.exit_code, 0) << result.err;
  auto entries = nlohmann::json::parse(result.out);
  ASSERT_EQ(entries.size(), 2u);
  EXPECT_EQ(entries[0]["index"], 1);
  EXPECT_EQ(entries[0]["name"], "boot_aggregate");
  EXPECT_EQ(entries[1]["index"], 2);
  EXPECT_EQ(entries[1]["name"], harness_.mount_point() + "/json_file");
  EXPECT_EQ(entries[1]["pcr"], 10);
  EXPECT_EQ(entries[1]["template"], "ima-ng");
  EXPECT_EQ(entries[1]["digest_algorithm"], "sha256");
  imarot::ParsedList list = durable_list();
  ASSERT_EQ(list.entries.size(), 2u);
  EXPECT_EQ(entries[1]["template_digest"], list.entries[1].stored_digest().hex());

  CommandResult from = run({"log", "--format", "json", "--from", "2"});
  ASSERT_EQ(from.exit_code, 0) << from.err;
  auto tail = nlohmann::json::parse(from.out);
  ASSERT_EQ(tail.size(), 1u);
  EXPECT_EQ(tail[0]["index"], 2);
}

TEST_F(RotctlDaemon, LogFollowPrintsNewEntries) {
  std::string output = harness_.file("follow.out");
  auto pid = imarot::test::spawn_logged(
      {ROTCTL_PATH, "log", "--follow", "--format", "json", "--bus", harness_.address()}, output);
  ASSERT_TRUE(pid) << pid.error().message;
  ASSERT_TRUE(wait_until([&] { return !imarot::test::read_text_file(output).empty(); }, 10s))
      << "the entries already in the list are printed first";

  for (int i = 0; i < 5; ++i) harness_.measure_file(fmt::format("follow{}", i), fmt::format("follow {}", i));
  bool all = wait_until([&] { return lines_of(imarot::test::read_text_file(output)).size() == 6; }, 15s);
  imarot::test::stop_child(*pid, SIGTERM, 5s);
  ASSERT_TRUE(all) << imarot::test::read_text_file(output);

  std::vector<std::string> lines = lines_of(imarot::test::read_text_file(output));
  for (size_t i = 0; i < lines.size(); ++i) {
    auto entry = nlohmann::json::parse(lines[i]);
    EXPECT_EQ(entry["index"], i + 1) << lines[i];
  }
  EXPECT_EQ(nlohmann::json::parse(lines[5])["name"], harness_.mount_point() + "/follow4");
}

TEST_F(RotctlDaemon, PcrsThroughDaemon) {
  measure("pcrs", "pcrs");
  CommandResult result = run({"pcrs"});
  ASSERT_EQ(result.exit_code, 0) << result.err;
  std::vector<std::string> lines = lines_of(result.out);
  ASSERT_EQ(lines.size(), 2u * 25u) << result.out;
  EXPECT_EQ(lines[0], "  sha1:");
  EXPECT_EQ(lines[25], "  sha256:");

  auto replayed = imarot::replay_list(durable_list().entries, std::vector<imarot::HashAlgo>{imarot::HashAlgo::sha256});
  ASSERT_TRUE(replayed);
  std::string pcr10 = replayed->at(imarot::RegisterId{10, imarot::HashAlgo::sha256}).hex();
  for (char& c : pcr10) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  EXPECT_EQ(lines[25 + 1 + 10], "    10: 0x" + pcr10);
}

TEST_F(RotctlDaemon, RegistersJsonParsesBack) {
  CommandResult result = run({"registers", "--pcr", "0,10", "--bank", "sha256", "--json"});
  ASSERT_EQ(result.exit_code, 0) << result.err;
  auto out = nlohmann::json::parse(result.out);
  EXPECT_EQ(out["backend"], "tpm2");
  EXPECT_EQ(out["register_kind"], "PCR");
  EXPECT_EQ(out["register_count"], 24);
  ASSERT_EQ(out["banks"].size(), 1u);
  EXPECT_EQ(out["banks"][0]["bank"], "sha256");
  EXPECT_EQ(out["banks"][0]["registers"]["0"], std::string(64, '0'));
  EXPECT_EQ(out["banks"][0]["registers"].size(), 2u);

  CommandResult header = run({"registers", "--pcr", "10", "--bank", "sha1"});
  ASSERT_EQ(header.exit_code, 0) << header.err;
  std::vector<std::string> lines = lines_of(header.out);
  ASSERT_EQ(lines.size(), 6u) << header.out;
  EXPECT_EQ(lines[0], "backend: tpm2");
  EXPECT_EQ(lines[1], "register_kind: PCR");
  EXPECT_EQ(lines[4], "  sha1:");
}

TEST_F(RotctlDaemon, RegistersReportUnallocatedBank) {
  CommandResult result = run({"pcrs", "--bank", "sha384", "--pcr", "10"});
  ASSERT_EQ(result.exit_code, 0) << result.err;
  EXPECT_EQ(result.out, "  sha384: unallocated\n");

  CommandResult unknown = run({"pcrs", "--backend", "tdx"});
  EXPECT_EQ(unknown.exit_code, 2);
  EXPECT_NE(unknown.err.find("--backend 'tdx': imarotd has no such backend; its backends are 'tpm2' (tpm2)"),
            std::string::npos)
      << unknown.err;

  CommandResult rtmrs = run({"rtmrs"});
  EXPECT_EQ(rtmrs.exit_code, 2);
  EXPECT_NE(rtmrs.err.find("imarotd has no tdx backend"), std::string::npos) << rtmrs.err;
}

TEST_F(RotctlDaemon, BootAggregateThroughDaemon) {
  CommandResult result = run({"boot-aggregate"});
  ASSERT_EQ(result.exit_code, 0) << result.err;
  imarot::ParsedList list = durable_list();
  ASSERT_FALSE(list.entries.empty());
  auto fields = imarot::decode_fields(list.entries[0]);
  ASSERT_TRUE(fields);
  EXPECT_EQ(result.out, "sha256:" + imarot::to_hex(fields->file_digest) + "\n");

  CommandResult json = run({"boot-aggregate", "--json", "--ima-hash", "sha1"});
  ASSERT_EQ(json.exit_code, 0) << json.err;
  auto out = nlohmann::json::parse(json.out);
  EXPECT_EQ(out["bank"], "sha1");
  EXPECT_EQ(out["ima_hash"], "sha1");
  EXPECT_EQ(out["boot_aggregate"].get<std::string>().size(), 40u);
}

TEST_F(RotctlDaemon, VerifyLiveMatches) {
  for (int i = 0; i < 3; ++i) measure(fmt::format("verify{}", i), fmt::format("verify {}", i));
  CommandResult result = run({"verify"});
  ASSERT_EQ(result.exit_code, 0) << result.out << result.err;
  std::vector<std::string> lines = lines_of(result.out);
  ASSERT_FALSE(lines.empty());
  EXPECT_EQ(lines[0], "backend tpm2 (PCR 10, ok):");
  EXPECT_NE(result.out.find("register 10 sha1    match"), std::string::npos) << result.out;
  EXPECT_NE(result.out.find("register 10 sha256  match"), std::string::npos) << result.out;
  EXPECT_NE(result.out.find("OK: 4 entries (0 violations) verified"), std::string::npos) << result.out;

  CommandResult json = run({"verify", "--json"});
  ASSERT_EQ(json.exit_code, 0) << json.err;
  auto out = nlohmann::json::parse(json.out);
  EXPECT_EQ(out["ok"], true);
  EXPECT_EQ(out["entries"], 4);
  ASSERT_EQ(out["backends"].size(), 1u);
  EXPECT_EQ(out["backends"][0]["backend"], "tpm2");
  EXPECT_EQ(out["backends"][0]["failures"].size(), 0u);
  // Register 10 in both banks; the boot_aggregate check used PCR 0-9.
  EXPECT_EQ(out["backends"][0]["registers"].size(), 2u);
}

TEST_F(RotctlDaemon, VerifyLiveFailsOnForeignExtend) {
  measure("before", "before");
  // Something other than imarotd extends PCR 10 behind its back.
  std::vector<std::pair<imarot::HashAlgo, imarot::Digest>> digests = {
      {imarot::HashAlgo::sha1, imarot::Digest::filled(20, 0x42)},
      {imarot::HashAlgo::sha256, imarot::Digest::filled(32, 0x42)}};
  auto tools = imarot::test::SwtpmTools::find();
  ASSERT_TRUE(tools);
  auto extended = imarot::test::pcrextend(*tools, harness_.swtpm()->tcti(), 10, digests);
  ASSERT_TRUE(extended) << extended.error().message;

  CommandResult result = run({"verify"});
  EXPECT_EQ(result.exit_code, 1) << result.out << result.err;
  EXPECT_NE(result.out.find("MISMATCH"), std::string::npos) << result.out;
  EXPECT_NE(result.out.find("FAILED"), std::string::npos) << result.out;

  CommandResult json = run({"verify", "--json"});
  EXPECT_EQ(json.exit_code, 1);
  EXPECT_EQ(nlohmann::json::parse(json.out)["ok"], false);
}

TEST_F(RotctlDaemon, VerifyRefusedBackendFails) {
  measure("before", "before");
  // Something other than imarotd extends PCR 10 while imarotd is stopped,
  // so at its next start the register matches no prefix of its list and
  // the backend is refused.
  harness_.stop_daemon();
  std::vector<std::pair<imarot::HashAlgo, imarot::Digest>> digests = {
      {imarot::HashAlgo::sha1, imarot::Digest::filled(20, 0x42)},
      {imarot::HashAlgo::sha256, imarot::Digest::filled(32, 0x42)}};
  auto tools = imarot::test::SwtpmTools::find();
  ASSERT_TRUE(tools);
  auto extended = imarot::test::pcrextend(*tools, harness_.swtpm()->tcti(), 10, digests);
  ASSERT_TRUE(extended) << extended.error().message;
  auto restarted = harness_.restart_daemon();
  ASSERT_TRUE(restarted) << restarted.error().message;
  bus_ = std::make_unique<TestBus>(harness_.address());

  CommandResult status = run({"status", "--json"});
  ASSERT_EQ(status.exit_code, 1) << status.out << status.err;
  ASSERT_EQ(nlohmann::json::parse(status.out)["backends"][0]["state"], "refused") << status.out;

  CommandResult result = run({"verify"});
  EXPECT_EQ(result.exit_code, 1) << result.out << result.err;
  EXPECT_EQ(result.err, "");
  std::vector<std::string> lines = lines_of(result.out);
  ASSERT_EQ(lines.size(), 3u) << result.out;
  EXPECT_EQ(lines[0], "backend tpm2 (PCR 10, refused):");
  EXPECT_EQ(lines[1].rfind("failed: imarotd refused backend 'tpm2' when it started, so its registers cannot be "
                           "checked: PCR 10 matches no prefix",
                           0),
            0u)
      << lines[1];
  EXPECT_EQ(lines[1].find("backend 'tpm2': "), std::string::npos) << "the id is given once: " << lines[1];
  EXPECT_NE(lines[1].find("divergence.log"), std::string::npos) << lines[1];
  EXPECT_EQ(lines[2], "FAILED");

  // Called directly, Verify fails as the backend's failure, not as a bad
  // argument of the caller, and names the backend once.
  auto direct = bus_->call("Verify", [](sd_bus_message* m) { return sd_bus_message_append(m, "a{sv}", 0); });
  ASSERT_FALSE(direct->ok());
  EXPECT_EQ(direct->error_name(), "org.imarot1.Error.BackendFailed");
  EXPECT_EQ(direct->error_message().rfind("backend 'tpm2' was refused at start and is not open: ", 0), 0u)
      << direct->error_message();

  CommandResult json = run({"verify", "--json", "--backend", "tpm2"});
  EXPECT_EQ(json.exit_code, 1) << json.out << json.err;
  auto out = nlohmann::json::parse(json.out);
  EXPECT_EQ(out["ok"], false);
  ASSERT_EQ(out["backends"].size(), 1u);
  EXPECT_EQ(out["backends"][0]["state"], "refused");
  EXPECT_EQ(out["backends"][0]["ok"], false);
  ASSERT_EQ(out["backends"][0]["failures"].size(), 1u);
  EXPECT_NE(out["backends"][0]["failures"][0]["message"].get<std::string>().find("matches no prefix"),
            std::string::npos);
}

TEST_F(RotctlDaemon, VerifyLiveFilters) {
  measure("filter", "filter");
  CommandResult result = run({"verify", "--bank", "sha256", "--pcr", "10", "--backend", "tpm2"});
  ASSERT_EQ(result.exit_code, 0) << result.out << result.err;
  EXPECT_NE(result.out.find("register 10 sha256  match"), std::string::npos) << result.out;
  EXPECT_EQ(result.out.find("sha1 "), std::string::npos) << result.out;

  CommandResult unknown = run({"verify", "--backend", "nope"});
  EXPECT_EQ(unknown.exit_code, 2);
  EXPECT_NE(unknown.err.find("--backend 'nope': imarotd has no such backend"), std::string::npos) << unknown.err;

  CommandResult bad_bank = run({"verify", "--bank", "sha999"});
  EXPECT_EQ(bad_bank.exit_code, 2);
  EXPECT_NE(bad_bank.err.find("sha999"), std::string::npos) << bad_bank.err;
}

TEST_F(RotctlDaemon, ReaderGroupVerifies) {
  CommandResult verify = run_as(kReaderUid, {ROTCTL_PATH, "verify", "--json", "--bus", harness_.address()});
  ASSERT_EQ(verify.exit_code, 0) << verify.err;
  EXPECT_EQ(nlohmann::json::parse(verify.out)["ok"], true);
}

TEST_F(RotctlDaemon, UnreachableDaemonExitsThree) {
  harness_.stop_daemon();
  for (const auto& command : std::vector<std::vector<std::string>>{
           {"status"}, {"log"}, {"log", "--format", "json"}, {"pcrs"}, {"boot-aggregate"}, {"verify"}}) {
    CommandResult result = run(command);
    EXPECT_EQ(result.exit_code, 3) << command[0] << ": " << result.err;
    EXPECT_NE(result.err.find("imarotd is not reachable on the " + harness_.address() + " bus"), std::string::npos)
        << result.err;
  }
  CommandResult no_bus = rotctl({"status", "--bus", "unix:path=" + harness_.file("no-such-bus.sock")});
  EXPECT_EQ(no_bus.exit_code, 3);
  EXPECT_NE(no_bus.err.find("cannot connect to the unix:path="), std::string::npos) << no_bus.err;
}

TEST_F(RotctlDaemon, ReaderGroupUsesRotctl) {
  CommandResult status = run_as(kReaderUid, {ROTCTL_PATH, "status", "--json", "--bus", harness_.address()});
  ASSERT_EQ(status.exit_code, 0) << status.err;
  EXPECT_EQ(nlohmann::json::parse(status.out)["entries"], 1);

  CommandResult denied = run_as(kStrangerUid, {ROTCTL_PATH, "status", "--bus", harness_.address()});
  EXPECT_EQ(denied.exit_code, 3);
  EXPECT_NE(denied.err.find("access denied"), std::string::npos) << denied.err;
}

TEST(RotctlUsage, BadBusArgumentExitsTwo) {
  CommandResult result = rotctl({"status", "--bus", "nowhere"});
  EXPECT_EQ(result.exit_code, 2);
  EXPECT_NE(result.err.find("--bus 'nowhere': expected system, session or a D-Bus address"), std::string::npos)
      << result.err;
}

TEST(RotctlUsage, EverySubcommandHasHelp) {
  const std::vector<std::string> daemon_commands = {"status", "log", "pcrs", "rtmrs", "registers", "boot-aggregate",
                                                    "verify"};
  for (const std::string& command : daemon_commands) {
    CommandResult result = rotctl({command, "--help"});
    EXPECT_EQ(result.exit_code, 0) << command;
    EXPECT_NE(result.out.find("--bus"), std::string::npos) << command << ": " << result.out;
    std::string machine_output = command == "log" ? "--format" : "--json";
    EXPECT_NE(result.out.find(machine_output), std::string::npos) << command << ": " << result.out;
  }
  CommandResult policy = rotctl({"policy", "--help"});
  EXPECT_EQ(policy.exit_code, 0);
  CommandResult top = rotctl({"--help"});
  EXPECT_EQ(top.exit_code, 0);
  for (const std::string& command : daemon_commands) EXPECT_NE(top.out.find(command), std::string::npos) << command;
}

}  // namespace
}  // namespace imarotd::test
