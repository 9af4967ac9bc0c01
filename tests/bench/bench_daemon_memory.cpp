// Resident memory of the daemon's measurement path per list entry at
// 1,000,000 entries. The parts are assembled as imarotd assembles them,
// without a root of trust: the pipeline (measured-file cache, open-writers
// table, duplicate check), the durable list, the exporter, and the committed
// list that the D-Bus service reads. Each entry is a BPRM_CHECK event for
// its own empty file on a private tmpfs, named like a shared library (about
// 40 bytes), so the list has ima-ng entries that all differ.
//
// The whole process's resident size is read before the parts are built and
// after the last entry is committed. The parts are then destroyed one by
// one, with malloc_trim after each, to show where the memory goes.
//
// Usage: bench_daemon_memory [ENTRIES]   (default 1000000; needs root to mount
//        the tmpfs)
#include <malloc.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <memory>
#include <string>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "bench_util.h"
#include "committed_list.h"
#include "exporter.h"
#include "imarot/policy.h"
#include "log_store.h"
#include "pipeline.h"
#include "process.h"
#include "rot_target.h"

namespace {

using imarot::test::TempDir;

size_t trimmed_resident_bytes() {
  ::malloc_trim(0);
  return bench::resident_bytes();
}

// Bytes the heap has handed out and not taken back, in every arena and in
// separately mapped blocks.
size_t heap_in_use() {
  struct mallinfo2 info = ::mallinfo2();
  return info.uordblks + info.hblkhd;
}

// The file of entry `index`: 1,000 files per directory.
std::string file_path(const std::string& root, size_t index) {
  return fmt::format("{}/d{:04}/lib{:07}.so.1", root, index / 1000, index);
}

}  // namespace

int main(int argc, char** argv) {
  const size_t count = argc > 1 ? std::stoul(argv[1]) : 1000000;
  if (::geteuid() != 0) {
    std::fprintf(stderr, "bench_daemon_memory: needs root to mount a tmpfs for %zu files\n", count);
    return 2;
  }
  spdlog::set_level(spdlog::level::warn);

  TempDir dir;
  std::string fs = dir.file("fs");
  ::mkdir(fs.c_str(), 0755);
  std::string options = fmt::format("size=2g,nr_inodes={}", count + count / 1000 + 1024);
  if (::mount("imarotd-bench-memory", fs.c_str(), "tmpfs", 0, options.c_str()) != 0) {
    std::perror("bench_daemon_memory: mount");
    return 1;
  }
  // Unmounts on every return, before TempDir removes the directory.
  struct Unmount {
    std::string path;
    ~Unmount() { ::umount2(path.c_str(), MNT_DETACH); }
  } unmount{fs};

  double start = bench::now_seconds();
  for (size_t i = 0; i < count; ++i) {
    if (i % 1000 == 0) ::mkdir(fmt::format("{}/d{:04}", fs, i / 1000).c_str(), 0755);
    int fd = ::open(file_path(fs, i).c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0755);
    if (fd < 0) {
      std::perror("bench_daemon_memory: creating a file");
      return 1;
    }
    ::close(fd);
  }
  std::printf("created %zu empty files in %.1f s\n", count, bench::now_seconds() - start);

  auto policy = imarot::load_policy("measure func=BPRM_CHECK\n", "bench");
  if (!policy) {
    std::fprintf(stderr, "bench_daemon_memory: %s\n", policy.error().message.c_str());
    return 1;
  }
  auto shared_policy = std::make_shared<const imarot::Policy>(std::move(*policy));

  const size_t rss_before = trimmed_resident_bytes();

  auto log = imarotd::LogStore::open(fs + "/state", "bench-boot");
  if (!log) {
    std::fprintf(stderr, "bench_daemon_memory: %s\n", log.error().message.c_str());
    return 1;
  }
  imarotd::RotTargetOptions rot_options;
  rot_options.state_directory = fs + "/state";
  auto rot = imarotd::RotTarget::open({}, **log, rot_options);
  if (!rot) {
    std::fprintf(stderr, "bench_daemon_memory: %s\n", rot.error().message.c_str());
    return 1;
  }
  auto exporter = imarotd::Exporter::open(fs + "/run", **log, **rot);
  if (!exporter) {
    std::fprintf(stderr, "bench_daemon_memory: %s\n", exporter.error().message.c_str());
    return 1;
  }
  auto committed = std::make_unique<imarotd::CommittedList>((*log)->entries());
  size_t template_bytes = 0;
  (*exporter)->set_commit_hook([list = committed.get(), &template_bytes](const std::vector<imarot::Entry>& entries,
                                                                          uint64_t first) {
    for (const auto& entry : entries) template_bytes += entry.data.size();
    list->append(entries, first);
  });
  imarotd::PipelineOptions pipeline_options;
  pipeline_options.default_pcr = (*rot)->default_register();
  auto pipeline = std::make_unique<imarotd::Pipeline>(pipeline_options, shared_policy, **log, **exporter);
  pipeline->start();
  (*log)->release_entries();  // as the daemon does once the pipeline runs

  start = bench::now_seconds();
  for (size_t i = 0; i < count; ++i) {
    imarotd::FileEvent event;
    event.kind = imarotd::EventKind::access;
    event.hook = imarotd::Hook::bprm_check;
    event.mask = imarotd::kMayExec;
    event.path = file_path(fs, i);
    struct stat st {};
    if (::stat(event.path.c_str(), &st) != 0) {
      std::perror("bench_daemon_memory: stat");
      return 1;
    }
    event.file.dev = st.st_dev;
    event.file.ino = st.st_ino;
    event.file.change_counter = static_cast<uint64_t>(st.st_ctim.tv_sec) * 1000000000ULL + st.st_ctim.tv_nsec;
    event.file.mode = st.st_mode;
    // No descriptor: the pipeline opens the path and checks its identity.
    pipeline->submit(std::move(event));
    // Stay below the hash queue's size, which drops events beyond it.
    if (i % 10000 == 9999) pipeline->wait_idle();
  }
  pipeline->wait_idle();
  const double fill_seconds = bench::now_seconds() - start;

  const size_t entries = (*log)->size();
  const size_t rss_full = trimmed_resident_bytes();
  size_t heap_previous = heap_in_use();
  const imarotd::PipelineCounters& counters = pipeline->counters();
  std::printf("%zu events in %.1f s: %zu entries (%llu measured, %llu violations, %llu lost)\n", count, fill_seconds,
              entries, static_cast<unsigned long long>(counters.measured.load()),
              static_cast<unsigned long long>(counters.violations.load()),
              static_cast<unsigned long long>(counters.lost_events.load()));

  const double per_entry = static_cast<double>(rss_full - rss_before) / static_cast<double>(entries);
  const double data_per_entry = static_cast<double>(template_bytes) / static_cast<double>(entries);
  std::printf("template data: %.1f bytes/entry\n", data_per_entry);
  std::printf("resident: %.1f bytes/entry, %.1f beyond the template data (target <= 150)\n", per_entry,
              per_entry - data_per_entry);

  // Where it goes: what each part frees when it is destroyed, as heap
  // handed back and as resident memory returned to the kernel.
  auto report_freed = [&](const char* part, size_t& previous) {
    size_t now = trimmed_resident_bytes();
    size_t heap_now = heap_in_use();
    double freed = previous > now ? static_cast<double>(previous - now) : 0.0;
    double heap_freed = heap_previous > heap_now ? static_cast<double>(heap_previous - heap_now) : 0.0;
    std::printf("  %-58s heap %6.1f, resident %6.1f bytes/entry\n", part, heap_freed / static_cast<double>(entries),
                freed / static_cast<double>(entries));
    previous = now;
    heap_previous = heap_now;
  };
  std::printf("freed when destroyed, in order:\n");
  size_t previous = rss_full;
  pipeline->stop();
  pipeline.reset();
  report_freed("pipeline (measured-file cache, duplicate check, queues)", previous);
  committed.reset();
  report_freed("committed list (binary records, offsets)", previous);
  exporter->reset();
  rot->reset();
  report_freed("exporter and roots of trust", previous);
  log->reset();
  report_freed("durable list (entries released after startup)", previous);
  std::printf("  %-58s resident %6.1f bytes/entry\n", "not returned to the kernel (heap fragmentation)",
              static_cast<double>(previous > rss_before ? previous - rss_before : 0) /
                  static_cast<double>(entries));

  return 0;
}
