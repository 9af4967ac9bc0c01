// Time and memory of the duplicate check's index (TemplateDigestIndex) over
// a real durable list (LogStore) of 1,000,000 ima-ng entries by default.
//
// Entries are appended in batches of 10,000. After each batch, every entry
// is looked up (not found) and inserted with its record's offset, as the
// writer thread does. The maximum time of one lookup and insert is the
// pause of the table's last growth, which reads every key back from the
// list file.
// Then every key is looked up again: each lookup finds its record and reads
// it back to compare all 24 bytes. The list file is in a new directory
// under $TMPDIR, so the reads come from the page cache of that filesystem.
//
// Usage: bench_duplicate_check [ENTRIES] (default 1000000)
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "bench_util.h"
#include "imarot/measurement_list.h"
#include "log_store.h"
#include "template_digest_index.h"

namespace {

constexpr size_t kBatch = 10000;

[[noreturn]] void fail(const std::string& message) {
  std::fprintf(stderr, "bench_duplicate_check: %s\n", message.c_str());
  std::exit(1);
}

std::vector<imarot::Entry> make_batch(size_t first, size_t count) {
  const imarot::TemplateDescriptor* tmpl = imarot::find_builtin_template("ima-ng");
  std::vector<imarot::Entry> entries;
  entries.reserve(count);
  for (size_t i = first; i < first + count; ++i) {
    imarot::TemplateInput input;
    input.digest = imarot::Digest::filled(32, 0x42);
    input.name = fmt::format("/usr/lib/x86_64-linux-gnu/imarot-bench/lib{:07}.so.1", i);
    auto entry = imarot::make_entry(10, *tmpl, input);
    if (!entry) fail(entry.error().message);
    entries.push_back(std::move(*entry));
  }
  return entries;
}

}  // namespace

int main(int argc, char** argv) {
  const size_t count = argc > 1 ? std::stoul(argv[1]) : 1000000;
  std::string pattern = (std::filesystem::temp_directory_path() / "imarotd-bench-XXXXXX").string();
  if (::mkdtemp(pattern.data()) == nullptr) fail("cannot create a directory under $TMPDIR");
  struct RemoveDirectory {
    std::string path;
    ~RemoveDirectory() {
      std::error_code ignored;
      std::filesystem::remove_all(path, ignored);
    }
  } cleanup{pattern};

  auto log = imarotd::LogStore::open(pattern, "bench-boot");
  if (!log) fail(log.error().message);
  (*log)->release_entries();
  imarotd::TemplateDigestIndex index(
      [store = log->get()](uint64_t offset, std::span<uint8_t> buffer) { return store->read_at(offset, buffer); });

  std::vector<imarotd::RecordKey> keys;
  keys.reserve(count);
  double insert_seconds = 0;
  double max_step_seconds = 0;
  size_t max_step_at = 0;
  for (size_t first = 0; first < count; first += kBatch) {
    std::vector<imarot::Entry> batch = make_batch(first, std::min(kBatch, count - first));
    auto offsets = (*log)->append(batch);
    if (!offsets) fail(offsets.error().message);
    for (size_t i = 0; i < batch.size(); ++i) {
      keys.push_back(imarotd::record_key(batch[i]));
      const double start = bench::now_seconds();
      if (index.contains(keys.back())) fail(fmt::format("entry {} was found before it was inserted", first + i));
      index.insert(keys.back(), (*offsets)[i]);
      const double elapsed = bench::now_seconds() - start;
      insert_seconds += elapsed;
      if (elapsed > max_step_seconds) {
        max_step_seconds = elapsed;
        max_step_at = index.size();
      }
    }
  }

  const double start = bench::now_seconds();
  for (const auto& key : keys) {
    if (!index.contains(key)) fail("an inserted entry was not found");
  }
  const double lookup_seconds = bench::now_seconds() - start;

  const double entries = static_cast<double>(count);
  std::printf("%zu entries, list file %.0f MiB\n", count,
              static_cast<double>(std::filesystem::file_size((*log)->path())) / (1 << 20));
  std::printf("table: %zu slots of 8 bytes, %.1f bytes/entry\n", index.capacity(),
              static_cast<double>(index.capacity() * 8) / entries);
  std::printf("lookup of a new key and insert: %.2f s in all, %.0f ns/entry\n", insert_seconds,
              insert_seconds / entries * 1e9);
  std::printf("max time of one lookup and insert (a growth): %.3f s, at entry %zu\n", max_step_seconds,
              max_step_at);
  std::printf("lookup of a key in the list (reads the record back): %.2f s in all, %.0f ns/entry\n",
              lookup_seconds, lookup_seconds / entries * 1e9);
  std::printf("read failures: %llu\n", static_cast<unsigned long long>(index.read_failures()));
  return 0;
}
