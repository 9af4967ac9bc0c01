// Keeps a write to a socket whose peer has gone (a swtpm that was stopped)
// from killing the process with SIGPIPE. tpm2-tss writes with write(2), so
// the TCTI cannot pass MSG_NOSIGNAL; instead SIGPIPE is blocked in the calling
// thread for the duration of a TPM operation, and one raised meanwhile is
// consumed before the mask is restored. The write itself then fails with
// EPIPE, which the TCTI reports as an I/O error.
#pragma once

#include <signal.h>

#include <ctime>

namespace imarot::tpm2 {

class SigpipeGuard {
 public:
  SigpipeGuard() {
    sigemptyset(&pipe_);
    sigaddset(&pipe_, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe_, &saved_);
    // When the thread already blocked SIGPIPE, one raised now stays pending
    // as it would have without this guard. Otherwise none can be pending
    // yet, since it would have been delivered.
    active_ = sigismember(&saved_, SIGPIPE) == 0;
  }

  ~SigpipeGuard() {
    if (!active_) return;
    sigset_t pending;
    sigemptyset(&pending);
    sigpending(&pending);
    if (sigismember(&pending, SIGPIPE) == 1) {
      const timespec no_wait{0, 0};
      sigtimedwait(&pipe_, nullptr, &no_wait);
    }
    pthread_sigmask(SIG_SETMASK, &saved_, nullptr);
  }

  SigpipeGuard(const SigpipeGuard&) = delete;
  SigpipeGuard& operator=(const SigpipeGuard&) = delete;

 private:
  sigset_t pipe_{};
  sigset_t saved_{};
  bool active_ = false;
};

}  // namespace imarot::tpm2
