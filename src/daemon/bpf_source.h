// The eBPF LSM event source: LSM programs (bpf/imarotd.bpf.c) report exec,
// executable mappings, opens and kernel file loads through a ring buffer,
// after in-kernel filters derived from the policy.
#pragma once

#include <sys/types.h>

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "event.h"
#include "imarot/policy.h"
#include "imarot/result.h"

struct imarotd_access_record;
struct imarotd_close_record;

namespace imarotd {

// The part of the policy the programs decide in the kernel. Every field
// errs towards sending: an event the filter passes may still not be
// measured, but one it drops could never be.
struct BpfFilter {
  struct UidRange {
    uint32_t first = 0;
    uint32_t last = 0;  // inclusive
    bool operator==(const UidRange&) const = default;
  };
  static constexpr size_t kMaxUidRanges = 4;

  uint32_t hooks = 0;  // bit (1 << Hook) set: the hook can reach a measure rule
  // Per hook: the task uids a measure rule can match, empty for every uid.
  std::array<std::vector<UidRange>, 9> uid_ranges;
  // Per hook: bit m set when a measure rule can match an access of mask m
  // (kMay* bits); every bit for a hook whose rules have no mask= condition.
  std::array<uint16_t, 9> masks{};
  // s_magic values of filesystems no measure rule can match.
  std::vector<uint64_t> ignored_fsmagic;
  // The in-kernel measured cache is used only when every measure rule
  // extends one PCR, because it is keyed by inode alone while the pipeline
  // measures a file once per PCR.
  bool use_cache = false;
};

// Derives the in-kernel filter from `policy`, with `default_pcr` for rules
// without pcr=.
BpfFilter derive_bpf_filter(const imarot::Policy& policy, uint32_t default_pcr);

struct BpfSourceOptions {
  BpfFilter filter;
  size_t ring_buffer_bytes = 8u << 20;  // rounded up to a power of two of at least one page
  bool use_cache = true;                // false: every access crosses the ring buffer
  // The process (thread-group id) whose accesses the programs skip; 0 for
  // this process, so the daemon's own opens for hashing are no events.
  pid_t ignored_tgid = 0;
  // false: load the maps without the programs, for tests on kernels that
  // refuse LSM programs. attach() then attaches nothing.
  bool load_programs = true;
};

// Counters the programs keep in the kernel (per-CPU, summed).
struct BpfKernelCounters {
  uint64_t sent = 0;
  uint64_t lost = 0;         // access records dropped with the ring buffer full
  uint64_t lost_closes = 0;  // close records dropped with the ring buffer full
  uint64_t cached = 0;       // accesses the measured map kept back
  uint64_t filtered = 0;     // accesses the hook, uid or fsmagic filter dropped
  uint64_t untracked = 0;    // opens whose close cannot be reported (open_files full)
};

// Converts one access record to a FileEvent without opening the file: the
// path as kernel IMA names it, the identity in user-space encoding, and the
// task. Exposed for tests.
FileEvent decode_access_record(const imarotd_access_record& record);
FileEvent decode_close_record(const imarotd_close_record& record);

// Loads and runs the programs. The phases run in order, each once:
//   open()      parses the embedded object (no kernel contact but BTF);
//   configure() sizes the ring buffer;
//   load()      loads programs and maps into the kernel (the verifier runs);
//   attach()    attaches the LSM programs, so records start to arrive;
//   start()     reads the ring buffer on a thread of its own.
// Each phase returns an error that names the phase and the kernel's reason.
// The caller then falls back to fanotify.
//
// Every access record becomes a FileEvent with kind access. The source opens
// the file by its path, checks dev, ino and generation, and passes the
// descriptor; when that fails it tries /proc/<tgid>/exe (exec) or
// /proc/<tgid>/map_files (mprotect), and otherwise passes no descriptor so
// the pipeline's own open and check decide. Closes of opens it reported
// become write_close or read_close, and ring buffer overflow (counted in the
// kernel) becomes a lost event.
class BpfSource final : public EventSource {
 public:
  explicit BpfSource(BpfSourceOptions options);
  ~BpfSource() override;
  BpfSource(const BpfSource&) = delete;
  BpfSource& operator=(const BpfSource&) = delete;

  std::string name() const override { return "bpf"; }

  imarot::Result<void> open();
  imarot::Result<void> configure();
  imarot::Result<void> load();
  imarot::Result<void> attach();

  // Runs the phases not yet run, then starts the reader.
  imarot::Result<void> start(EventSink& sink) override;
  // Detaches the programs and stops the reader after it delivered what the
  // ring buffer holds.
  void stop() override;
  const EventSourceStats& stats() const override { return stats_; }

  // Replaces the in-kernel filter with one derived from `policy`.
  imarot::Result<void> policy_changed(const imarot::Policy& policy) override;
  // Replaces the in-kernel filter. Only after load().
  imarot::Result<void> set_filter(const BpfFilter& filter);

  BpfKernelCounters kernel_counters() const;
  // Size of the ring buffer after configure(), in bytes.
  size_t ring_buffer_bytes() const;
  // Records the inode as measured in the in-kernel cache (tests; the source
  // does it itself through FileEvent::measured).
  imarot::Result<void> mark_measured(const FileIdentity& file);
  // Reads the in-kernel cache entry of an inode: its change counter and
  // generation, or an error when there is none.
  imarot::Result<std::pair<uint64_t, uint32_t>> lookup_measured(dev_t dev, ino_t ino) const;

  // Checks that /sys/kernel/security/lsm lists "bpf". The error states why not.
  static imarot::Result<void> probe_bpf_lsm(const std::string& lsm_path = "/sys/kernel/security/lsm");

 private:
  struct Skeleton;
  class Reader;

  void skip_missing_hooks();

  BpfSourceOptions options_;
  EventSourceStats stats_;
  std::unique_ptr<Skeleton> skeleton_;
  std::unique_ptr<Reader> reader_;
  std::thread thread_;
  int phase_ = 0;  // phases completed: 1 open, 2 configure, 3 load, 4 attach
};

}  // namespace imarotd
