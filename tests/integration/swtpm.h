// A swtpm TPM 2.0 emulator run by a test: its own state directory, a unix
// socket (or a 127.0.0.1 port) in a temporary directory, stopped by pid.
//
// PCRs are volatile TPM state, which a killed swtpm loses. To keep them
// across a restart, store_volatile_state() sends CMD_STORE_VOLATILE over the
// control channel (swtpm_ioctl -v), and swtpm writes tpm2-00.volatilestate
// into its state directory. A swtpm started on that directory resumes from
// the file, and its startup-clear flag then leaves the PCRs as they were.
// swtpm 0.7 keeps the file after resuming, so a later restart without a new
// store resumes the same older state.
#pragma once

#include <sys/types.h>

#include <memory>
#include <string>

#include "imarot/result.h"
#include "process.h"

namespace imarot::test {

struct SwtpmTools {
  std::string swtpm;
  std::string swtpm_ioctl;
  std::string swtpm_setup;
  std::string tpm2_pcrread;
  std::string tpm2_pcrextend;
  // util-linux setpriv, when installed: swtpm is started through it with a
  // parent-death signal, so an emulator does not outlive a test process that
  // crashed or was killed by a timeout. The signal follows the thread that
  // started swtpm, so start it from a thread that outlives it.
  std::string setpriv;

  // Locates the tools; the error names those missing and how to install them.
  static Result<SwtpmTools> find();
};

struct SwtpmOptions {
  // Banks to allocate with swtpm_setup --pcr-banks, such as "sha1,sha256";
  // empty keeps swtpm's default of sha1, sha256, sha384 and sha512.
  std::string pcr_banks;
  // Serve on 127.0.0.1 ports instead of a unix socket.
  bool tcp = false;
};

class Swtpm {
 public:
  // Starts swtpm with its state under `dir`, which must exist and be
  // absolute, and waits until it accepts connections.
  static Result<std::unique_ptr<Swtpm>> start(const SwtpmTools& tools, const std::string& dir, SwtpmOptions options);

  Swtpm(const Swtpm&) = delete;
  Swtpm& operator=(const Swtpm&) = delete;
  ~Swtpm();

  // The TCTI string for tpm2-tss and tpm2-tools.
  std::string tcti() const;
  pid_t pid() const { return pid_; }
  const std::string& state_dir() const { return state_dir_; }

  Result<void> store_volatile_state();
  // SIGKILL, as a crash.
  void kill();
  // SIGTERM, then SIGKILL if it does not exit.
  void stop();
  // Starts swtpm again on the same state directory and socket.
  Result<void> restart();
  // Reaps swtpm if it has exited, so its pid is never signalled after reuse.
  bool running();

 private:
  Swtpm(SwtpmTools tools, std::string dir, SwtpmOptions options);
  Result<void> launch();
  Result<void> wait_ready();

  SwtpmTools tools_;
  std::string dir_;
  std::string state_dir_;
  SwtpmOptions options_;
  int port_ = 0;
  pid_t pid_ = -1;
};

}  // namespace imarot::test
