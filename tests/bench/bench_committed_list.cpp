// Memory of imarotd's in-memory list (CommittedList, the index the D-Bus
// service reads) per entry, at 1,000,000 ima-ng entries by default.
//
// Entries are made and appended in batches of 10,000, as the writer thread
// commits them, so that at most one batch of imarot::Entry objects exists
// beside the list. The program reports the heap bytes the list has allocated
// (glibc mallinfo2, which counts both arena and mmap allocations). It also
// reports the growth of the process's resident set and the template data
// those entries carry. Their difference is the list's own cost per entry.
// It then times
// the replay behind the D-Bus method Verify over the whole list, against
// sha1 and sha256 values of register 10 computed beforehand.
//
// Usage: bench_committed_list [ENTRIES] (default 1000000)
#include <malloc.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "bench_util.h"
#include "committed_list.h"
#include "imarot/measurement_list.h"
#include "imarot/replay.h"
#include "live_verify.h"

namespace {

constexpr size_t kBatch = 10000;

size_t heap_bytes() {
  struct mallinfo2 info = ::mallinfo2();
  return info.uordblks + info.hblkhd;
}

// Makes entries [first, first + count) of a list of shared-library loads,
// with names of about 50 bytes.
std::vector<imarot::Entry> make_batch(size_t first, size_t count) {
  const imarot::TemplateDescriptor* tmpl = imarot::find_builtin_template("ima-ng");
  std::vector<imarot::Entry> entries;
  entries.reserve(count);
  for (size_t i = first; i < first + count; ++i) {
    imarot::TemplateInput input;
    input.digest_algo = imarot::HashAlgo::sha256;
    std::string seed = fmt::format("content {}", i);
    input.digest = *imarot::hash_bytes(imarot::HashAlgo::sha256,
                                       imarot::ByteView(reinterpret_cast<const uint8_t*>(seed.data()), seed.size()));
    input.name = fmt::format("/usr/lib/x86_64-linux-gnu/imarot-bench/lib{:07}.so.1", i);
    auto entry = imarot::make_entry(10, *tmpl, input);
    if (!entry) {
      std::fprintf(stderr, "bench_committed_list: %s\n", entry.error().message.c_str());
      std::exit(1);
    }
    entries.push_back(std::move(*entry));
  }
  return entries;
}

}  // namespace

int main(int argc, char** argv) {
  size_t count = argc > 1 ? std::strtoul(argv[1], nullptr, 10) : 1000000;
  if (count == 0) {
    std::fprintf(stderr, "bench_committed_list: ENTRIES must be a positive number\n");
    return 2;
  }

  imarotd::CommittedList list({});
  ::malloc_trim(0);
  size_t heap_before = heap_bytes();
  size_t resident_before = bench::resident_bytes();

  uint64_t template_data = 0;
  uint64_t binary_bytes = 0;
  double start = bench::now_seconds();
  for (size_t first = 0; first < count; first += kBatch) {
    std::vector<imarot::Entry> batch = make_batch(first, std::min(kBatch, count - first));
    for (const imarot::Entry& entry : batch) {
      template_data += entry.data.size();
      imarot::Bytes record;
      imarot::append_binary_record(record, entry);
      binary_bytes += record.size();
    }
    list.append(batch, first);
  }
  double seconds = bench::now_seconds() - start;
  ::malloc_trim(0);
  size_t heap = heap_bytes() - heap_before;
  size_t resident = bench::resident_bytes() - resident_before;

  auto per_entry = [count](double bytes) { return bytes / static_cast<double>(count); };
  std::printf("%zu ima-ng entries appended in %.2f s (%zu per batch)\n", count, seconds, kBatch);
  std::printf("  %-44s %8.1f bytes\n", "template data per entry", per_entry(template_data));
  std::printf("  %-44s %8.1f bytes\n", "binary record per entry (for reference)", per_entry(binary_bytes));
  std::printf("  %-44s %8.1f bytes\n", "list heap per entry (mallinfo2)", per_entry(heap));
  std::printf("  %-44s %8.1f bytes\n", "list resident growth per entry (statm)", per_entry(resident));
  std::printf("  %-44s %8.1f bytes\n", "heap minus template data per entry", per_entry(heap) - per_entry(template_data));
  std::printf("  %-44s %8.1f bytes\n", "resident minus template data per entry",
              per_entry(resident) - per_entry(template_data));
  std::printf("target: at most 150 bytes per entry besides the template data: %s\n",
              per_entry(heap) - per_entry(template_data) <= 150 &&
                      per_entry(resident) - per_entry(template_data) <= 150
                  ? "met"
                  : "NOT met");
  // Reference values for Verify's replay: the registers the list extends.
  std::string records;
  list.render(imarotd::CommittedList::Format::binary, 0, count, records);
  std::vector<imarot::HashAlgo> banks = {imarot::HashAlgo::sha1, imarot::HashAlgo::sha256};
  imarotd::BackendReference reference;
  reference.backend.id = "bench";
  reference.backend.register_kind = "PCR";
  reference.backend.register_index = 10;
  reference.backend.banks = banks;
  {
    imarot::ParsedList parsed =
        imarot::parse_binary_list(imarot::ByteView(reinterpret_cast<const uint8_t*>(records.data()), records.size()));
    auto replayed = imarot::replay_list(parsed.entries, banks);
    if (!replayed) {
      std::fprintf(stderr, "bench_committed_list: %s\n", replayed.error().message.c_str());
      return 1;
    }
    reference.values = *replayed;
  }
  records = std::string();
  double verify_start = bench::now_seconds();
  imarotd::LiveVerifyResult verified = imarotd::verify_live(list, count, {reference}, imarotd::LiveVerifyRequest{});
  double verify_seconds = bench::now_seconds() - verify_start;
  std::printf("Verify's replay of %zu entries, banks sha1 and sha256, one thread: %.2f s (%s)\n", count,
              verify_seconds, verified.ok() ? "match" : "MISMATCH");

  if (list.size() != count) {
    std::fprintf(stderr, "bench_committed_list: the list has %llu entries, expected %zu\n",
                 static_cast<unsigned long long>(list.size()), count);
    return 1;
  }
  return 0;
}
