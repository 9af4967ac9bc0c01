// Hashing throughput of imarot's streaming file hasher against sha256sum and
// `openssl dgst -sha256`, single-threaded, on the same warm-cache files.
//
// Usage: bench_hash [DIR]   (default: a new directory under $TMPDIR, removed
// afterwards). Prints GB/s for each tool and the ratios.
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <functional>
#include <cstdio>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "bench_util.h"
#include "imarot/hash.h"

namespace {

struct FileSet {
  std::vector<std::string> paths;
  size_t bytes = 0;
};

FileSet make_files(const std::string& dir) {
  FileSet set;
  std::mt19937_64 random(42);
  auto write = [&](const std::string& name, size_t size) {
    std::string path = dir + "/" + name;
    std::vector<uint64_t> data((size + 7) / 8);
    for (auto& word : data) word = random();
    FILE* file = std::fopen(path.c_str(), "wb");
    std::fwrite(data.data(), 1, size, file);
    std::fclose(file);
    set.paths.push_back(path);
    set.bytes += size;
  };
  // Many small files like a /usr/bin walk, a few large ones like images.
  for (int i = 0; i < 2000; ++i) write("small-" + std::to_string(i), 4096 + static_cast<size_t>(i % 16) * 1024);
  for (int i = 0; i < 200; ++i) write("medium-" + std::to_string(i), 256 * 1024);
  for (int i = 0; i < 4; ++i) write("large-" + std::to_string(i), 96u * 1024 * 1024);
  return set;
}

double time_imarot(const FileSet& set) {
  double start = bench::now_seconds();
  for (const auto& path : set.paths) {
    auto digest = imarot::hash_file(path, imarot::HashAlgo::sha256);
    if (!digest) {
      std::fprintf(stderr, "%s\n", digest.error().message.c_str());
      return -1;
    }
  }
  return bench::now_seconds() - start;
}

double best_of(int runs, const std::function<double()>& run) {
  double best = 1e30;
  for (int i = 0; i < runs; ++i) best = std::min(best, run());
  return best;
}

}  // namespace

int main(int argc, char** argv) {
  std::string dir;
  bool remove = false;
  if (argc > 1) {
    dir = argv[1];
  } else {
    std::string pattern = (std::filesystem::temp_directory_path() / "bench-hash-XXXXXX").string();
    dir = ::mkdtemp(pattern.data());
    remove = true;
  }
  FileSet set = make_files(dir);
  std::printf("files: %zu, %.1f MiB in all\n", set.paths.size(), static_cast<double>(set.bytes) / (1 << 20));

  std::vector<std::string> sha256sum = {"sha256sum"};
  std::vector<std::string> openssl = {"openssl", "dgst", "-sha256"};
  sha256sum.insert(sha256sum.end(), set.paths.begin(), set.paths.end());
  openssl.insert(openssl.end(), set.paths.begin(), set.paths.end());

  (void)time_imarot(set);  // warm the page cache
  double ours = best_of(3, [&] { return time_imarot(set); });
  double coreutils = best_of(3, [&] { return bench::time_command(sha256sum); });
  double dgst = best_of(3, [&] { return bench::time_command(openssl); });

  auto rate = [&](double seconds) { return static_cast<double>(set.bytes) / seconds / 1e9; };
  std::printf("imarot hash_file sha256   %6.3f s  %5.2f GB/s\n", ours, rate(ours));
  std::printf("sha256sum                 %6.3f s  %5.2f GB/s\n", coreutils, rate(coreutils));
  std::printf("openssl dgst -sha256      %6.3f s  %5.2f GB/s\n", dgst, rate(dgst));
  std::printf("ratio vs sha256sum:       %.2fx (target >= 3x)\n", coreutils / ours);
  std::printf("ratio vs openssl dgst:    %.2fx (target >= 0.8x)\n", dgst / ours);

  if (remove) std::filesystem::remove_all(dir);
  return ours > 0 && coreutils > 0 && dgst > 0 ? 0 : 1;
}
