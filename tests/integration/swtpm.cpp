#include "swtpm.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <thread>
#include <vector>

#include <fmt/format.h>

namespace imarot::test {
namespace {

#ifndef SWTPM_PATH
#define SWTPM_PATH ""
#endif
#ifndef SWTPM_IOCTL_PATH
#define SWTPM_IOCTL_PATH ""
#endif
#ifndef SWTPM_SETUP_PATH
#define SWTPM_SETUP_PATH ""
#endif
#ifndef TPM2_PCRREAD_PATH
#define TPM2_PCRREAD_PATH ""
#endif
#ifndef TPM2_PCREXTEND_PATH
#define TPM2_PCREXTEND_PATH ""
#endif

bool connect_unix(const std::string& path) {
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  std::snprintf(address.sun_path, sizeof address.sun_path, "%s", path.c_str());
  bool ok = ::connect(fd, reinterpret_cast<const sockaddr*>(&address), sizeof address) == 0;
  ::close(fd);
  return ok;
}

bool connect_tcp(int port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(static_cast<uint16_t>(port));
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bool ok = ::connect(fd, reinterpret_cast<const sockaddr*>(&address), sizeof address) == 0;
  ::close(fd);
  return ok;
}

// A port on 127.0.0.1 that is free now, with the next one free too (swtpm's
// control channel). Another process may still take it before swtpm binds;
// start() then tries again with a new port.
Result<int> free_port_pair() {
  for (int attempt = 0; attempt < 20; ++attempt) {
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t length = sizeof address;
    if (::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0 ||
        ::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) != 0) {
      ::close(fd);
      continue;
    }
    int port = ntohs(address.sin_port);
    ::close(fd);
    if (port >= 65535) continue;

    int next = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    address.sin_port = htons(static_cast<uint16_t>(port + 1));
    bool free = ::bind(next, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0;
    ::close(next);
    if (free) return port;
  }
  return Error{"no free pair of ports on 127.0.0.1"};
}

}  // namespace

Result<SwtpmTools> SwtpmTools::find() {
  SwtpmTools tools;
  tools.swtpm = find_tool("swtpm", SWTPM_PATH);
  tools.swtpm_ioctl = find_tool("swtpm_ioctl", SWTPM_IOCTL_PATH);
  tools.swtpm_setup = find_tool("swtpm_setup", SWTPM_SETUP_PATH);
  tools.tpm2_pcrread = find_tool("tpm2_pcrread", TPM2_PCRREAD_PATH);
  tools.tpm2_pcrextend = find_tool("tpm2_pcrextend", TPM2_PCREXTEND_PATH);
  tools.setpriv = find_tool("setpriv", "");
  std::vector<std::string> missing;
  if (tools.swtpm.empty()) missing.emplace_back("swtpm");
  if (tools.swtpm_ioctl.empty()) missing.emplace_back("swtpm_ioctl");
  if (tools.swtpm_setup.empty()) missing.emplace_back("swtpm_setup");
  if (tools.tpm2_pcrread.empty()) missing.emplace_back("tpm2_pcrread");
  if (tools.tpm2_pcrextend.empty()) missing.emplace_back("tpm2_pcrextend");
  if (!missing.empty()) {
    return Error{fmt::format("the TPM integration tests need {}, which are not installed; install the Debian "
                             "packages swtpm, swtpm-tools and tpm2-tools (scripts/install-deps.sh does)",
                             fmt::join(missing, ", "))};
  }
  return tools;
}

Swtpm::Swtpm(SwtpmTools tools, std::string dir, SwtpmOptions options)
    : tools_(std::move(tools)), dir_(std::move(dir)), state_dir_(dir_ + "/state"), options_(std::move(options)) {}

Swtpm::~Swtpm() { stop(); }

Result<std::unique_ptr<Swtpm>> Swtpm::start(const SwtpmTools& tools, const std::string& dir, SwtpmOptions options) {
  if (dir.empty() || dir.front() != '/') return Error{fmt::format("swtpm state directory '{}' is not absolute", dir)};
  std::unique_ptr<Swtpm> swtpm(new Swtpm(tools, dir, std::move(options)));
  if (::mkdir(swtpm->state_dir_.c_str(), 0700) != 0 && errno != EEXIST) {
    return Error{fmt::format("cannot create '{}': {}", swtpm->state_dir_, std::strerror(errno))};
  }

  if (!swtpm->options_.pcr_banks.empty()) {
    CommandResult setup = run_command({tools.swtpm_setup, "--tpm2", "--tpmstate", swtpm->state_dir_, "--pcr-banks",
                                       swtpm->options_.pcr_banks, "--overwrite"},
                                      std::chrono::seconds(60));
    if (setup.exit_code != 0) {
      return Error{fmt::format("swtpm_setup --pcr-banks {} failed (exit {}): {}{}", swtpm->options_.pcr_banks,
                               setup.exit_code, setup.out, setup.err)};
    }
  }

  // A port found free can be taken by someone else before swtpm binds it.
  for (int attempt = 0;; ++attempt) {
    if (swtpm->options_.tcp) {
      auto port = free_port_pair();
      if (!port) return port.error();
      swtpm->port_ = *port;
    }
    auto launched = swtpm->launch();
    if (launched) return swtpm;
    if (!swtpm->options_.tcp || attempt >= 4) return launched.error();
  }
}

Result<void> Swtpm::launch() {
  std::vector<std::string> argv;
  if (!tools_.setpriv.empty()) argv = {tools_.setpriv, "--pdeathsig", "KILL", "--"};
  argv.insert(argv.end(), {tools_.swtpm, "socket", "--tpm2"});
  if (options_.tcp) {
    argv.push_back("--server");
    argv.push_back(fmt::format("type=tcp,port={},bindaddr=127.0.0.1", port_));
    argv.push_back("--ctrl");
    argv.push_back(fmt::format("type=tcp,port={},bindaddr=127.0.0.1", port_ + 1));
  } else {
    argv.push_back("--server");
    argv.push_back(fmt::format("type=unixio,path={}/sock", dir_));
    argv.push_back("--ctrl");
    // tpm2-tss's swtpm:path=SOCK TCTI expects the control socket at SOCK.ctrl.
    argv.push_back(fmt::format("type=unixio,path={}/sock.ctrl", dir_));
  }
  argv.push_back("--tpmstate");
  argv.push_back(fmt::format("dir={}", state_dir_));
  argv.push_back("--flags");
  argv.push_back("not-need-init,startup-clear");

  auto pid = spawn_logged(argv, dir_ + "/swtpm.log");
  if (!pid) return pid.error();
  pid_ = *pid;
  return wait_ready();
}

Result<void> Swtpm::wait_ready() {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (std::chrono::steady_clock::now() < deadline) {
    if (!child_running(pid_)) {
      pid_ = -1;
      return Error{fmt::format("swtpm exited during start-up; its log '{}/swtpm.log' contains: {}", dir_,
                               read_text_file(dir_ + "/swtpm.log"))};
    }
    bool ready = options_.tcp ? connect_tcp(port_ + 1) && connect_tcp(port_)
                              : connect_unix(dir_ + "/sock.ctrl") && connect_unix(dir_ + "/sock");
    if (ready) return Ok{};
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  stop();
  return Error{fmt::format("swtpm did not accept connections within 10 s; see '{}/swtpm.log'", dir_)};
}

std::string Swtpm::tcti() const {
  if (options_.tcp) return fmt::format("swtpm:host=127.0.0.1,port={}", port_);
  return fmt::format("swtpm:path={}/sock", dir_);
}

Result<void> Swtpm::store_volatile_state() {
  std::vector<std::string> argv = {tools_.swtpm_ioctl};
  if (options_.tcp) {
    argv.push_back("--tcp");
    argv.push_back(fmt::format("127.0.0.1:{}", port_ + 1));
  } else {
    argv.push_back("--unix");
    argv.push_back(dir_ + "/sock.ctrl");
  }
  argv.push_back("-v");
  CommandResult result = run_command(argv, std::chrono::seconds(20));
  if (result.exit_code != 0) {
    return Error{fmt::format("swtpm_ioctl -v failed (exit {}): {}{}", result.exit_code, result.out, result.err)};
  }
  return Ok{};
}

void Swtpm::kill() {
  stop_child(pid_, SIGKILL, std::chrono::seconds(5));
  pid_ = -1;
}

void Swtpm::stop() {
  stop_child(pid_, SIGTERM, std::chrono::seconds(5));
  pid_ = -1;
}

Result<void> Swtpm::restart() {
  if (pid_ > 0) return Error{"swtpm is still running"};
  return launch();
}

bool Swtpm::running() {
  if (pid_ > 0 && !child_running(pid_)) pid_ = -1;
  return pid_ > 0;
}

}  // namespace imarot::test
