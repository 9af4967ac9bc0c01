// Rate limit for a log line that an event can repeat without bound.
#pragma once

#include <chrono>
#include <cstdint>
#include <mutex>
#include <utility>

namespace imarotd {

// Passes the first `burst` lines of each interval and counts the rest. An
// interval starts at the first line after the previous one ended. Safe to
// call from several threads.
class LogRateLimit {
 public:
  using Clock = std::chrono::steady_clock;

  struct Decision {
    bool log = false;         // log this line
    uint64_t suppressed = 0;  // lines not logged in the interval that just ended
  };

  LogRateLimit(uint64_t burst, Clock::duration interval) : burst_(burst), interval_(interval) {}

  // Decides on one line at `now`. When it ends an interval in which lines
  // were not logged, the decision carries their count for a summary line.
  Decision admit(Clock::time_point now) {
    std::lock_guard lock(mutex_);
    Decision decision;
    if (logged_ == 0 || now - start_ >= interval_) {
      decision.suppressed = std::exchange(suppressed_, 0);
      start_ = now;
      logged_ = 0;
    }
    if (logged_ < burst_) {
      ++logged_;
      decision.log = true;
    } else {
      ++suppressed_;
    }
    return decision;
  }

  // Returns and clears the count of lines not logged, once their interval
  // has ended at `now` or when `flush` is set (at shutdown); else 0.
  uint64_t take_suppressed(Clock::time_point now, bool flush = false) {
    std::lock_guard lock(mutex_);
    if (!flush && now - start_ < interval_) return 0;
    return std::exchange(suppressed_, 0);
  }

  uint64_t burst() const { return burst_; }
  Clock::duration interval() const { return interval_; }

 private:
  const uint64_t burst_;
  const Clock::duration interval_;
  std::mutex mutex_;
  Clock::time_point start_{};
  uint64_t logged_ = 0;
  uint64_t suppressed_ = 0;
};

}  // namespace imarotd
