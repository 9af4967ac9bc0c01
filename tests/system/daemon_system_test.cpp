// imarotd as users run it: real binary, real fanotify, swtpm through
// tpm2-tss. Each test mounts a private tmpfs, starts swtpm and the daemon,
// causes file events, stops the daemon and checks the list it wrote against
// the PCR that tpm2_pcrread reads, with rotctl verify and evmctl.
#include <gtest/gtest.h>

#include <signal.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <random>
#include <regex>
#include <thread>

#include <fcntl.h>
#include <nlohmann/json.hpp>

#include "imarot/measurement_list.h"
#include "imarot/replay.h"
#include "process.h"
#include "rot_test_util.h"
#include "swtpm.h"

namespace imarot::test {
namespace {

constexpr uint32_t kPcr = 11;
const std::vector<HashAlgo> kBanks = {HashAlgo::sha1, HashAlgo::sha256};

std::string sha256_hex(const std::string& content) {
  return hash_bytes(HashAlgo::sha256, ByteView(reinterpret_cast<const uint8_t*>(content.data()), content.size()))
      ->hex();
}

class DaemonSystem : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(::geteuid(), 0u) << "the system tests need root for fanotify and mount; CI runs them as root";
    auto tools = SwtpmTools::find();
    ASSERT_TRUE(tools) << tools.error().message;
    tools_ = *tools;
    SwtpmOptions options;
    options.pcr_banks = "sha1,sha256";
    ::mkdir(dir_.file("tpm").c_str(), 0700);
    auto swtpm = Swtpm::start(tools_, dir_.file("tpm"), options);
    ASSERT_TRUE(swtpm) << swtpm.error().message;
    swtpm_ = std::move(*swtpm);

    fs_ = dir_.file("fs");
    ::mkdir(fs_.c_str(), 0755);
    ASSERT_EQ(::mount("imarotd-system-test", fs_.c_str(), "tmpfs", 0, "size=512m"), 0) << std::strerror(errno);
    mounted_ = true;
  }

  void TearDown() override {
    if (daemon_ > 0) stop_child(daemon_, SIGKILL, std::chrono::milliseconds(100));
    if (mounted_) ::umount2(fs_.c_str(), MNT_DETACH);
    if (swtpm_) swtpm_->stop();
  }

  void write_config(const nlohmann::json& extra = {}) {
    nlohmann::json config = {
        {"policy", dir_.file("policy")},
        {"state_directory", dir_.file("state")},
        {"runtime_directory", dir_.file("run")},
        {"plugin_directory", plugin_dir()},
        {"event_source", "fanotify"},
        {"filesystems", {fs_}},
        {"template", "ima-sig"},
        {"hash_threads", 2},
        {"backends", {{{"name", "tpm2"}, {"register", kPcr}, {"config", {{"tcti", swtpm_->tcti()}}}}}},
        {"dbus", "none"},  // a test never joins the machine's system bus
    };
    for (const auto& [key, value] : extra.items()) config[key] = value;
    write_text_file(dir_.file("imarotd.json"), config.dump(2));
    // The golden capture's rules, but for a filesystem the test owns.
    write_text_file(dir_.file("policy"),
                    "measure func=BPRM_CHECK mask=MAY_EXEC template=ima-ng\n"
                    "measure func=FILE_CHECK mask=^MAY_READ uid=0 template=ima-sig\n");
  }

  void start_daemon() {
    std::filesystem::remove(dir_.file("run/status.json"));
    auto pid = spawn_logged({IMAROTD_PATH, "--config", dir_.file("imarotd.json")}, dir_.file("daemon.log"));
    ASSERT_TRUE(pid) << pid.error().message;
    daemon_ = *pid;
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    while (!std::filesystem::exists(dir_.file("run/status.json"))) {
      ASSERT_TRUE(child_running(daemon_)) << "imarotd exited:\n" << read_text_file(dir_.file("daemon.log"));
      ASSERT_LT(std::chrono::steady_clock::now(), deadline) << read_text_file(dir_.file("daemon.log"));
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }

  void stop_daemon() {
    ::kill(daemon_, SIGTERM);
    int status = 0;
    ASSERT_EQ(::waitpid(daemon_, &status, 0), daemon_);
    daemon_ = -1;
    ASSERT_TRUE(WIFEXITED(status)) << "exit status " << status << "\n" << read_text_file(dir_.file("daemon.log"));
    EXPECT_EQ(WEXITSTATUS(status), 0) << read_text_file(dir_.file("daemon.log"));
  }

  nlohmann::json status() { return nlohmann::json::parse(read_text_file(dir_.file("run/status.json"))); }

  // Waits until the list has `count` entries.
  void wait_entries(size_t count) {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    for (;;) {
      ParsedList list = parse_binary_list(read_file_bytes(dir_.file("state/current.bin")));
      if (list.entries.size() >= count) return;
      if (std::chrono::steady_clock::now() > deadline) {
        std::string shown;
        for (const auto& entry : list.entries) shown += decode_fields(entry)->name + "\n";
        FAIL() << "list has " << list.entries.size() << " entries, expected " << count << ":\n"
               << shown << read_text_file(dir_.file("daemon.log"));
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }

  static Bytes read_file_bytes(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    return Bytes(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }

  ParsedList list() {
    ParsedList parsed = parse_binary_list(read_file_bytes(dir_.file("state/current.bin")));
    EXPECT_FALSE(parsed.error) << format_parse_error(*parsed.error);
    return parsed;
  }

  std::vector<std::string> names() {
    std::vector<std::string> out;
    for (const auto& entry : list().entries) out.push_back(decode_fields(entry)->name);
    return out;
  }

  // Reads PCR kPcr with tpm2_pcrread, checks the list with rotctl verify
  // and evmctl against it. The daemon must be stopped: swtpm serves one
  // client at a time.
  void verify_against_tpm() {
    auto dump = pcrread(tools_, swtpm_->tcti(), pcr_selection(kBanks, {kPcr}));
    ASSERT_TRUE(dump) << dump.error().message;
    std::string reference;
    for (const auto& [id, value] : dump->values) {
      reference += fmt::format("{}:{}:{}\n", hash_name(id.bank), id.index, value.hex());
    }
    write_text_file(dir_.file("pcrs.txt"), reference);

    auto verify = run_command({ROTCTL_PATH, "verify", "--input", dir_.file("state/current.bin"), "--pcrs",
                               dir_.file("pcrs.txt")});
    EXPECT_EQ(verify.exit_code, 0) << verify.out << verify.err;

    write_text_file(dir_.file("pcrs.sha256"), format_evmctl_pcrs(dump->values, HashAlgo::sha256));
    write_text_file(dir_.file("pcrs.sha1"), format_evmctl_pcrs(dump->values, HashAlgo::sha1));
    auto evmctl = run_command({"evmctl", "ima_measurement", "--ignore-violations", "--pcrs",
                               "sha256," + dir_.file("pcrs.sha256"), "--pcrs", "sha1," + dir_.file("pcrs.sha1"),
                               dir_.file("state/current.bin")});
    EXPECT_EQ(evmctl.exit_code, 0) << evmctl.out << evmctl.err;
  }

  std::string file(const std::string& name, const std::string& content, mode_t mode = 0644) {
    std::string path = fs_ + "/" + name;
    write_text_file(path, content);
    ::chmod(path.c_str(), mode);
    return path;
  }

  void run(const std::vector<std::string>& argv) {
    auto result = run_command(argv);
    ASSERT_EQ(result.exit_code, 0) << argv[0] << ": " << result.err;
  }

  TempDir dir_;
  SwtpmTools tools_;
  std::unique_ptr<Swtpm> swtpm_;
  std::string fs_;
  bool mounted_ = false;
  pid_t daemon_ = -1;
};

TEST_F(DaemonSystem, GoldenEventKinds) {
  write_config();
  start_daemon();
  wait_entries(1);  // boot_aggregate

  // Exec twice: one ima-ng entry.
  std::string tool = fs_ + "/hello";
  std::filesystem::copy_file("/bin/true", tool);
  run({tool});
  run({tool});
  // Files read by root, names with a space, a newline, a tab and UTF-8.
  std::vector<std::string> paths = {file("plain.conf", "plain\n"), file("file with space.conf", "space\n"),
                                    file("new\nline", "newline\n"), file("tab\tname", "tab\n"),
                                    file("café", "utf8\n")};
  for (const auto& path : paths) run({"cat", path});
  // A signed file: security.ima carries a v2 signature header.
  std::string signed_path = file("signed.conf", "signed\n");
  Bytes signature = {0x03, 0x02, 0x04, 0x01, 0x02, 0x03, 0x04, 0x00, 0x04, 0xaa, 0xbb, 0xcc, 0xdd};
  ASSERT_EQ(::setxattr(signed_path.c_str(), "security.ima", signature.data(), signature.size(), 0), 0)
      << std::strerror(errno);
  run({"cat", signed_path});
  wait_entries(8);

  // Changed and read twice: one new entry, not two.
  std::string mutable_path = file("mutable.conf", "one\n");
  run({"cat", mutable_path});
  wait_entries(9);
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  { std::ofstream(mutable_path, std::ios::app) << "two\n"; }
  run({"cat", mutable_path});
  run({"cat", mutable_path});
  wait_entries(10);

  // open-writers: read while another process has it open for writing.
  std::string writer_path = file("writer.conf", "writer\n");
  {
    int writer = ::open(writer_path.c_str(), O_WRONLY);
    ASSERT_GE(writer, 0);
    run({"cat", writer_path});
    ::close(writer);
  }
  // ToMToU: held open for reading, then opened for writing.
  std::string tomtou_path = file("tomtou.conf", "tomtou\n");
  {
    pid_t reader = ::fork();
    if (reader == 0) {
      int fd = ::open(tomtou_path.c_str(), O_RDONLY);
      ::sleep(2);
      ::close(fd);
      ::_exit(0);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
    int writer = ::open(tomtou_path.c_str(), O_WRONLY);
    ASSERT_GE(writer, 0);
    ::close(writer);
    ::waitpid(reader, nullptr, 0);
  }
  // writer.conf: its open_writers violation and its measurement; tomtou.conf:
  // its measurement and its ToMToU violation.
  wait_entries(14);
  stop_daemon();

  ParsedList parsed = list();
  std::vector<std::string> recorded = names();
  EXPECT_EQ(recorded[0], "boot_aggregate");
  EXPECT_EQ(std::count(recorded.begin(), recorded.end(), tool), 1);
  EXPECT_EQ(std::count(recorded.begin(), recorded.end(), fs_ + "/file_with_space.conf"), 1);
  EXPECT_EQ(std::count(recorded.begin(), recorded.end(), fs_ + "/new\nline"), 1);
  EXPECT_EQ(std::count(recorded.begin(), recorded.end(), mutable_path), 2);

  size_t violations = 0;
  for (size_t i = 0; i < parsed.entries.size(); ++i) {
    const Entry& entry = parsed.entries[i];
    auto fields = decode_fields(entry);
    if (entry.is_violation()) {
      ++violations;
      EXPECT_TRUE(fields->name == writer_path || fields->name == tomtou_path) << fields->name;
      continue;
    }
    if (fields->name == tool) {
      EXPECT_EQ(entry.tmpl->name, "ima-ng");
      EXPECT_EQ(to_hex(fields->file_digest), hash_file("/bin/true", HashAlgo::sha256)->hex());
    }
    if (fields->name == fs_ + "/plain.conf") {
      EXPECT_EQ(entry.tmpl->name, "ima-sig");
      EXPECT_EQ(to_hex(fields->file_digest), sha256_hex("plain\n"));
    }
    if (fields->name == signed_path) {
      EXPECT_EQ(fields->signature, signature);
    }
  }
  EXPECT_EQ(violations, 2u);
  verify_against_tpm();
}

// A program started before imarotd, as services early in boot are, is
// measured when the daemon starts, and a restart adds no second entry.
TEST_F(DaemonSystem, ProgramsRunningAtStartAreMeasured) {
  write_config();
  std::string early = fs_ + "/early-service";
  std::filesystem::copy_file("/bin/sleep", early);
  auto sleeper = spawn_logged({early, "60"}, dir_.file("early.log"));
  ASSERT_TRUE(sleeper) << sleeper.error().message;

  start_daemon();
  wait_entries(2);  // boot_aggregate and the running program
  stop_daemon();
  start_daemon();
  stop_daemon();
  stop_child(*sleeper, SIGTERM, std::chrono::milliseconds(500));

  auto names_now = names();
  ASSERT_EQ(names_now.size(), 2u);
  EXPECT_EQ(names_now[1], early);
  auto fields = decode_fields(list().entries[1]);
  ASSERT_TRUE(fields);
  EXPECT_EQ(to_hex(fields->file_digest), hash_file(early, HashAlgo::sha256)->hex());
  verify_against_tpm();
}

TEST_F(DaemonSystem, RestartContinuesList) {
  write_config();
  start_daemon();
  run({"cat", file("a", "a")});
  wait_entries(2);
  stop_daemon();
  start_daemon();
  run({"cat", file("b", "b")});
  run({"cat", fs_ + "/a"});  // unchanged: measured already, before the restart
  wait_entries(3);
  stop_daemon();
  EXPECT_EQ(list().entries.size(), 3u);
  verify_against_tpm();
}

// With notification events no access waits for imarotd, yet every exec and
// read under the policy is measured, once per unchanged file.
TEST_F(DaemonSystem, NotificationEventsMeasureExecAndRead) {
  write_config({{"fanotify_events", "notification"}});
  std::string program = fs_ + "/program";
  std::filesystem::copy_file("/bin/true", program);
  // Written before the start: with notification events a write open is
  // taken for a read and measured.
  std::string data = file("data", "read by root");
  start_daemon();
  EXPECT_EQ(status()["fanotify_events"], "notification");
  for (int i = 0; i < 3; ++i) run({program});
  run({"cat", data});
  wait_entries(3);
  run({"cat", fs_ + "/data"});
  stop_daemon();
  EXPECT_NE(read_text_file(dir_.file("daemon.log")).find("notification events"), std::string::npos);

  auto names_now = names();
  std::string listing;
  for (const auto& name : names_now) listing += name + "\n";
  ASSERT_EQ(names_now.size(), 3u) << listing;
  EXPECT_EQ(names_now[1], program);
  EXPECT_EQ(names_now[2], fs_ + "/data");
  auto fields = decode_fields(list().entries[1]);
  ASSERT_TRUE(fields);
  EXPECT_EQ(to_hex(fields->file_digest), hash_file(program, HashAlgo::sha256)->hex());
  verify_against_tpm();
}

// kill -9 at random moments while files are being read: after each restart
// the register must hold exactly the list, each entry once.
TEST_F(DaemonSystem, KillNineHundredTimes) {
  write_config();
  std::mt19937 random(1234);
  std::vector<std::string> paths;
  for (int i = 0; i < 400; ++i) paths.push_back(file("f" + std::to_string(i), "content " + std::to_string(i)));
  size_t next = 0;
  for (int round = 0; round < 100; ++round) {
    start_daemon();
    // Read a few files through cat children, then kill at a random moment.
    pid_t reader = ::fork();
    if (reader == 0) {
      for (int k = 0; k < 4; ++k) {
        int fd = ::open(paths[(next + static_cast<size_t>(k)) % paths.size()].c_str(), O_RDONLY);
        if (fd >= 0) ::close(fd);
      }
      ::_exit(0);
    }
    next += 4;
    std::this_thread::sleep_for(std::chrono::microseconds(random() % 20000));
    ::kill(daemon_, SIGKILL);
    ::waitpid(daemon_, nullptr, 0);
    daemon_ = -1;
    ::waitpid(reader, nullptr, 0);
  }
  start_daemon();
  stop_daemon();

  ParsedList parsed = list();
  std::set<std::string> seen;
  for (const auto& entry : parsed.entries) {
    if (entry.is_violation()) continue;
    std::string key(entry.sha1.begin(), entry.sha1.end());
    EXPECT_TRUE(seen.insert(key).second) << "entry appended twice: " << decode_fields(entry)->name;
  }
  EXPECT_GT(parsed.entries.size(), 1u);
  verify_against_tpm();
}

TEST_F(DaemonSystem, BurstLargerThanQueue) {
  write_config({{"queue_size", 2}, {"hash_threads", 1}});
  std::vector<std::string> paths;
  // 1 MiB each: one hash thread takes far longer per file than an open
  // takes to queue the next event, so the two-slot queue overflows even
  // when the machine is busy.
  for (int i = 0; i < 200; ++i) {
    paths.push_back(file("burst" + std::to_string(i), std::string(1 << 20, 'x') + std::to_string(i)));
  }
  start_daemon();
  for (const auto& path : paths) {
    int fd = ::open(path.c_str(), O_RDONLY);
    ASSERT_GE(fd, 0);
    ::close(fd);
  }
  std::this_thread::sleep_for(std::chrono::seconds(2));
  stop_daemon();

  nlohmann::json final_status = status();
  uint64_t lost = final_status["lost_events"].get<uint64_t>();
  ASSERT_GT(lost, 0u) << "the burst did not overflow the queue";
  uint64_t recorded_lost = 0;
  uint64_t measured = 0;
  for (const auto& entry : list().entries) {
    std::string name = decode_fields(entry)->name;
    if (entry.is_violation() && name.rfind("[imarotd]_", 0) == 0) {
      recorded_lost += std::stoull(name.substr(10));
    } else if (name.rfind(fs_ + "/burst", 0) == 0) {
      ++measured;
    }
  }
  EXPECT_EQ(recorded_lost, lost);
  EXPECT_EQ(measured + lost, paths.size());
  verify_against_tpm();
}

TEST_F(DaemonSystem, BadConfigIsReportedWithLine) {
  write_text_file(dir_.file("imarotd.json"), "{\n  \"queue_size\": -1\n}\n");
  auto result = run_command({IMAROTD_PATH, "--config", dir_.file("imarotd.json")});
  EXPECT_EQ(result.exit_code, 2);
  EXPECT_NE(result.err.find(dir_.file("imarotd.json") + ":2:17:"), std::string::npos) << result.err;
}

TEST_F(DaemonSystem, BadPolicyIsReportedWithLine) {
  write_config();
  write_text_file(dir_.file("policy"), "measure func=BPRM_CHECK\nmeasure func=NOPE\n");
  auto result = run_command({IMAROTD_PATH, "--config", dir_.file("imarotd.json"), "--check"});
  EXPECT_EQ(result.exit_code, 2);
  EXPECT_NE(result.err.find(dir_.file("policy") + ":2:"), std::string::npos) << result.err;
}

TEST_F(DaemonSystem, CheckRejectsBadPluginConfig) {
  write_config({{"backends", {{{"name", "tpm2"}, {"config", {{"tcti", swtpm_->tcti()}, {"tctl", "x"}}}}}}});
  auto result = run_command({IMAROTD_PATH, "--config", dir_.file("imarotd.json"), "--check"});
  EXPECT_EQ(result.exit_code, 2);
  EXPECT_NE(result.err.find("backends[0]"), std::string::npos) << result.err;
  EXPECT_NE(result.err.find("unknown key 'tctl'"), std::string::npos) << result.err;
}

TEST_F(DaemonSystem, CheckAcceptsGoodPluginConfig) {
  write_config();
  auto result = run_command({IMAROTD_PATH, "--config", dir_.file("imarotd.json"), "--check"});
  EXPECT_EQ(result.exit_code, 0) << result.err;
  EXPECT_NE(result.out.find("configuration valid"), std::string::npos) << result.out;
}

// Configurations that --check must reject as a start does. Each runs
// --check and then a start, and both must exit 2 with the same reason.
class DaemonSystemRejects : public DaemonSystem {
 protected:
  void expect_rejected(const std::string& reason) {
    auto check = run_command({IMAROTD_PATH, "--config", dir_.file("imarotd.json"), "--check"});
    EXPECT_EQ(check.exit_code, 2) << check.out << check.err;
    EXPECT_NE(check.err.find(reason), std::string::npos) << check.err;
    EXPECT_EQ(check.out.find("configuration valid"), std::string::npos) << check.out;

    auto start = run_command({IMAROTD_PATH, "--config", dir_.file("imarotd.json")}, std::chrono::seconds(60));
    EXPECT_EQ(start.exit_code, 2) << start.err;
    EXPECT_NE(start.err.find(reason), std::string::npos) << start.err;
  }
};

TEST_F(DaemonSystemRejects, PolicyDirectory) {
  write_config();
  std::filesystem::remove(dir_.file("policy"));
  ::mkdir(dir_.file("policy").c_str(), 0755);
  expect_rejected(dir_.file("policy") + ": is a directory, expected a policy file");
}

TEST_F(DaemonSystemRejects, PolicyFileMissing) {
  write_config({{"policy", dir_.file("no-such-policy")}});
  expect_rejected("cannot read the policy file '" + dir_.file("no-such-policy") + "' named in " +
                  dir_.file("imarotd.json") + ": No such file or directory");
}

TEST_F(DaemonSystemRejects, PcrOtherThanExplicitRegister) {
  write_config();
  write_text_file(dir_.file("policy"), "measure func=FILE_CHECK pcr=10\n");
  expect_rejected("pcr=10 differs from register 11 that the backends extend");
}

TEST_F(DaemonSystemRejects, MissingFilesystem) {
  write_config({{"filesystems", {fs_ + "/missing"}}});
  expect_rejected("filesystems[0]: '" + fs_ + "/missing' cannot be used: No such file or directory");
}

TEST_F(DaemonSystemRejects, DirectoryNotMountPoint) {
  ::mkdir((fs_ + "/sub").c_str(), 0755);
  write_config({{"filesystems", {fs_ + "/sub"}}});
  expect_rejected("filesystems[0]: '" + fs_ + "/sub' is not a mount point; fanotify watches whole "
                  "filesystems, so give the mount point ('" + fs_ + "') instead");
}

TEST_F(DaemonSystemRejects, SymlinkToDirectory) {
  ::mkdir((fs_ + "/sub").c_str(), 0755);
  ASSERT_EQ(::symlink((fs_ + "/sub").c_str(), dir_.file("link").c_str()), 0) << std::strerror(errno);
  write_config({{"filesystems", {dir_.file("link")}}});
  expect_rejected("'" + dir_.file("link") + "' (resolved to '" + fs_ + "/sub') is not a mount point");
}

TEST_F(DaemonSystem, CheckAcceptsSymlinkToMountPoint) {
  ASSERT_EQ(::symlink(fs_.c_str(), dir_.file("link").c_str()), 0) << std::strerror(errno);
  write_config({{"filesystems", {dir_.file("link")}}});
  auto result = run_command({IMAROTD_PATH, "--config", dir_.file("imarotd.json"), "--check"});
  EXPECT_EQ(result.exit_code, 0) << result.err;
}

TEST_F(DaemonSystem, CheckWarnsWithoutBackends) {
  write_config({{"backends", nlohmann::json::array()}});
  auto result = run_command({IMAROTD_PATH, "--config", dir_.file("imarotd.json"), "--check"});
  EXPECT_EQ(result.exit_code, 0) << result.err;
  EXPECT_NE(result.out.find("configuration valid"), std::string::npos) << result.out;
  EXPECT_NE(result.err.find("no backends configured in " + dir_.file("imarotd.json")), std::string::npos)
      << result.err;
}

// Without "register" the plugin's default register is known only with the
// device open, so --check passes with a warning and the start rejects it.
TEST_F(DaemonSystem, StartRejectsPcrOtherThanDefaultRegister) {
  write_config({{"backends", {{{"name", "tpm2"}, {"config", {{"tcti", swtpm_->tcti()}}}}}}});
  write_text_file(dir_.file("policy"), "measure func=FILE_CHECK pcr=11\n");

  auto check = run_command({IMAROTD_PATH, "--config", dir_.file("imarotd.json"), "--check"});
  EXPECT_EQ(check.exit_code, 0) << check.err;
  EXPECT_NE(check.err.find("pcr= in " + dir_.file("policy") + " is checked against the register of backends[0]"),
            std::string::npos)
      << check.err;

  auto start = run_command({IMAROTD_PATH, "--config", dir_.file("imarotd.json")}, std::chrono::seconds(60));
  EXPECT_EQ(start.exit_code, 2) << start.err;
  EXPECT_NE(start.err.find("pcr=11 differs from register 10"), std::string::npos) << start.err;
}

TEST_F(DaemonSystem, ConfigFileMissingGivesReason) {
  auto result = run_command({IMAROTD_PATH, "--config", dir_.file("none.json"), "--check"});
  EXPECT_EQ(result.exit_code, 2);
  EXPECT_NE(result.err.find("cannot read the configuration file '" + dir_.file("none.json") +
                            "': No such file or directory"),
            std::string::npos)
      << result.err;
  // The --config hint is only for the default path.
  EXPECT_EQ(result.err.find("pass --config"), std::string::npos) << result.err;
}

TEST_F(DaemonSystem, ConfigDirectoryIsRejected) {
  ::mkdir(dir_.file("conf.d").c_str(), 0755);
  auto result = run_command({IMAROTD_PATH, "--config", dir_.file("conf.d"), "--check"});
  EXPECT_EQ(result.exit_code, 2);
  EXPECT_NE(result.err.find(dir_.file("conf.d") + ": is a directory, expected a configuration file"),
            std::string::npos)
      << result.err;
}

TEST_F(DaemonSystem, DefaultConfigMissingHintsConfig) {
  if (std::filesystem::exists("/etc/imarotd/imarotd.json")) {
    GTEST_SKIP() << "/etc/imarotd/imarotd.json exists on this machine";
  }
  auto result = run_command({IMAROTD_PATH, "--check"});
  EXPECT_EQ(result.exit_code, 2);
  EXPECT_NE(result.err.find("cannot read the configuration file '/etc/imarotd/imarotd.json': No such file or "
                            "directory; pass --config FILE"),
            std::string::npos)
      << result.err;
}

TEST_F(DaemonSystem, HelpShowsDefaultConfig) {
  auto result = run_command({IMAROTD_PATH, "--help"});
  EXPECT_EQ(result.exit_code, 0);
  EXPECT_NE(result.out.find("/etc/imarotd/imarotd.json"), std::string::npos) << result.out;
}

// SIGHUP with the policy replaced by a directory: the daemon logs the error
// and keeps measuring with the policy it has.
TEST_F(DaemonSystem, ReloadKeepsPolicyWhenDirectory) {
  write_config();
  start_daemon();
  std::filesystem::remove(dir_.file("policy"));
  ::mkdir(dir_.file("policy").c_str(), 0755);
  ASSERT_EQ(::kill(daemon_, SIGHUP), 0);

  std::string reason = "policy reload failed, keeping the current policy: " + dir_.file("policy") +
                       ": is a directory, expected a policy file";
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (read_text_file(dir_.file("daemon.log")).find(reason) == std::string::npos) {
    ASSERT_TRUE(child_running(daemon_)) << "imarotd exited:\n" << read_text_file(dir_.file("daemon.log"));
    ASSERT_LT(std::chrono::steady_clock::now(), deadline) << read_text_file(dir_.file("daemon.log"));
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }

  run({"cat", file("a", "a")});
  wait_entries(2);
  stop_daemon();
  verify_against_tpm();
}

// A register that no longer matches the list is recorded in
// STATE/divergence.log, one line per event, with an ISO 8601 UTC time.
TEST_F(DaemonSystem, DivergenceLogHasUtcTime) {
  write_config();
  start_daemon();
  stop_daemon();
  std::vector<std::pair<HashAlgo, Digest>> foreign;
  for (HashAlgo bank : kBanks) foreign.emplace_back(bank, Digest::filled(digest_size(bank), 0x5a));
  ASSERT_TRUE(pcrextend(tools_, swtpm_->tcti(), kPcr, foreign));

  start_daemon();
  stop_daemon();
  std::string text = read_text_file(dir_.file("state/divergence.log"));
  ASSERT_FALSE(text.empty()) << read_text_file(dir_.file("daemon.log"));
  std::regex timestamp(R"(^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z backend 'tpm2')");
  EXPECT_TRUE(std::regex_search(text, timestamp)) << text;
}

}  // namespace
}  // namespace imarot::test
