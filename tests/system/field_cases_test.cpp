// Cases reported from the field, end to end: the real imarotd on the
// fanotify source over a private tmpfs, swtpm as its TPM. Each test runs
// programs and reads files the way users do, stops the daemon, and checks
// the names and digests in the list it wrote, then checks the list against
// the PCR with rotctl verify and evmctl.
#include <gtest/gtest.h>

#include <signal.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
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

constexpr uint32_t kFieldPcr = 11;
const std::vector<HashAlgo> kFieldBanks = {HashAlgo::sha1, HashAlgo::sha256};
constexpr const char* kExecPolicy = "measure func=BPRM_CHECK mask=MAY_EXEC\n";

std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

std::string sha256_of(const std::string& content) {
  return hash_bytes(HashAlgo::sha256, ByteView(reinterpret_cast<const uint8_t*>(content.data()), content.size()))
      ->hex();
}

// Writes `content` to `path` with mode 0755.
bool write_executable(const std::string& path, const std::string& content) {
  std::filesystem::create_directories(std::filesystem::path(path).parent_path());
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << content;
  out.close();
  return out.good() && ::chmod(path.c_str(), 0755) == 0;
}

// Runs `body` in a child process and returns its exit code, or -1 when it
// was killed by a signal.
int run_child(const std::function<int()>& body) {
  pid_t pid = ::fork();
  if (pid == 0) ::_exit(body());
  int status = 0;
  if (::waitpid(pid, &status, 0) != pid || !WIFEXITED(status)) return -1;
  return WEXITSTATUS(status);
}

// execve of `program` from working directory `cwd` with `env`; returns 127
// when the exec failed.
int exec_from(const std::string& cwd, const std::string& program, std::vector<std::string> args = {},
              std::vector<std::string> env = {}) {
  return run_child([&] {
    if (::chdir(cwd.c_str()) != 0) return 126;
    std::vector<char*> argv = {const_cast<char*>(program.c_str())};
    for (auto& arg : args) argv.push_back(arg.data());
    argv.push_back(nullptr);
    std::vector<char*> envp;
    for (auto& item : env) envp.push_back(item.data());
    envp.push_back(nullptr);
    ::execve(program.c_str(), argv.data(), envp.data());
    return 127;
  });
}

class FieldCases : public ::testing::Test {
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
    ASSERT_EQ(::mount("imarotd-field-test", fs_.c_str(), "tmpfs", 0, "size=256m"), 0) << std::strerror(errno);
    mounted_ = true;
  }

  void TearDown() override {
    if (daemon_ > 0) stop_child(daemon_, SIGKILL, std::chrono::milliseconds(100));
    if (mounted_) ::umount2(fs_.c_str(), MNT_DETACH);
    if (swtpm_) swtpm_->stop();
  }

  void start_daemon(const std::string& policy) {
    nlohmann::json config = {
        {"policy", dir_.file("policy")},
        {"state_directory", dir_.file("state")},
        {"runtime_directory", dir_.file("run")},
        {"plugin_directory", plugin_dir()},
        {"event_source", "fanotify"},
        {"filesystems", {fs_}},
        {"template", "ima-ng"},
        {"backends", {{{"name", "tpm2"}, {"register", kFieldPcr}, {"config", {{"tcti", swtpm_->tcti()}}}}}},
        {"dbus", "none"},  // a test never joins the machine's system bus
    };
    write_text_file(dir_.file("imarotd.json"), config.dump(2));
    write_text_file(dir_.file("policy"), policy);
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

  // Stops the daemon with SIGTERM, which commits every event it has read.
  // A short pause first lets it read the events of the last accesses.
  void stop_daemon() {
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    ::kill(daemon_, SIGTERM);
    int status = 0;
    ASSERT_EQ(::waitpid(daemon_, &status, 0), daemon_);
    daemon_ = -1;
    ASSERT_TRUE(WIFEXITED(status)) << "exit status " << status << "\n" << read_text_file(dir_.file("daemon.log"));
    EXPECT_EQ(WEXITSTATUS(status), 0) << read_text_file(dir_.file("daemon.log"));
  }

  // Waits until `count` entries are committed: extended, in the ascii list,
  // and known to the daemon as measured.
  void wait_for_committed(size_t count) {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    for (;;) {
      std::string ascii = read_text_file(dir_.file("run/ascii_runtime_measurements"));
      size_t lines = static_cast<size_t>(std::count(ascii.begin(), ascii.end(), '\n'));
      if (lines >= count) return;
      ASSERT_LT(std::chrono::steady_clock::now(), deadline) << lines << " of " << count << " entries committed";
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  }

  ParsedList list() {
    std::string data = read_bytes(dir_.file("state/current.bin"));
    ParsedList parsed = parse_binary_list(Bytes(data.begin(), data.end()));
    EXPECT_FALSE(parsed.error) << format_parse_error(*parsed.error);
    return parsed;
  }

  // The file entries as name and sha256 digest in hex, in list order,
  // without boot_aggregate.
  std::vector<std::pair<std::string, std::string>> file_entries() {
    std::vector<std::pair<std::string, std::string>> out;
    for (const auto& entry : list().entries) {
      auto fields = decode_fields(entry);
      EXPECT_TRUE(fields.has_value());
      if (!fields || fields->name == "boot_aggregate") continue;
      out.emplace_back(fields->name, to_hex(fields->file_digest));
    }
    return out;
  }

  // Reads the PCR with tpm2_pcrread and checks the list against it with
  // rotctl verify and evmctl. The daemon must be stopped: swtpm serves one
  // client at a time.
  void verify_against_tpm() {
    auto dump = pcrread(tools_, swtpm_->tcti(), pcr_selection(kFieldBanks, {kFieldPcr}));
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
    auto evmctl = run_command({"evmctl", "ima_measurement", "--ignore-violations", "--pcrs",
                               "sha256," + dir_.file("pcrs.sha256"), dir_.file("state/current.bin")});
    EXPECT_EQ(evmctl.exit_code, 0) << evmctl.out << evmctl.err;
  }

  // A copy of `original` at `path` with `trailer` appended, so that each
  // copy has a digest of its own. ELF loaders and shells ignore the bytes
  // after the end of the program.
  std::string copy_with_trailer(const std::string& original, const std::string& path, const std::string& trailer) {
    std::string content = read_bytes(original) + trailer;
    EXPECT_TRUE(write_executable(path, content)) << path;
    return content;
  }

  TempDir dir_;
  SwtpmTools tools_;
  std::unique_ptr<Swtpm> swtpm_;
  std::string fs_;
  bool mounted_ = false;
  pid_t daemon_ = -1;
};

size_t count_name(const std::vector<std::pair<std::string, std::string>>& entries, const std::string& name) {
  return static_cast<size_t>(std::count_if(entries.begin(), entries.end(), [&](const auto& e) { return e.first == name; }));
}

std::string digest_of(const std::vector<std::pair<std::string, std::string>>& entries, const std::string& name) {
  for (const auto& [entry_name, digest] : entries) {
    if (entry_name == name) return digest;
  }
  return "";
}

// ---------------------------------------------------------------------------
// Names of executed files

TEST_F(FieldCases, ExecThroughLinksNamesTheFileRun) {
  // Each way of naming the program runs a copy of its own. The list must
  // name each copy by its absolute path, with its own digest, once for
  // three runs.
  struct Case {
    std::string program;  // the copy that runs
    std::string cwd;
    std::string run;  // the name given to execve
  };
  std::filesystem::create_directories(fs_ + "/usr/bin");
  std::filesystem::create_directories(fs_ + "/sub");
  std::vector<Case> cases = {
      {fs_ + "/usr/bin/via-symlink", "/", fs_ + "/link"},
      {fs_ + "/usr/bin/via-chain", "/", fs_ + "/chain1"},
      {fs_ + "/usr/bin/via-dotdot", fs_ + "/sub", "../sub/./../usr/bin/via-dotdot"},
      // As /bin is a symlink to usr/bin on Debian 12.
      {fs_ + "/usr/bin/via-bin", "/", fs_ + "/bin/via-bin"},
  };
  ASSERT_EQ(::symlink("usr/bin/via-symlink", (fs_ + "/link").c_str()), 0);
  ASSERT_EQ(::symlink("chain2", (fs_ + "/chain1").c_str()), 0);
  ASSERT_EQ(::symlink((fs_ + "/chain3").c_str(), (fs_ + "/chain2").c_str()), 0);
  ASSERT_EQ(::symlink("usr/bin/via-chain", (fs_ + "/chain3").c_str()), 0);
  ASSERT_EQ(::symlink("usr/bin", (fs_ + "/bin").c_str()), 0);
  std::vector<std::string> contents;
  for (const auto& c : cases) contents.push_back(copy_with_trailer("/bin/true", c.program, "\n" + c.program));

  start_daemon(kExecPolicy);
  for (int run = 0; run < 3; ++run) {
    for (const auto& c : cases) ASSERT_EQ(exec_from(c.cwd, c.run), 0) << c.run << " from " << c.cwd;
  }
  stop_daemon();

  auto entries = file_entries();
  EXPECT_EQ(entries.size(), cases.size());
  for (size_t i = 0; i < cases.size(); ++i) {
    SCOPED_TRACE(cases[i].run);
    EXPECT_EQ(count_name(entries, cases[i].program), 1u);
    EXPECT_EQ(digest_of(entries, cases[i].program), sha256_of(contents[i]));
  }
  verify_against_tpm();
}

// Creates the directories and file of a path of exactly `length` bytes
// under `root`, with components of at most 200 bytes. Returns the path.
std::string make_path_of_length(const std::string& root, size_t length, const std::string& content) {
  std::string path = root;
  // Each step leaves room for a final "/" and a name of at least one byte.
  while (length - path.size() - 1 > 200) {
    path += "/" + std::string(std::min<size_t>(200, length - path.size() - 3), 'd');
    ::mkdir(path.c_str(), 0755);
  }
  path += "/" + std::string(length - path.size() - 1, 'f');
  write_text_file(path, content);
  return path;
}

TEST_F(FieldCases, PathLengthsAreRecordedByteExact) {
  std::vector<std::string> paths;
  for (size_t length : {254, 255, 256, 257, 1024, 4000}) {
    std::string root = fs_ + "/len" + std::to_string(length);
    ::mkdir(root.c_str(), 0755);
    paths.push_back(make_path_of_length(root, length, "length " + std::to_string(length) + "\n"));
    ASSERT_EQ(paths.back().size(), length);
  }
  // A name component of 255 bytes, the longest a filesystem takes.
  paths.push_back(fs_ + "/" + std::string(255, 'n'));
  write_text_file(paths.back(), "long name\n");

  start_daemon("measure func=FILE_CHECK mask=^MAY_READ\n");
  for (const auto& path : paths) {
    ASSERT_EQ(run_child([&] {
      int fd = ::open(path.c_str(), O_RDONLY);
      return fd >= 0 && ::close(fd) == 0 ? 0 : 1;
    }),
              0)
        << path.size() << " bytes";
  }
  stop_daemon();

  auto entries = file_entries();
  EXPECT_EQ(entries.size(), paths.size());
  for (const auto& path : paths) {
    SCOPED_TRACE(std::to_string(path.size()) + " bytes");
    EXPECT_EQ(count_name(entries, path), 1u);
    EXPECT_EQ(digest_of(entries, path), sha256_of(read_bytes(path)));
  }
  verify_against_tpm();
}

TEST_F(FieldCases, PathBeyondPathMaxGivesFinalComponent) {
  // About 4,500 bytes, reached one directory at a time by relative chdir,
  // as no single system call can name it.
  const std::string component(200, 'c');
  const std::string final_name = "beyond-path-max-" + std::string(100, 'z');
  const int depth = 22;
  ASSERT_EQ(run_child([&] {
    if (::chdir(fs_.c_str()) != 0) return 1;
    for (int i = 0; i < depth; ++i) {
      if (::mkdir(component.c_str(), 0755) != 0 || ::chdir(component.c_str()) != 0) return 2;
    }
    int fd = ::open(final_name.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    return fd >= 0 && ::write(fd, "deep\n", 5) == 5 && ::close(fd) == 0 ? 0 : 3;
  }),
            0);
  ASSERT_GT(fs_.size() + depth * (component.size() + 1) + final_name.size() + 1, 4096u);

  start_daemon("measure func=FILE_CHECK mask=^MAY_READ\n");
  ASSERT_EQ(run_child([&] {
    if (::chdir(fs_.c_str()) != 0) return 1;
    for (int i = 0; i < depth; ++i) {
      if (::chdir(component.c_str()) != 0) return 2;
    }
    int fd = ::open(final_name.c_str(), O_RDONLY);
    return fd >= 0 && ::close(fd) == 0 ? 0 : 3;
  }),
            0);
  stop_daemon();

  // The kernel cannot print the path (longer than PATH_MAX), so IMA records
  // the final component, and never a path cut at the front.
  auto entries = file_entries();
  ASSERT_EQ(entries.size(), 1u);
  EXPECT_EQ(entries[0].first, final_name);
  EXPECT_EQ(entries[0].second, sha256_of("deep\n"));
  verify_against_tpm();
}

// ---------------------------------------------------------------------------
// Unlinked files and names that look unlinked

TEST_F(FieldCases, UnlinkedBinariesKeepTheirNameAndDigest) {
  // A shell that removes its own binary right after it starts.
  std::string self_removing = fs_ + "/bin/self-removing";
  std::string shell_content = copy_with_trailer("/bin/dash", self_removing, "");
  // A binary opened, unlinked, then run with fexecve.
  std::string fexecve_victim = fs_ + "/bin/fexecve-victim";
  std::string victim_content = copy_with_trailer("/bin/true", fexecve_victim, "\nfexecve");

  start_daemon(kExecPolicy);
  std::string remove = "/bin/rm -f '" + self_removing + "'";
  ASSERT_EQ(exec_from("/", self_removing, {"-c", remove}), 0);
  ASSERT_NE(::access(self_removing.c_str(), F_OK), 0) << "the shell did not remove itself";
  ASSERT_EQ(run_child([&] {
    int fd = ::open(fexecve_victim.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0 || ::unlink(fexecve_victim.c_str()) != 0) return 8;
    char* argv[] = {const_cast<char*>("victim"), nullptr};
    char* envp[] = {nullptr};
    ::fexecve(fd, argv, envp);
    return 127;
  }),
            0);
  stop_daemon();

  // Kernel IMA names a file by d_absolute_path(), which, unlike d_path(),
  // adds no " (deleted)" suffix to an unlinked file.
  auto entries = file_entries();
  EXPECT_EQ(entries.size(), 2u);
  EXPECT_EQ(digest_of(entries, self_removing), sha256_of(shell_content));
  EXPECT_EQ(digest_of(entries, fexecve_victim), sha256_of(victim_content));
  verify_against_tpm();
}

TEST_F(FieldCases, NamesEndingInDeletedAreKept) {
  // A live file whose name really ends in " (deleted)".
  std::string live = fs_ + "/bin/app (deleted)";
  std::string live_content = copy_with_trailer("/bin/true", live, "\nlive");
  // An unlinked file of that kind of name: only the kernel's suffix goes.
  std::string gone = fs_ + "/bin/gone (deleted)";
  std::string gone_content = copy_with_trailer("/bin/true", gone, "\ngone");

  start_daemon(kExecPolicy);
  ASSERT_EQ(exec_from("/", live), 0);
  ASSERT_EQ(run_child([&] {
    int fd = ::open(gone.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0 || ::unlink(gone.c_str()) != 0) return 8;
    char* argv[] = {const_cast<char*>("gone"), nullptr};
    char* envp[] = {nullptr};
    ::fexecve(fd, argv, envp);
    return 127;
  }),
            0);
  stop_daemon();

  // Kernel IMA writes every space of a name as '_'.
  auto entries = file_entries();
  EXPECT_EQ(entries.size(), 2u);
  EXPECT_EQ(digest_of(entries, fs_ + "/bin/app_(deleted)"), sha256_of(live_content));
  EXPECT_EQ(digest_of(entries, fs_ + "/bin/gone_(deleted)"), sha256_of(gone_content));
  verify_against_tpm();
}

// ---------------------------------------------------------------------------
// Scripts

TEST_F(FieldCases, ScriptsRecordScriptAndInterpreters) {
  std::string shell = fs_ + "/bin/sh";
  std::string shell_content = copy_with_trailer("/bin/dash", shell, "");
  std::string script = fs_ + "/bin/direct.sh";
  ASSERT_TRUE(write_executable(script, "#!" + shell + "\nexit 0\n"));

  // #!/usr/bin/env sh: the script, env, and the sh that env finds in PATH.
  std::string env = fs_ + "/usr/bin/env";
  std::string env_content = copy_with_trailer("/usr/bin/env", env, "");
  std::string path_shell = fs_ + "/pathbin/sh";
  std::string path_shell_content = copy_with_trailer("/bin/dash", path_shell, "\n# found through PATH\n");
  std::string env_script = fs_ + "/bin/through-env.sh";
  ASSERT_TRUE(write_executable(env_script, "#!" + env + " sh\nexit 0\n"));

  start_daemon(kExecPolicy);
  ASSERT_EQ(exec_from("/", script), 0);
  ASSERT_EQ(exec_from("/", env_script, {}, {"PATH=" + fs_ + "/pathbin"}), 0);
  stop_daemon();

  auto entries = file_entries();
  EXPECT_EQ(entries.size(), 5u);
  EXPECT_EQ(count_name(entries, script), 1u);
  EXPECT_EQ(digest_of(entries, shell), sha256_of(shell_content));
  EXPECT_EQ(count_name(entries, env_script), 1u);
  EXPECT_EQ(digest_of(entries, env), sha256_of(env_content));
  EXPECT_EQ(digest_of(entries, path_shell), sha256_of(path_shell_content));
  // The script comes before its interpreter.
  auto position = [&](const std::string& name) {
    return std::find_if(entries.begin(), entries.end(), [&](const auto& e) { return e.first == name; }) -
           entries.begin();
  };
  EXPECT_LT(position(script), position(shell));
  EXPECT_LT(position(env_script), position(env));
  EXPECT_LT(position(env), position(path_shell));
  verify_against_tpm();
}

TEST_F(FieldCases, ScriptWithoutInterpreterLine) {
  std::string read_script = fs_ + "/bin/read-by-shell";
  std::string exec_script = fs_ + "/bin/exec-by-shell";
  ASSERT_TRUE(write_executable(read_script, "exit 0\n"));
  ASSERT_TRUE(write_executable(exec_script, "true\n"));

  start_daemon(kExecPolicy);
  // The shell reads the script itself: nothing is executed.
  ASSERT_EQ(exec_from("/", "/bin/sh", {read_script}), 0);
  // The shell tries execve, which fails with ENOEXEC, and then reads the
  // script itself. The kernel runs BPRM_CHECK before it looks for a binary
  // format (search_binary_handler() calls security_bprm_check() first), so
  // kernel IMA measures the file of that failed exec under its name.
  ASSERT_EQ(exec_from("/", "/bin/sh", {"-c", exec_script}), 0);
  stop_daemon();

  auto entries = file_entries();
  EXPECT_EQ(count_name(entries, read_script), 0u);
  EXPECT_EQ(count_name(entries, exec_script), 1u);
  EXPECT_EQ(digest_of(entries, exec_script), sha256_of("true\n"));
  for (const auto& [name, digest] : entries) EXPECT_FALSE(name.empty()) << "an entry has an empty name";
  EXPECT_EQ(entries.size(), 1u);
  verify_against_tpm();
}

// ---------------------------------------------------------------------------
// Files measured already

TEST_F(FieldCases, MeasuredFilesStillGiveViolations) {
  // Opens of measured, unchanged files are completed from the file's
  // identity before the daemon reads the task. Writers must still be seen.
  std::string tomtou = fs_ + "/tomtou.conf";
  std::string writer = fs_ + "/writer.conf";
  write_text_file(tomtou, "tomtou\n");
  write_text_file(writer, "writer\n");
  auto read_file_once = [](const std::string& path) {
    return run_child([&] {
      int fd = ::open(path.c_str(), O_RDONLY);
      return fd >= 0 && ::close(fd) == 0 ? 0 : 1;
    });
  };

  start_daemon("measure func=FILE_CHECK mask=^MAY_READ\n");
  ASSERT_EQ(read_file_once(tomtou), 0);
  ASSERT_EQ(read_file_once(writer), 0);
  // An open of a file whose entry is not committed yet takes the full path,
  // so the third read waits for the commit.
  wait_for_committed(3);  // boot_aggregate and the two files
  ASSERT_EQ(read_file_once(tomtou), 0);

  // ToMToU: a reader of the measured file keeps it open while a writer opens it.
  pid_t reader = ::fork();
  if (reader == 0) {
    int fd = ::open(tomtou.c_str(), O_RDONLY);
    ::sleep(2);
    ::_exit(fd >= 0 && ::close(fd) == 0 ? 0 : 1);
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  int tomtou_writer = ::open(tomtou.c_str(), O_WRONLY);
  ASSERT_GE(tomtou_writer, 0);
  ::close(tomtou_writer);
  int status = 0;
  ASSERT_EQ(::waitpid(reader, &status, 0), reader);

  // open-writers: the measured file is read while a writer has it open.
  int writer_fd = ::open(writer.c_str(), O_WRONLY);
  ASSERT_GE(writer_fd, 0);
  ASSERT_EQ(read_file_once(writer), 0);
  ::close(writer_fd);

  std::this_thread::sleep_for(std::chrono::milliseconds(700));
  auto daemon_status = nlohmann::json::parse(read_text_file(dir_.file("run/status.json")));
  EXPECT_GT(daemon_status.value("completed_from_identity", 0), 0) << daemon_status.dump();
  stop_daemon();

  ParsedList parsed = list();
  ASSERT_EQ(parsed.entries.size(), 5u);  // boot_aggregate, two files, two violations
  size_t violations = 0;
  for (const auto& entry : parsed.entries) {
    if (!entry.is_violation()) continue;
    ++violations;
    std::string name = decode_fields(entry)->name;
    EXPECT_TRUE(name == tomtou || name == writer) << name;
  }
  EXPECT_EQ(violations, 2u);
  verify_against_tpm();
}

}  // namespace
}  // namespace imarot::test
