#include "pipeline.h"

#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>

#include <fcntl.h>
#include <fmt/format.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <spdlog/spdlog.h>

namespace imarotd {
namespace {

// The query for an access without the task's credentials, which stay 0.
// `fsname` is the filesystem's type name, or "" when no rule compares it.
imarot::PolicyQuery make_file_query(Hook hook, uint32_t mask, const FileIdentity& file, std::string fsname) {
  imarot::PolicyQuery query;
  query.fsname = std::move(fsname);
  query.func = policy_func(hook);
  query.mask = mask;
  query.fowner = file.owner;
  query.fgroup = file.group;
  query.fsmagic = file.fsmagic;
  if (file.fs_uuid) query.fsuuid = *file.fs_uuid;
  return query;
}

imarot::PolicyQuery make_query(const FileEvent& event, std::string fsname) {
  imarot::PolicyQuery query = make_file_query(event.hook, event.mask, event.file, std::move(fsname));
  query.uid = event.creds.uid;
  query.euid = event.creds.euid;
  query.suid = event.creds.suid;
  query.gid = event.creds.gid;
  query.egid = event.creds.egid;
  query.sgid = event.creds.sgid;
  query.cap_setuid = event.creds.cap_setuid;
  query.cap_setgid = event.creds.cap_setgid;
  return query;
}

bool violation_hook(Hook hook) {
  return hook == Hook::file_check || hook == Hook::mmap_check || hook == Hook::mmap_check_reqprot;
}

void complete(Completion& completion) {
  if (completion) {
    completion();
    completion = nullptr;
  }
}

std::string final_component(const std::string& path) {
  size_t slash = path.rfind('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

imarot::Bytes read_xattr(int fd, const char* name) {
  imarot::Bytes value(1024);
  for (;;) {
    ssize_t n = ::fgetxattr(fd, name, value.data(), value.size());
    if (n >= 0) {
      value.resize(static_cast<size_t>(n));
      return value;
    }
    if (errno != ERANGE) return {};
    ssize_t size = ::fgetxattr(fd, name, nullptr, 0);
    if (size <= 0 || size > 65536) return {};
    value.resize(static_cast<size_t>(size));
  }
}

bool same_content_state(const struct stat& a, const struct stat& b) {
  bool same_ctime = a.st_ctim.tv_sec == b.st_ctim.tv_sec && a.st_ctim.tv_nsec == b.st_ctim.tv_nsec;
  // An unlink or link while the file is hashed changes ctime and the link
  // count but not the content, as when a program is unlinked right after
  // it starts.
  // NOTE: a write that also resets mtime and changes the link count at
  // once passes this check.
  bool only_links_changed = a.st_nlink != b.st_nlink;
  return a.st_size == b.st_size && a.st_mtim.tv_sec == b.st_mtim.tv_sec && a.st_mtim.tv_nsec == b.st_mtim.tv_nsec &&
         (same_ctime || only_links_changed);
}

}  // namespace

// One entry of the measured-file cache, 16 bytes. With the key, the hash
// table's node and its bucket, a measured file takes about 56 bytes (an
// estimate from the type sizes and glibc's 16-byte malloc granularity).
struct Pipeline::FileState {
  uint64_t measured_counter = 0;
  uint32_t measured_generation = 0;
  bool measured = false;
  bool in_flight = false;  // waiters_ may hold accesses that wait for it
};

struct Pipeline::InodeState {
  uint32_t writers = 0;
  uint32_t readers = 0;
  bool must_measure = false;  // a reader opened it under a measure rule (IMA_MUST_MEASURE)
  bool open_writers_reported = false;
  bool tomtou_reported = false;
  uint32_t pcr = 10;
  const imarot::TemplateDescriptor* tmpl = nullptr;
};

struct Pipeline::TaskFreeRules {
  struct Rule {
    imarot::PolicyRule conditions;  // the rule without uid=, euid=, gid= and egid=
    bool task_dependent = false;    // the rule had one of those conditions
  };
  std::vector<Rule> rules;  // measure and dont_measure rules, in policy order
  bool uses_fsname = false;  // some rule has fsname=
};

struct Pipeline::CachedDecision {
  bool measure = false;
  uint32_t pcr = 10;
  const imarot::TemplateDescriptor* tmpl = nullptr;
};

struct Pipeline::HashJob {
  uint64_t sequence = 0;
  FileEvent event;
  FileKey key{};
  uint32_t pcr = 10;
  const imarot::TemplateDescriptor* tmpl = nullptr;
  imarot::PolicyDigestType digest_type = imarot::PolicyDigestType::ima;
};

struct Pipeline::WriterItem {
  uint64_t sequence = 0;
  std::optional<imarot::Entry> entry;
  std::optional<FileKey> key;  // the file this measures, for the measured cache
  bool measured = false;       // false after a failure: the next access tries again
  uint64_t counter = 0;
  uint32_t generation = 0;
  Completion completion;
  std::function<void()> on_measured;  // the event's, called once the entry is committed
  std::chrono::steady_clock::time_point queued;  // when it reached the writer's queue
};

Pipeline::Pipeline(PipelineOptions options, std::shared_ptr<const imarot::Policy> policy, LogStore& log,
                   CommitTarget& target)
    : options_(options), log_(log), target_(target), policy_(std::move(policy)) {
  if (options_.default_template == nullptr) options_.default_template = imarot::find_builtin_template("ima-ng");
  if (options_.hash_threads == 0) options_.hash_threads = std::max(1u, std::thread::hardware_concurrency());
  if (policy_) task_free_rules_ = build_task_free_rules(*policy_);
}

Pipeline::~Pipeline() { stop(); }

void Pipeline::start() {
  stopping_ = false;
  for (unsigned i = 0; i < options_.hash_threads; ++i) hash_threads_.emplace_back([this] { hash_loop(); });
  // The writer reads the list's loaded entries before it runs; start()
  // returns only after that, so the caller may then release them.
  std::promise<void> writer_started;
  std::future<void> started = writer_started.get_future();
  writer_thread_ = std::thread([this, &writer_started] { writer_loop(writer_started); });
  started.wait();
}

void Pipeline::stop() {
  if (!writer_thread_.joinable()) return;
  {
    std::lock_guard lock(hash_mutex_);
    if (queue_overflow_ > 0) {
      uint64_t count = std::exchange(queue_overflow_, 0);
      record_lost(count, "event queue full");
    }
  }
  wait_idle();
  {
    std::lock_guard lock(hash_mutex_);
    std::lock_guard writer_lock(writer_mutex_);
    stopping_ = true;
  }
  hash_ready_.notify_all();
  hash_space_.notify_all();
  writer_ready_.notify_all();
  for (auto& thread : hash_threads_) thread.join();
  hash_threads_.clear();
  writer_thread_.join();
}

std::string Pipeline::fsname_of(const FileIdentity& file) const { return fs_names_.name_of(file.dev, file.fsmagic); }

void Pipeline::set_policy(std::shared_ptr<const imarot::Policy> policy) {
  std::shared_ptr<const TaskFreeRules> rules = policy ? build_task_free_rules(*policy) : nullptr;
  std::lock_guard lock(policy_mutex_);
  policy_ = std::move(policy);
  task_free_rules_ = std::move(rules);
}

std::shared_ptr<const Pipeline::TaskFreeRules> Pipeline::build_task_free_rules(const imarot::Policy& policy) {
  auto index = std::make_shared<TaskFreeRules>();
  for (const auto& rule : policy.rules) {
    if (imarot::action_class(rule.action) != imarot::ActionClass::measure) continue;
    TaskFreeRules::Rule stripped{rule, false};
    stripped.task_dependent = rule.uid || rule.euid || rule.gid || rule.egid;
    stripped.conditions.uid.reset();
    stripped.conditions.euid.reset();
    stripped.conditions.gid.reset();
    stripped.conditions.egid.reset();
    if (rule.fsname) index->uses_fsname = true;
    index->rules.push_back(std::move(stripped));
  }
  return index;
}

// A rule whose conditions without the task ones do not match cannot match
// for any task. So the first rule that does match decides the class alone
// when it has no task conditions. When it has some, the decision depends on
// the task.
std::optional<Pipeline::CachedDecision> Pipeline::decide_without_task(const TaskFreeRules& rules, Hook hook,
                                                                       uint32_t mask,
                                                                       const FileIdentity& file) const {
  const imarot::PolicyQuery query = make_file_query(hook, mask, file, rules.uses_fsname ? fsname_of(file) : "");

  CachedDecision decision;
  decision.pcr = options_.default_pcr;
  decision.tmpl = options_.default_template;
  for (const auto& rule : rules.rules) {
    if (!imarot::rule_matches(rule.conditions, query)) continue;
    if (rule.task_dependent) return std::nullopt;
    decision.measure = imarot::is_positive_action(rule.conditions.action);
    decision.pcr = rule.conditions.pcr.value_or(options_.default_pcr);
    if (rule.conditions.tmpl != nullptr) decision.tmpl = rule.conditions.tmpl;
    break;
  }
  return decision;
}

bool Pipeline::complete_cached(const CachedAccessProbe& probe) {
  if (probe.hook_count == 0 || probe.hook_count > probe.hooks.size() || !S_ISREG(probe.file.mode)) return false;
  // Only one hook can take the reader bookkeeping below.
  if (probe.counts_reader && probe.hook_count != 1) return false;

  std::shared_ptr<const TaskFreeRules> rules;
  {
    std::lock_guard lock(policy_mutex_);
    rules = task_free_rules_;
  }
  if (!rules) return false;

  std::array<CachedDecision, 2> decisions;
  for (size_t i = 0; i < probe.hook_count; ++i) {
    auto decision = decide_without_task(*rules, probe.hooks[i], probe.mask, probe.file);
    if (!decision) return false;
    decisions[i] = *decision;
  }

  const auto inode_key = std::make_pair(probe.file.dev, probe.file.ino);
  std::lock_guard state(state_mutex_);
  auto inode = inodes_.find(inode_key);
  const uint32_t writers = inode == inodes_.end() ? 0 : inode->second.writers;
  bool measured = false;
  for (size_t i = 0; i < probe.hook_count; ++i) {
    const CachedDecision& decision = decisions[i];
    if (!decision.measure) continue;
    // An open-writers violation may be due: intake() decides it.
    if (writers > 0 && violation_hook(probe.hooks[i])) return false;
    auto file = files_.find(FileKey{probe.file.dev, probe.file.ino, decision.pcr});
    if (file == files_.end()) return false;
    const FileState& state_of_file = file->second;
    if (state_of_file.in_flight || !state_of_file.measured ||
        state_of_file.measured_counter != probe.file.change_counter ||
        state_of_file.measured_generation != probe.file.generation) {
      return false;
    }
    measured = true;
  }

  // The reader bookkeeping intake() does for an open for reading.
  if (probe.counts_reader && violation_hook(probe.hooks[0])) {
    InodeState& reader = inodes_[inode_key];
    ++reader.readers;
    if (decisions[0].measure) {
      reader.must_measure = true;
      reader.pcr = decisions[0].pcr;
      reader.tmpl = decisions[0].tmpl;
    }
  }
  counters_.events.fetch_add(1, std::memory_order_relaxed);
  counters_.completed_from_identity.fetch_add(1, std::memory_order_relaxed);
  if (measured) counters_.cached.fetch_add(1, std::memory_order_relaxed);
  return true;
}

void Pipeline::wait_idle() {
  std::unique_lock lock(writer_mutex_);
  writer_idle_.wait(lock, [this] { return in_flight_ == 0; });
}

void Pipeline::submit(FileEvent event) {
  counters_.events.fetch_add(1, std::memory_order_relaxed);
  intake(std::move(event));
}

uint64_t Pipeline::accept_item() {
  std::lock_guard lock(writer_mutex_);
  ++in_flight_;
  return next_sequence_++;
}

void Pipeline::submit_entry(imarot::Entry entry) {
  WriterItem item;
  item.entry = std::move(entry);
  item.sequence = accept_item();
  push_writer(std::move(item));
}

void Pipeline::push_writer(WriterItem item) {
  item.queued = std::chrono::steady_clock::now();
  {
    std::lock_guard lock(writer_mutex_);
    writer_queue_.push_back(std::move(item));
  }
  writer_ready_.notify_one();
}

void Pipeline::record_violation(const FileEvent& event, uint32_t pcr, const imarot::TemplateDescriptor& tmpl,
                                const std::string& cause) {
  imarot::TemplateInput input;
  input.digest_algo = options_.hash_algorithm;
  input.name = event.path;
  input.final_component = final_component(event.path);
  input.violation = true;
  auto entry = imarot::make_entry(pcr, tmpl, input);
  if (!entry) {
    spdlog::error("cannot build the {} violation entry for '{}': {}", cause, event.path, entry.error().message);
    return;
  }
  auto decision = violation_log_limit_.admit(LogRateLimit::Clock::now());
  if (decision.suppressed > 0) log_suppressed_count(decision.suppressed);
  if (decision.log) spdlog::info("{} violation on '{}' (pid {}, {})", cause, event.path, event.pid, event.comm);
  submit_entry(std::move(*entry));
}

void Pipeline::log_suppressed_violations(bool flush) {
  uint64_t count = violation_log_limit_.take_suppressed(LogRateLimit::Clock::now(), flush);
  if (count > 0) log_suppressed_count(count);
}

void Pipeline::log_suppressed_count(uint64_t count) {
  auto seconds = std::chrono::duration_cast<std::chrono::seconds>(violation_log_limit_.interval()).count();
  spdlog::info("{} more violations were not logged (at most {} are logged every {} s); each one is in the "
               "measurement list and in the \"violations\" count of status.json",
               count, violation_log_limit_.burst(), seconds);
}

void Pipeline::record_lost(uint64_t count, const std::string& reason) {
  counters_.lost_events.fetch_add(count, std::memory_order_relaxed);
  imarot::TemplateInput input;
  input.digest_algo = options_.hash_algorithm;
  input.name = fmt::format("[imarotd] {} events lost: {}", count, reason);
  input.violation = true;
  auto entry = imarot::make_entry(options_.default_pcr, *options_.default_template, input);
  if (!entry) return;
  spdlog::warn("{} file events lost ({}); recorded as a violation entry", count, reason);
  submit_entry(std::move(*entry));
}

void Pipeline::intake(FileEvent event) {
  if (event.kind == EventKind::lost) {
    record_lost(std::max<uint64_t>(event.lost_count, 1), event.lost_reason);
    complete(event.completion);
    return;
  }

  std::shared_ptr<const imarot::Policy> policy;
  {
    std::lock_guard lock(policy_mutex_);
    policy = policy_;
  }

  const auto inode_key = std::make_pair(event.file.dev, event.file.ino);
  const bool opens_for_write =
      event.kind == EventKind::write_open || (event.kind == EventKind::access && event.write_access);

  std::unique_lock state(state_mutex_);
  switch (event.kind) {
    case EventKind::write_close:
    case EventKind::read_close: {
      auto it = inodes_.find(inode_key);
      if (it != inodes_.end()) {
        InodeState& inode = it->second;
        if (event.kind == EventKind::write_close) {
          inode.writers = inode.writers > 0 ? inode.writers - 1 : 0;
          if (inode.writers == 0) inode.open_writers_reported = false;
        } else {
          inode.readers = inode.readers > 0 ? inode.readers - 1 : 0;
          if (inode.readers == 0) {
            inode.must_measure = false;
            inode.tomtou_reported = false;
          }
        }
        if (inode.writers == 0 && inode.readers == 0) inodes_.erase(it);
      }
      state.unlock();
      complete(event.completion);
      return;
    }
    case EventKind::write_open:
    case EventKind::access:
    case EventKind::lost:
      break;
  }

  // ToMToU: a write open of a file that a measured reader has open.
  if (opens_for_write) {
    InodeState& inode = inodes_[inode_key];
    if (inode.readers > 0 && inode.must_measure && !inode.tomtou_reported) {
      inode.tomtou_reported = true;
      record_violation(event, inode.pcr, inode.tmpl != nullptr ? *inode.tmpl : *options_.default_template, "ToMToU");
    }
    ++inode.writers;
  }
  if (event.kind == EventKind::write_open) {
    state.unlock();
    complete(event.completion);
    return;
  }

  if (!S_ISREG(event.file.mode)) {
    state.unlock();
    complete(event.completion);
    return;
  }

  bool uses_fsname = std::any_of(policy->rules.begin(), policy->rules.end(),
                                 [](const imarot::PolicyRule& rule) { return rule.fsname.has_value(); });
  imarot::PolicyDecision decision =
      imarot::match_policy(*policy, make_query(event, uses_fsname ? fsname_of(event.file) : ""));
  uint32_t pcr = decision.pcr.value_or(options_.default_pcr);
  const imarot::TemplateDescriptor* tmpl = decision.tmpl != nullptr ? decision.tmpl : options_.default_template;

  if (!opens_for_write && violation_hook(event.hook)) {
    InodeState& inode = inodes_[inode_key];
    ++inode.readers;
    if (decision.measure) {
      inode.must_measure = true;
      inode.pcr = pcr;
      inode.tmpl = tmpl;
      // open-writers: read under a measure rule while a writer has it open.
      if (inode.writers > 0 && !inode.open_writers_reported) {
        inode.open_writers_reported = true;
        record_violation(event, pcr, *tmpl, "open_writers");
      }
    }
  }

  if (!decision.measure) {
    state.unlock();
    complete(event.completion);
    return;
  }

  FileKey key{event.file.dev, event.file.ino, pcr};
  // Elements of an unordered_map keep their address when it rehashes.
  FileState& file = files_[key];
  if (file.in_flight) {
    // Measured already by an event ahead of this one; a blocked access
    // waits for that measurement.
    if (event.completion) waiters_[key].push_back(std::move(event.completion));
    counters_.cached.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  if (file.measured && file.measured_counter == event.file.change_counter &&
      file.measured_generation == event.file.generation) {
    counters_.cached.fetch_add(1, std::memory_order_relaxed);
    state.unlock();
    if (event.on_measured) event.on_measured();
    complete(event.completion);
    return;
  }
  file.in_flight = true;
  state.unlock();

  HashJob job;
  job.key = key;
  job.pcr = pcr;
  job.tmpl = tmpl;
  job.digest_type = decision.digest_type;
  job.event = std::move(event);

  std::unique_lock queue(hash_mutex_);
  if (hash_queue_.size() >= options_.queue_size) {
    // Drop rather than stall the event source; the loss becomes a
    // violation entry once the queue has room again.
    ++queue_overflow_;
    queue.unlock();
    {
      std::lock_guard relock(state_mutex_);
      file.in_flight = false;
      if (auto waiting = waiters_.find(key); waiting != waiters_.end()) {
        for (auto& waiter : waiting->second) complete(waiter);
        waiters_.erase(waiting);
      }
    }
    complete(job.event.completion);
    return;
  }
  if (queue_overflow_ > 0) {
    uint64_t count = std::exchange(queue_overflow_, 0);
    queue.unlock();
    record_lost(count, "event queue full");
    queue.lock();
  }
  job.sequence = accept_item();
  hash_queue_.push_back(std::move(job));
  queue.unlock();
  hash_ready_.notify_one();
}

void Pipeline::hash_loop() {
  for (;;) {
    HashJob job;
    {
      std::unique_lock lock(hash_mutex_);
      hash_ready_.wait(lock, [this] { return stopping_ || !hash_queue_.empty(); });
      if (hash_queue_.empty()) return;
      job = std::move(hash_queue_.front());
      hash_queue_.pop_front();
    }
    push_writer(hash_file(job));
  }
}

Pipeline::WriterItem Pipeline::hash_file(HashJob& job) {
  FileEvent& event = job.event;
  WriterItem item;
  item.sequence = job.sequence;
  item.key = job.key;
  item.counter = event.file.change_counter;
  item.generation = event.file.generation;
  item.completion = std::move(event.completion);
  item.on_measured = std::move(event.on_measured);

  imarot::TemplateInput input;
  input.digest_algo = options_.hash_algorithm;
  input.digest_type = job.digest_type == imarot::PolicyDigestType::verity ? "verity" : "ima";
  input.name = event.path;
  input.final_component = final_component(event.path);
  input.uid = event.file.owner;
  input.gid = event.file.group;
  input.mode = static_cast<uint16_t>(event.file.mode);

  auto violation = [&](const std::string& cause) {
    // A file that cannot be read can be opened without bound: these share
    // the violations' log limit.
    auto decision = violation_log_limit_.admit(LogRateLimit::Clock::now());
    if (decision.suppressed > 0) log_suppressed_count(decision.suppressed);
    if (decision.log) {
      spdlog::warn("cannot measure '{}' (pid {}, {}): {}; recorded as a violation", event.path, event.pid,
                   event.comm, cause);
    }
    input.violation = true;
    auto entry = imarot::make_entry(job.pcr, *job.tmpl, input);
    if (entry) item.entry = std::move(*entry);
    return std::move(item);
  };

  UniqueFd opened;
  int fd = event.fd.get();
  if (fd < 0) {
    opened = UniqueFd(::open(event.path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK));
    if (!opened) return violation(fmt::format("open failed: {}", std::strerror(errno)));
    fd = opened.get();
  }

  struct stat before {};
  if (::fstat(fd, &before) != 0) return violation(fmt::format("fstat failed: {}", std::strerror(errno)));
  if (before.st_dev != event.file.dev || before.st_ino != event.file.ino) {
    return violation("the path now names another file");
  }
  if (event.file.generation != 0) {
    // An inode number reused after a delete has a new generation.
    // FS_IOC_GETVERSION stores an int, whatever size its number encodes.
    uint32_t generation[2] = {0, 0};
    if (::ioctl(fd, FS_IOC_GETVERSION, generation) == 0 && generation[0] != event.file.generation) {
      return violation("the path now names another file (generation differs)");
    }
  }

  std::vector<imarot::HashAlgo> algos = {options_.hash_algorithm};
  bool legacy_digest = job.tmpl->has_field(imarot::FieldId::d) && options_.hash_algorithm != imarot::HashAlgo::sha1 &&
                       options_.hash_algorithm != imarot::HashAlgo::md5;
  if (legacy_digest) algos.push_back(imarot::HashAlgo::sha1);

  if (::lseek(fd, 0, SEEK_SET) < 0) return violation(fmt::format("lseek failed: {}", std::strerror(errno)));
  auto digests = imarot::hash_fd(fd, algos);
  if (!digests) return violation(digests.error().message);

  struct stat after {};
  if (::fstat(fd, &after) != 0 || !same_content_state(before, after)) {
    return violation("the file changed while it was hashed");
  }

  input.digest = (*digests)[0];
  if (legacy_digest) input.legacy_digest = (*digests)[1];
  if (job.tmpl->has_field(imarot::FieldId::sig)) input.ima_xattr = read_xattr(fd, "security.ima");
  if (job.tmpl->has_field(imarot::FieldId::sig) || job.tmpl->has_field(imarot::FieldId::evmsig)) {
    input.evm_xattr = read_xattr(fd, "security.evm");
  }

  auto entry = imarot::make_entry(job.pcr, *job.tmpl, input);
  if (!entry) return violation(entry.error().message);
  item.entry = std::move(*entry);
  item.measured = true;
  return item;
}

void Pipeline::writer_loop(std::promise<void>& started) {
  TemplateDigestIndex present(
      [this](uint64_t offset, std::span<uint8_t> buffer) { return log_.read_at(offset, buffer); });
  const std::vector<imarot::Entry>& loaded = log_.entries();
  const std::vector<uint64_t>& loaded_offsets = log_.entry_offsets();
  present.reserve(loaded.size());
  for (size_t i = 0; i < loaded.size(); ++i) {
    if (!loaded[i].is_violation()) present.insert(record_key(loaded[i]), loaded_offsets[i]);
  }
  started.set_value();

  std::map<uint64_t, WriterItem> waiting;  // finished out of order
  uint64_t expected = 0;
  for (;;) {
    std::vector<WriterItem> batch;
    {
      std::unique_lock lock(writer_mutex_);
      writer_ready_.wait(lock, [&] {
        bool ready = !waiting.empty() && waiting.begin()->first == expected;
        return ready || !writer_queue_.empty() || (stopping_ && waiting.empty());
      });
      if (writer_queue_.empty() && waiting.empty()) return;
      while (!writer_queue_.empty()) {
        WriterItem item = std::move(writer_queue_.front());
        writer_queue_.pop_front();
        waiting.emplace(item.sequence, std::move(item));
      }
    }
    wait_for_batch(waiting, expected);
    while (batch.size() < options_.max_batch && !waiting.empty() && waiting.begin()->first == expected) {
      batch.push_back(std::move(waiting.begin()->second));
      waiting.erase(waiting.begin());
      ++expected;
    }
    if (batch.empty()) continue;

    std::vector<RecordKey> keys;
    std::vector<imarot::Entry> entries = drop_duplicates(batch, present, keys);
    uint64_t first_index = log_.size();
    std::vector<uint64_t> offsets = append_until_durable(entries);
    size_t next_key = 0;
    for (size_t i = 0; i < entries.size(); ++i) {
      if (!entries[i].is_violation()) present.insert(keys[next_key++], offsets[i]);
      (entries[i].is_violation() ? counters_.violations : counters_.measured).fetch_add(1, std::memory_order_relaxed);
    }

    if (!entries.empty()) target_.extend(entries, first_index);
    commit_batch(batch);
    if (!entries.empty()) target_.committed(entries, first_index);

    {
      std::lock_guard lock(writer_mutex_);
      in_flight_ -= batch.size();
      if (in_flight_ == 0) writer_idle_.notify_all();
    }
  }
}

// The kernel's duplicate check: an entry with the template digest and PCR of
// one in the list is not added again (violations excepted), but the file
// counts as measured.
std::vector<imarot::Entry> Pipeline::drop_duplicates(const std::vector<WriterItem>& batch,
                                                     TemplateDigestIndex& present, std::vector<RecordKey>& keys) {
  std::vector<imarot::Entry> entries;
  for (const auto& item : batch) {
    if (!item.entry) continue;
    if (!item.entry->is_violation()) {
      RecordKey key = record_key(*item.entry);
      // The index contains the records of earlier batches. This batch's are
      // not in the file yet, so they are compared here.
      if (std::find(keys.begin(), keys.end(), key) != keys.end() || present.contains(key)) {
        counters_.duplicates.fetch_add(1, std::memory_order_relaxed);
        continue;
      }
      keys.push_back(key);
    }
    entries.push_back(*item.entry);
  }
  return entries;
}

std::vector<uint64_t> Pipeline::append_until_durable(const std::vector<imarot::Entry>& entries) {
  auto backoff = std::chrono::milliseconds(100);
  for (;;) {
    auto appended = log_.append(entries);
    if (appended) return std::move(*appended);
    counters_.append_failures.fetch_add(1, std::memory_order_relaxed);
    spdlog::error("{}; retrying in {} ms, new events wait meanwhile", appended.error().message, backoff.count());
    std::this_thread::sleep_for(backoff);
    backoff = std::min(backoff * 2, std::chrono::milliseconds(5000));
  }
}

// Group commit: one fdatasync, exporter write and extend() call per batch
// instead of per entry. While no blocked access waits for the entries that
// are ready, the writer lets more arrive until the first of them has been
// queued for batch_delay, or until max_batch are ready.
void Pipeline::wait_for_batch(std::map<uint64_t, WriterItem>& waiting, uint64_t expected) {
  if (options_.batch_delay.count() <= 0 || waiting.empty() || waiting.begin()->first != expected) return;
  const auto deadline = waiting.begin()->second.queued + options_.batch_delay;

  // The entries ready for the next batch: those in sequence from `expected`.
  auto batch_is_due = [&] {
    size_t ready = 0;
    for (auto it = waiting.begin(); it != waiting.end() && it->first == expected + ready; ++it, ++ready) {
      if (it->second.completion) return true;  // a blocked access
    }
    return ready >= options_.max_batch;
  };
  auto take_queue = [&] {
    for (; !writer_queue_.empty(); writer_queue_.pop_front()) {
      WriterItem& item = writer_queue_.front();
      waiting.emplace(item.sequence, std::move(item));
    }
  };

  std::unique_lock lock(writer_mutex_);
  for (;;) {
    take_queue();
    if (stopping_ || batch_is_due()) return;
    if (writer_ready_.wait_until(lock, deadline) == std::cv_status::timeout) break;
  }
  take_queue();
}

void Pipeline::commit_batch(std::vector<WriterItem>& batch) {
  std::vector<Completion> completions;
  {
    std::lock_guard lock(state_mutex_);
    for (auto& item : batch) {
      if (item.completion) completions.push_back(std::move(item.completion));
      if (item.measured && item.on_measured) completions.push_back(std::move(item.on_measured));
      if (!item.key) continue;
      auto it = files_.find(*item.key);
      if (it == files_.end()) continue;
      FileState& file = it->second;
      file.in_flight = false;
      if (item.measured) {
        file.measured = true;
        file.measured_counter = item.counter;
        file.measured_generation = item.generation;
      }
      if (auto waiting = waiters_.find(*item.key); waiting != waiters_.end()) {
        for (auto& waiter : waiting->second) completions.push_back(std::move(waiter));
        waiters_.erase(waiting);
      }
    }
  }
  for (auto& completion : completions) complete(completion);
}

}  // namespace imarotd
