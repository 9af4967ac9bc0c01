// The measurement pipeline. Policy, de-duplication and open-writers/ToMToU
// tracking run on the event source's thread, and hashing on a pool of
// threads. One writer thread appends to the durable list, extends the roots
// of trust in list order, and then completes the events.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <unordered_map>
#include <vector>

#include "event.h"
#include "imarot/measurement_list.h"
#include "imarot/policy.h"
#include "fs_names.h"
#include "log_rate_limit.h"
#include "log_store.h"
#include "template_digest_index.h"

namespace imarotd {

// Destination of committed entries once they are durable: the roots of trust
// and anything that publishes the list. Called from the writer thread only.
class CommitTarget {
 public:
  virtual ~CommitTarget() = default;
  // Extends `entries`, whose list indexes start at `first_index`. Returns
  // once each entry is extended or queued for a backend that is down.
  virtual void extend(const std::vector<imarot::Entry>& entries, uint64_t first_index) = 0;
  // The entries are in the list and extended (or queued).
  virtual void committed(const std::vector<imarot::Entry>& entries, uint64_t first_index) { (void)entries, (void)first_index; }
};

struct PipelineOptions {
  imarot::HashAlgo hash_algorithm = imarot::HashAlgo::sha256;
  const imarot::TemplateDescriptor* default_template = nullptr;  // ima-ng when null
  uint32_t default_pcr = 10;
  size_t queue_size = 65536;  // events waiting for a hash thread
  unsigned hash_threads = 0;  // 0: one per online CPU
  size_t max_batch = 256;     // entries per fdatasync
  // How long an entry may wait in the writer's queue for others to share
  // its fdatasync, when no blocked access waits for it.
  std::chrono::microseconds batch_delay{1000};
};

struct PipelineCounters {
  std::atomic<uint64_t> events{0};
  std::atomic<uint64_t> measured{0};     // file entries appended
  std::atomic<uint64_t> violations{0};   // violation entries appended
  std::atomic<uint64_t> lost_events{0};  // events dropped by the source or the queue
  std::atomic<uint64_t> duplicates{0};   // entries equal to one already in the list
  std::atomic<uint64_t> cached{0};       // events for files measured and unchanged
  // Accesses completed from the file's identity alone (complete_cached()),
  // before the source read anything about the task.
  std::atomic<uint64_t> completed_from_identity{0};
  std::atomic<uint64_t> append_failures{0};
};

class Pipeline : public EventSink {
 public:
  Pipeline(PipelineOptions options, std::shared_ptr<const imarot::Policy> policy, LogStore& log,
           CommitTarget& target);
  ~Pipeline() override;
  Pipeline(const Pipeline&) = delete;
  Pipeline& operator=(const Pipeline&) = delete;

  void start();
  // Finishes every event already submitted, then stops the threads.
  void stop();

  void submit(FileEvent event) override;
  bool complete_cached(const CachedAccessProbe& probe) override;

  // Appends a boot_aggregate or other entry built by the caller, in order
  // with the measurements.
  void submit_entry(imarot::Entry entry);

  void set_policy(std::shared_ptr<const imarot::Policy> policy);
  const PipelineCounters& counters() const { return counters_; }

  // Blocks until every event submitted so far is committed (tests, drain).
  void wait_idle();

  // Logs how many violations were not logged because of the rate limit,
  // once their interval has ended or when `flush` is set. The daemon calls
  // it from its timer and at shutdown.
  void log_suppressed_violations(bool flush = false);

 private:
  // Key of the measured-file cache, 16 bytes. Linux device numbers fit in
  // 32 bits (a 12-bit major and a 20-bit minor number, as stat() returns them).
  struct FileKey {
    ino_t ino = 0;
    uint32_t dev = 0;
    uint32_t pcr = 0;
    FileKey() = default;
    FileKey(dev_t device, ino_t inode, uint32_t register_index)
        : ino(inode), dev(static_cast<uint32_t>(device)), pcr(register_index) {}
    bool operator==(const FileKey&) const = default;
  };
  struct FileKeyHash {
    size_t operator()(const FileKey& key) const noexcept {
      return std::hash<uint64_t>()(key.ino * 0x9e3779b97f4a7c15ULL ^ (uint64_t{key.dev} << 32 | key.pcr));
    }
  };
  struct FileState;
  struct InodeState;
  struct HashJob;
  struct WriterItem;
  struct TaskFreeRules;
  struct CachedDecision;

  static std::shared_ptr<const TaskFreeRules> build_task_free_rules(const imarot::Policy& policy);
  std::optional<CachedDecision> decide_without_task(const TaskFreeRules& rules, Hook hook, uint32_t mask,
                                                    const FileIdentity& file) const;

  // The filesystem type name of `file` for fsname= rules.
  std::string fsname_of(const FileIdentity& file) const;
  void intake(FileEvent event);
  void hash_loop();
  void writer_loop(std::promise<void>& started);
  void push_writer(WriterItem item);
  uint64_t accept_item();
  void record_violation(const FileEvent& event, uint32_t pcr, const imarot::TemplateDescriptor& tmpl,
                        const std::string& cause);
  void record_lost(uint64_t count, const std::string& reason);
  void log_suppressed_count(uint64_t count);
  WriterItem hash_file(HashJob& job);
  // Returns the batch's entries without its duplicates, and the key of
  // each returned entry that is not a violation in `keys`, in order.
  std::vector<imarot::Entry> drop_duplicates(const std::vector<WriterItem>& batch, TemplateDigestIndex& present,
                                             std::vector<RecordKey>& keys);
  // Appends `entries` to the list, retrying with a backoff of up to 5 s
  // until the append succeeds. Returns each record's byte offset.
  std::vector<uint64_t> append_until_durable(const std::vector<imarot::Entry>& entries);
  void wait_for_batch(std::map<uint64_t, WriterItem>& waiting, uint64_t expected);
  void commit_batch(std::vector<WriterItem>& batch);

  PipelineOptions options_;
  LogStore& log_;
  CommitTarget& target_;
  PipelineCounters counters_;
  // Violation log lines, at most 10 a minute. A workload can repeat a
  // violation without bound, and each one has its own entry in the list.
  LogRateLimit violation_log_limit_{10, std::chrono::minutes(1)};

  std::mutex policy_mutex_;
  std::shared_ptr<const imarot::Policy> policy_;
  mutable FilesystemNames fs_names_;
  // policy_'s measure-class rules for decisions made without the task, as
  // complete_cached() makes them.
  std::shared_ptr<const TaskFreeRules> task_free_rules_;

  // Intake state, guarded by state_mutex_: what was measured, what is being
  // hashed, who has each file open.
  std::mutex state_mutex_;
  std::unordered_map<FileKey, FileState, FileKeyHash> files_;
  // Blocked accesses waiting for a measurement in flight, by file.
  std::unordered_map<FileKey, std::vector<Completion>, FileKeyHash> waiters_;
  std::map<std::pair<dev_t, ino_t>, InodeState> inodes_;

  std::mutex hash_mutex_;
  std::condition_variable hash_ready_;
  std::condition_variable hash_space_;
  std::deque<HashJob> hash_queue_;
  uint64_t queue_overflow_ = 0;  // events dropped since the last lost-events entry

  std::mutex writer_mutex_;
  std::condition_variable writer_ready_;
  std::condition_variable writer_idle_;
  std::deque<WriterItem> writer_queue_;
  uint64_t in_flight_ = 0;  // submitted but not yet committed
  // Entries are appended in the order their events arrived, whichever hash
  // finishes first: each item gets the next sequence number when it is
  // accepted, and the writer appends them in that order.
  uint64_t next_sequence_ = 0;

  bool stopping_ = false;
  std::vector<std::thread> hash_threads_;
  std::thread writer_thread_;
};

}  // namespace imarotd
