// The daemon's parts without root: configuration, the durable log and the
// pipeline fed with events built from real files in a temporary directory.
#include <gtest/gtest.h>

#include <sys/stat.h>
#include <unistd.h>

#include <fcntl.h>
#include <mutex>
#include <sstream>
#include <thread>

#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>

#include "config.h"
#include "imarot/replay.h"
#include "log_store.h"
#include "pipeline.h"
#include "template_digest_index.h"
#include "test_util.h"

namespace imarotd {
namespace {

using imarot::test::read_file;
using imarot::test::TempDir;
using imarot::test::write_file;

// Sends spdlog's default logger to a string for the lifetime of the object,
// one message per line without the time and level.
class CapturedLog {
 public:
  CapturedLog() : previous_(spdlog::default_logger()) {
    auto logger = std::make_shared<spdlog::logger>("test", std::make_shared<spdlog::sinks::ostream_sink_mt>(out_));
    logger->set_pattern("%v");
    spdlog::set_default_logger(logger);
  }
  ~CapturedLog() { spdlog::set_default_logger(previous_); }
  CapturedLog(const CapturedLog&) = delete;
  CapturedLog& operator=(const CapturedLog&) = delete;

  std::string text() const { return out_.str(); }
  // Returns how often `needle` occurs in the captured text.
  size_t count(const std::string& needle) const {
    std::string all = out_.str();
    size_t found = 0;
    for (size_t at = all.find(needle); at != std::string::npos; at = all.find(needle, at + 1)) ++found;
    return found;
  }

 private:
  std::ostringstream out_;
  std::shared_ptr<spdlog::logger> previous_;
};

TEST(Config, DefaultsFromEmptyObject) {
  auto config = parse_config("{}", "imarotd.json", "/plugins");
  ASSERT_TRUE(config) << config.error().message;
  EXPECT_EQ(config->default_template->name, "ima-ng");
  EXPECT_EQ(config->hash_algorithm, imarot::HashAlgo::sha256);
  EXPECT_EQ(config->plugin_directory, "/plugins");
  EXPECT_FALSE(config->fanotify_notification_events);
}

TEST(Config, FanotifyEventKind) {
  auto notification = parse_config(R"({"fanotify_events": "notification"})", "imarotd.json", "/plugins");
  ASSERT_TRUE(notification) << notification.error().message;
  EXPECT_TRUE(notification->fanotify_notification_events);
  auto permission = parse_config(R"({"fanotify_events": "permission", "measure_before_use": true})", "imarotd.json",
                                 "/plugins");
  ASSERT_TRUE(permission) << permission.error().message;
  EXPECT_FALSE(permission->fanotify_notification_events);
}

TEST(Config, FullExample) {
  auto config = parse_config(R"({
    "policy": "/etc/imarotd/imarotd.policy",
    "template": "ima-sig",
    "hash_algorithm": "sha384",
    "event_source": "fanotify",
    "measure_before_use": true,
    "queue_size": 128,
    "backends": [{"name": "tpm2", "register": 11, "config": {"tcti": "swtpm:path=/run/swtpm.sock"}}]
  })",
                             "imarotd.json", "/plugins");
  ASSERT_TRUE(config) << config.error().message;
  EXPECT_EQ(config->default_template->name, "ima-sig");
  EXPECT_EQ(config->hash_algorithm, imarot::HashAlgo::sha384);
  EXPECT_EQ(config->event_source, EventSourceChoice::fanotify);
  EXPECT_TRUE(config->measure_before_use);
  ASSERT_EQ(config->backends.size(), 1u);
  EXPECT_EQ(config->backends[0].register_index, 11u);
  EXPECT_EQ(config->backends[0].config["tcti"], "swtpm:path=/run/swtpm.sock");
}

TEST(Config, ErrorsNameLineAndColumn) {
  struct Case {
    const char* text;
    const char* expected;
  };
  const Case cases[] = {
      {"{\n  \"queue_size\": \"big\"\n}", "imarotd.json:2:17: \"queue_size\" must be an integer"},
      {"{\n  \"tempalte\": \"ima-ng\"\n}", "imarotd.json:2:15: unknown setting \"tempalte\""},
      {"{\n  \"template\": \"ima-nope\"\n}", "imarotd.json:2:15: unknown template 'ima-nope'"},
      {"{\n  \"hash_algorithm\": \"crc32\"\n}", "imarotd.json:2:21: hash algorithm \"crc32\" is not supported"},
      {"{\n  \"backends\": [\n    {\"name\": \"tpm2\", \"register\": 99}\n  ]\n}",
       "imarotd.json:3:34: \"register\" must be an integer from 0 to 63"},
      {"{\n  \"policy\": \"x\",\n}", "imarotd.json:3:1: invalid JSON"},
      {"{\"event_source\": \"ebpf\"}", "imarotd.json:1:18: unknown event source \"ebpf\""},
      {"{\"fanotify_events\": \"perm\"}",
       "imarotd.json:1:21: unknown fanotify event kind \"perm\"; expected \"permission\" or \"notification\""},
      {"{\n  \"fanotify_events\": \"notification\",\n  \"measure_before_use\": true\n}",
       "imarotd.json:2:22: \"fanotify_events\" is \"notification\", but measure_before_use needs permission events"},
  };
  for (const auto& c : cases) {
    auto config = parse_config(c.text, "imarotd.json", "/plugins");
    ASSERT_FALSE(config) << c.text;
    EXPECT_NE(config.error().message.find(c.expected), std::string::npos)
        << "got: " << config.error().message << "\nexpected: " << c.expected;
  }
}

imarot::Entry sample_entry(const std::string& name) {
  imarot::TemplateInput input;
  input.digest = imarot::Digest::filled(32, 0x42);
  input.name = name;
  return *imarot::make_entry(10, *imarot::find_builtin_template("ima-ng"), input);
}

TEST(LogStore, AppendsAndReopens) {
  TempDir dir;
  {
    auto store = LogStore::open(dir.path(), "boot-a");
    ASSERT_TRUE(store) << store.error().message;
    ASSERT_TRUE((*store)->append({sample_entry("/a"), sample_entry("/b")}));
    ASSERT_TRUE((*store)->append({sample_entry("/c")}));
  }
  auto store = LogStore::open(dir.path(), "boot-a");
  ASSERT_TRUE(store) << store.error().message;
  ASSERT_EQ((*store)->size(), 3u);
  EXPECT_FALSE((*store)->recovery_note());
  EXPECT_EQ(read_file(dir.file("current.bin")), read_file((*store)->path()));
  EXPECT_EQ(imarot::decode_fields((*store)->entries()[2])->name, "/c");
}

TEST(LogStore, TornTailIsRemoved) {
  TempDir dir;
  std::string path;
  {
    auto store = LogStore::open(dir.path(), "boot-a");
    ASSERT_TRUE((*store)->append({sample_entry("/a")}));
    path = (*store)->path();
  }
  imarot::Bytes record;
  imarot::append_binary_record(record, sample_entry("/torn"));
  int fd = ::open(path.c_str(), O_WRONLY | O_APPEND);
  ASSERT_EQ(::write(fd, record.data(), record.size() / 2), static_cast<ssize_t>(record.size() / 2));
  ::close(fd);

  auto store = LogStore::open(dir.path(), "boot-a");
  ASSERT_TRUE(store) << store.error().message;
  EXPECT_EQ((*store)->size(), 1u);
  ASSERT_TRUE((*store)->recovery_note());
  EXPECT_NE((*store)->recovery_note()->find("incomplete record"), std::string::npos);
  ASSERT_TRUE((*store)->append({sample_entry("/b")}));
  EXPECT_EQ((*store)->size(), 2u);
}

TEST(LogStore, DamageInsideCommittedPartIsNotCut) {
  TempDir dir;
  std::string path;
  {
    auto store = LogStore::open(dir.path(), "boot-a");
    ASSERT_TRUE((*store)->append({sample_entry("/a"), sample_entry("/b")}));
    path = (*store)->path();
  }
  imarot::Bytes data = read_file(path);
  data[data.size() - 20] = 0xff;  // a length inside the last record
  data.resize(data.size() - 3);
  write_file(path, data.data(), data.size());
  // The committed size still covers both records, so the damage is reported.
  std::string committed = path.substr(0, path.size() - 4) + ".committed";
  imarot::Bytes size_bytes = read_file(committed);
  ASSERT_EQ(size_bytes.size(), 8u);

  auto store = LogStore::open(dir.path(), "boot-a");
  ASSERT_FALSE(store);
  EXPECT_NE(store.error().message.find("is damaged"), std::string::npos) << store.error().message;
  EXPECT_EQ(read_file(path), data);
}

TEST(LogStore, ReportsRecordOffsets) {
  TempDir dir;
  std::vector<uint64_t> appended;
  {
    auto store = LogStore::open(dir.path(), "boot-a");
    ASSERT_TRUE(store) << store.error().message;
    auto first = (*store)->append({sample_entry("/a"), sample_entry("/bb")});
    ASSERT_TRUE(first) << first.error().message;
    auto second = (*store)->append({sample_entry("/ccc")});
    ASSERT_TRUE(second) << second.error().message;
    appended = *first;
    appended.insert(appended.end(), second->begin(), second->end());
    EXPECT_EQ((*store)->entry_offsets(), appended);
  }
  imarot::ParsedList parsed = imarot::parse_binary_list(read_file(dir.file("current.bin")));
  ASSERT_FALSE(parsed.error);
  ASSERT_EQ(parsed.offsets.size(), 3u);
  for (size_t i = 0; i < 3; ++i) EXPECT_EQ(appended[i], parsed.offsets[i]) << "record " << i;

  auto store = LogStore::open(dir.path(), "boot-a");
  ASSERT_TRUE(store) << store.error().message;
  EXPECT_EQ((*store)->entry_offsets(), appended);
  (*store)->release_entries();
  EXPECT_TRUE((*store)->entry_offsets().empty());
}

TEST(LogStore, ReadsRecordBytesAtOffset) {
  TempDir dir;
  auto store = LogStore::open(dir.path(), "boot-a");
  ASSERT_TRUE(store) << store.error().message;
  imarot::Entry entry = sample_entry("/b");
  auto offsets = (*store)->append({sample_entry("/a"), entry});
  ASSERT_TRUE(offsets) << offsets.error().message;
  ASSERT_EQ(offsets->size(), 2u);

  RecordKey key{};
  auto read = (*store)->read_at((*offsets)[1], key);
  ASSERT_TRUE(read) << read.error().message;
  EXPECT_EQ(*read, key.size());
  EXPECT_EQ(key, record_key(entry));

  // Past the end of the file the count is short, not an error.
  const uint64_t end = read_file((*store)->path()).size();
  read = (*store)->read_at(end - 4, key);
  ASSERT_TRUE(read) << read.error().message;
  EXPECT_EQ(*read, 4u);
  read = (*store)->read_at(end + 100, key);
  ASSERT_TRUE(read) << read.error().message;
  EXPECT_EQ(*read, 0u);
}

// Records what the pipeline extends, replaying it into sha256 registers.
class RecordingTarget : public CommitTarget {
 public:
  void extend(const std::vector<imarot::Entry>& entries, uint64_t first_index) override {
    std::lock_guard lock(mutex);
    EXPECT_EQ(first_index, extended.size());
    extended.insert(extended.end(), entries.begin(), entries.end());
    ++batches;
  }
  std::mutex mutex;
  std::vector<imarot::Entry> extended;
  size_t batches = 0;  // extend() calls, one per appended batch
};

class PipelineTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto store = LogStore::open(dir_.file("state"), "boot");
    ASSERT_TRUE(store);
    log_ = std::move(*store);
    auto policy = imarot::load_policy("measure func=BPRM_CHECK\nmeasure func=FILE_CHECK mask=^MAY_READ\n", "test");
    ASSERT_TRUE(policy) << policy.error().message;
    policy_ = std::make_shared<imarot::Policy>(*policy);
  }

  void start(size_t queue_size = 1024, std::chrono::microseconds batch_delay = PipelineOptions{}.batch_delay) {
    PipelineOptions options;
    options.queue_size = queue_size;
    options.hash_threads = 2;
    options.batch_delay = batch_delay;
    pipeline_ = std::make_unique<Pipeline>(options, policy_, *log_, target_);
    pipeline_->start();
  }

  std::string make_file(const std::string& name, const std::string& content) {
    std::string path = dir_.file(name);
    write_file(path, content);
    return path;
  }

  FileEvent event_for(const std::string& path, Hook hook, uint32_t mask, EventKind kind = EventKind::access) {
    FileEvent event;
    event.kind = kind;
    event.hook = hook;
    event.mask = mask;
    event.path = path;
    event.write_access = kind == EventKind::access && (mask & kMayWrite) != 0;
    struct stat st {};
    EXPECT_EQ(::stat(path.c_str(), &st), 0);
    event.file.dev = st.st_dev;
    event.file.ino = st.st_ino;
    event.file.mode = st.st_mode;
    event.file.change_counter = static_cast<uint64_t>(st.st_ctim.tv_sec) * 1000000000u + st.st_ctim.tv_nsec;
    if (kind == EventKind::access) event.fd = UniqueFd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    return event;
  }

  std::vector<std::string> names() {
    std::vector<std::string> out;
    for (const auto& entry : log_->entries()) out.push_back(imarot::decode_fields(entry)->name);
    return out;
  }

  TempDir dir_;
  std::unique_ptr<LogStore> log_;
  std::shared_ptr<imarot::Policy> policy_;
  RecordingTarget target_;
  std::unique_ptr<Pipeline> pipeline_;
};

TEST_F(PipelineTest, MeasuresOnceUntilChanged) {
  start();
  std::string path = make_file("tool", "version 1");
  for (int i = 0; i < 3; ++i) pipeline_->submit(event_for(path, Hook::bprm_check, kMayExec));
  pipeline_->wait_idle();
  ASSERT_EQ(log_->size(), 1u);

  ::usleep(10000);
  write_file(path, "version 2");
  pipeline_->submit(event_for(path, Hook::bprm_check, kMayExec));
  pipeline_->wait_idle();
  ASSERT_EQ(log_->size(), 2u);
  auto fields = imarot::decode_fields(log_->entries()[1]);
  EXPECT_EQ(imarot::to_hex(fields->file_digest),
            imarot::hash_bytes(imarot::HashAlgo::sha256,
                               imarot::ByteView(reinterpret_cast<const uint8_t*>("version 2"), 9))
                ->hex());
  EXPECT_EQ(target_.extended.size(), 2u);
  EXPECT_EQ(pipeline_->counters().cached.load(), 2u);
}

TEST_F(PipelineTest, PolicyFiltersEvents) {
  start();
  std::string path = make_file("data", "x");
  pipeline_->submit(event_for(path, Hook::mmap_check, kMayExec));  // no MMAP_CHECK rule
  pipeline_->submit(event_for(path, Hook::file_check, kMayWrite));
  pipeline_->wait_idle();
  EXPECT_EQ(log_->size(), 0u);
}

TEST_F(PipelineTest, OpenWritersViolationOncePerEpisode) {
  start();
  std::string path = make_file("writer.conf", "x");
  pipeline_->submit(event_for(path, Hook::file_check, kMayWrite, EventKind::write_open));
  pipeline_->submit(event_for(path, Hook::file_check, kMayRead));
  pipeline_->submit(event_for(path, Hook::file_check, kMayRead));
  pipeline_->wait_idle();
  auto list = names();
  ASSERT_EQ(list.size(), 2u);  // the violation and the measurement
  size_t violations = 0;
  for (const auto& entry : log_->entries()) violations += entry.is_violation() ? 1 : 0;
  EXPECT_EQ(violations, 1u);
  EXPECT_EQ(pipeline_->counters().violations.load(), 1u);
}

TEST_F(PipelineTest, TomtouViolation) {
  start();
  std::string path = make_file("tomtou.conf", "x");
  pipeline_->submit(event_for(path, Hook::file_check, kMayRead));
  pipeline_->submit(event_for(path, Hook::file_check, kMayWrite, EventKind::write_open));
  pipeline_->submit(event_for(path, Hook::file_check, kMayWrite, EventKind::write_open));
  pipeline_->wait_idle();
  ASSERT_EQ(log_->size(), 2u);
  EXPECT_FALSE(log_->entries()[0].is_violation());
  EXPECT_TRUE(log_->entries()[1].is_violation());
  EXPECT_EQ(imarot::decode_fields(log_->entries()[1])->name, path);
}

// 17 ToMToU violations: each is in the list, but only the first 10 are
// logged one line each, and the rest as one count when the pipeline stops.
TEST_F(PipelineTest, ViolationLogIsRateLimited) {
  CapturedLog captured;

  start();
  for (int i = 0; i < 17; ++i) {
    std::string path = make_file("tomtou-" + std::to_string(i), "x");
    pipeline_->submit(event_for(path, Hook::file_check, kMayRead));
    pipeline_->submit(event_for(path, Hook::file_check, kMayWrite, EventKind::write_open));
  }
  pipeline_->wait_idle();
  pipeline_->stop();
  pipeline_->log_suppressed_violations(/*flush=*/true);

  EXPECT_EQ(pipeline_->counters().violations.load(), 17u);
  std::string text = captured.text();
  EXPECT_EQ(captured.count("ToMToU violation on"), 10u) << text;
  EXPECT_NE(text.find("7 more violations were not logged (at most 10 are logged every 60 s)"), std::string::npos)
      << text;
}

// Files that vanish before they are hashed: each becomes a violation entry,
// and their warnings share the violations' log limit.
TEST_F(PipelineTest, CannotMeasureWarningsAreRateLimited) {
  CapturedLog captured;

  start();
  // All files exist at once, so that no two share an inode number.
  std::vector<FileEvent> events;
  for (int i = 0; i < 15; ++i) {
    std::string path = make_file("gone-" + std::to_string(i), std::to_string(i));
    events.push_back(event_for(path, Hook::bprm_check, kMayExec));
    events.back().fd = UniqueFd();  // no descriptor: the pipeline opens the path
  }
  for (auto& event : events) ASSERT_EQ(::unlink(event.path.c_str()), 0);
  for (auto& event : events) pipeline_->submit(std::move(event));
  pipeline_->wait_idle();
  pipeline_->stop();
  pipeline_->log_suppressed_violations(/*flush=*/true);

  EXPECT_EQ(pipeline_->counters().violations.load(), 15u);
  EXPECT_EQ(log_->size(), 15u);
  std::string text = captured.text();
  EXPECT_EQ(captured.count("cannot measure '"), 10u) << text;
  EXPECT_NE(text.find("5 more violations were not logged"), std::string::npos) << text;
}

TEST_F(PipelineTest, QueueOverflowBecomesViolationWithCount) {
  start(/*queue_size=*/1);
  std::vector<std::string> paths;
  for (int i = 0; i < 200; ++i) paths.push_back(make_file("f" + std::to_string(i), std::to_string(i)));
  for (const auto& path : paths) pipeline_->submit(event_for(path, Hook::bprm_check, kMayExec));
  pipeline_->stop();
  uint64_t lost = pipeline_->counters().lost_events.load();
  uint64_t measured = pipeline_->counters().measured.load();
  EXPECT_EQ(lost + measured, 200u);
  ASSERT_GT(lost, 0u);
  uint64_t recorded = 0;
  for (const auto& entry : log_->entries()) {
    if (!entry.is_violation()) continue;
    std::string name = imarot::decode_fields(entry)->name;
    ASSERT_EQ(name.rfind("[imarotd]_", 0), 0u) << name;
    recorded += std::stoull(name.substr(10));
  }
  EXPECT_EQ(recorded, lost);
}

TEST_F(PipelineTest, ListReplaysToWhatWasExtended) {
  start();
  for (int i = 0; i < 20; ++i) {
    std::string path = make_file("bin" + std::to_string(i), "content " + std::to_string(i));
    pipeline_->submit(event_for(path, Hook::bprm_check, kMayExec));
  }
  pipeline_->wait_idle();
  ASSERT_EQ(log_->size(), 20u);
  ASSERT_EQ(target_.extended.size(), 20u);
  for (size_t i = 0; i < 20; ++i) EXPECT_EQ(target_.extended[i].sha1, log_->entries()[i].sha1);
  imarot::ParsedList reread = imarot::parse_binary_list(read_file(log_->path()));
  ASSERT_FALSE(reread.error);
  EXPECT_EQ(reread.entries.size(), 20u);
}

// Entries that no access waits for wait up to batch_delay for others, and
// share one append (one fdatasync) and one extend() call.
TEST_F(PipelineTest, EntriesWithoutWaitersShareBatch) {
  start(1024, std::chrono::milliseconds(500));
  // 1 ms apart, so that a writer without the delay would append each alone.
  for (int i = 0; i < 20; ++i) {
    pipeline_->submit_entry(sample_entry("/batched/" + std::to_string(i)));
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  pipeline_->wait_idle();
  ASSERT_EQ(log_->size(), 20u);
  EXPECT_EQ(target_.batches, 1u) << "20 entries submitted within about 20 ms were appended in several batches";
}

// A blocked access never waits for batch_delay.
TEST_F(PipelineTest, BlockedAccessSkipsBatchDelay) {
  start(1024, std::chrono::seconds(30));
  std::string path = make_file("waiting", "x");
  std::atomic<bool> completed{false};
  FileEvent event = event_for(path, Hook::bprm_check, kMayExec);
  event.completion = [&] { completed = true; };
  auto submitted = std::chrono::steady_clock::now();
  pipeline_->submit(std::move(event));
  pipeline_->wait_idle();
  EXPECT_TRUE(completed);
  EXPECT_LT(std::chrono::steady_clock::now() - submitted, std::chrono::seconds(10))
      << "the blocked access waited for the 30 s batch delay";
}

TEST_F(PipelineTest, CompletionRunsAfterCommit) {
  start();
  std::string path = make_file("blocked", "x");
  std::atomic<bool> completed{false};
  FileEvent event = event_for(path, Hook::bprm_check, kMayExec);
  event.completion = [&] {
    EXPECT_EQ(target_.extended.size(), 1u);
    completed = true;
  };
  pipeline_->submit(std::move(event));
  pipeline_->wait_idle();
  EXPECT_TRUE(completed);
}

imarot::Entry violation_entry(const std::string& name) {
  imarot::TemplateInput input;
  input.name = name;
  input.violation = true;
  return *imarot::make_entry(10, *imarot::find_builtin_template("ima-ng"), input);
}

TEST_F(PipelineTest, DuplicateEntryIsDropped) {
  start();
  pipeline_->submit_entry(sample_entry("/a"));
  pipeline_->wait_idle();
  pipeline_->submit_entry(sample_entry("/a"));
  pipeline_->submit_entry(sample_entry("/b"));
  pipeline_->wait_idle();
  EXPECT_EQ(names(), (std::vector<std::string>{"/a", "/b"}));
  EXPECT_EQ(pipeline_->counters().duplicates.load(), 1u);
  EXPECT_EQ(pipeline_->counters().measured.load(), 2u);
  EXPECT_EQ(target_.extended.size(), 2u);
}

TEST_F(PipelineTest, DuplicateInOneBatchIsDropped) {
  // Entries queued before the writer starts reach it as one batch.
  pipeline_ = std::make_unique<Pipeline>(PipelineOptions{}, policy_, *log_, target_);
  pipeline_->submit_entry(sample_entry("/a"));
  pipeline_->submit_entry(sample_entry("/a"));
  pipeline_->submit_entry(sample_entry("/b"));
  pipeline_->submit_entry(sample_entry("/a"));
  pipeline_->start();
  pipeline_->wait_idle();
  EXPECT_EQ(names(), (std::vector<std::string>{"/a", "/b"}));
  EXPECT_EQ(pipeline_->counters().duplicates.load(), 2u);
}

TEST_F(PipelineTest, SameDigestOtherPcrIsKept) {
  start();
  imarot::Entry on_pcr_10 = sample_entry("/a");
  imarot::Entry on_pcr_11 = on_pcr_10;
  on_pcr_11.pcr = 11;
  pipeline_->submit_entry(on_pcr_10);
  pipeline_->submit_entry(on_pcr_11);
  pipeline_->wait_idle();
  pipeline_->submit_entry(on_pcr_11);
  pipeline_->wait_idle();
  ASSERT_EQ(log_->size(), 2u);
  EXPECT_EQ(log_->entries()[0].sha1, log_->entries()[1].sha1);
  EXPECT_EQ(log_->entries()[0].pcr, 10u);
  EXPECT_EQ(log_->entries()[1].pcr, 11u);
  EXPECT_EQ(pipeline_->counters().duplicates.load(), 1u);
}

TEST_F(PipelineTest, ViolationsAreNeverDuplicates) {
  start();
  pipeline_->submit_entry(violation_entry("/a"));
  pipeline_->submit_entry(violation_entry("/a"));
  pipeline_->wait_idle();
  pipeline_->submit_entry(violation_entry("/a"));
  pipeline_->wait_idle();
  EXPECT_EQ(log_->size(), 3u);
  EXPECT_EQ(pipeline_->counters().violations.load(), 3u);
  EXPECT_EQ(pipeline_->counters().duplicates.load(), 0u);
}

TEST_F(PipelineTest, RestartDropsDuplicatesOfLoadedEntries) {
  ASSERT_TRUE(log_->append({sample_entry("/a"), violation_entry("/v"), sample_entry("/b")}));
  auto reopened = LogStore::open(dir_.file("state"), "boot");
  ASSERT_TRUE(reopened) << reopened.error().message;
  log_ = std::move(*reopened);
  target_.extended = log_->entries();  // extended before the restart
  start();
  // As the daemon does: the loaded entries are freed once the pipeline runs,
  // so the check reads the loaded records back from the file.
  log_->release_entries();

  pipeline_->submit_entry(sample_entry("/b"));
  pipeline_->submit_entry(sample_entry("/a"));
  pipeline_->submit_entry(violation_entry("/v"));
  pipeline_->submit_entry(sample_entry("/c"));
  pipeline_->wait_idle();
  pipeline_->submit_entry(sample_entry("/c"));
  pipeline_->wait_idle();
  EXPECT_EQ(pipeline_->counters().duplicates.load(), 3u);
  EXPECT_EQ(log_->size(), 5u);

  imarot::ParsedList parsed = imarot::parse_binary_list(read_file(log_->path()));
  ASSERT_FALSE(parsed.error);
  std::vector<std::string> listed;
  for (const auto& entry : parsed.entries) listed.push_back(imarot::decode_fields(entry)->name);
  EXPECT_EQ(listed, (std::vector<std::string>{"/a", "/v", "/b", "/v", "/c"}));
}

TEST_F(PipelineTest, DuplicatesFoundAfterIndexGrowth) {
  start();
  log_->release_entries();
  // 3,000 entries grow the index's table twice, and each growth reads the
  // keys back from the list file.
  const int count = 3000;
  for (int i = 0; i < count; ++i) pipeline_->submit_entry(sample_entry("/lib" + std::to_string(i)));
  pipeline_->wait_idle();
  ASSERT_EQ(log_->size(), static_cast<size_t>(count));
  for (int i = count - 1; i >= 0; --i) pipeline_->submit_entry(sample_entry("/lib" + std::to_string(i)));
  pipeline_->submit_entry(sample_entry("/new"));
  pipeline_->wait_idle();
  EXPECT_EQ(pipeline_->counters().duplicates.load(), static_cast<uint64_t>(count));
  EXPECT_EQ(log_->size(), static_cast<size_t>(count) + 1);
}

}  // namespace
}  // namespace imarotd
