// Serializing and parsing a list of 1,000,000 ima-ng entries: time, and
// resident bytes per entry beyond the template data.
#include <malloc.h>

#include <cstdio>
#include <string>
#include <vector>

#include "bench_util.h"
#include "imarot/measurement_list.h"

int main(int argc, char** argv) {
  size_t count = argc > 1 ? std::stoul(argv[1]) : 1000000;
  const imarot::TemplateDescriptor& tmpl = *imarot::find_builtin_template("ima-ng");

  size_t rss_before = bench::resident_bytes();
  double start = bench::now_seconds();
  std::vector<imarot::Entry> entries;
  entries.reserve(count);
  size_t data_bytes = 0;
  for (size_t i = 0; i < count; ++i) {
    imarot::TemplateInput input;
    input.digest = imarot::Digest::filled(32, static_cast<uint8_t>(i));
    input.name = "/usr/lib/x86_64-linux-gnu/lib" + std::to_string(i) + ".so.1";
    entries.push_back(*imarot::make_entry(10, tmpl, input));
    data_bytes += entries.back().data.size();
  }
  double built = bench::now_seconds() - start;
  size_t rss_built = bench::resident_bytes();

  start = bench::now_seconds();
  imarot::Bytes binary = imarot::serialize_binary(entries);
  double binary_time = bench::now_seconds() - start;

  start = bench::now_seconds();
  std::string ascii = imarot::serialize_ascii(entries);
  double ascii_time = bench::now_seconds() - start;

  entries.clear();
  entries.shrink_to_fit();
  // Give freed heap back to the kernel so the parse is measured on its own.
  ::malloc_trim(0);
  size_t rss_parse_before = bench::resident_bytes();
  start = bench::now_seconds();
  imarot::ParsedList parsed = imarot::parse_binary_list(binary);
  double parse_time = bench::now_seconds() - start;
  size_t rss_parsed = bench::resident_bytes();
  if (parsed.error || parsed.entries.size() != count) {
    std::fprintf(stderr, "parse failed\n");
    return 1;
  }

  auto per_entry = [&](double seconds) { return seconds / static_cast<double>(count) * 1e9; };
  double data_per_entry = static_cast<double>(data_bytes) / static_cast<double>(count);
  std::printf("entries: %zu, template data %.1f bytes/entry, binary list %.1f MiB, ascii list %.1f MiB\n", count,
              data_per_entry, static_cast<double>(binary.size()) / (1 << 20),
              static_cast<double>(ascii.size()) / (1 << 20));
  std::printf("build (hash template data):  %6.3f s  %6.0f ns/entry\n", built, per_entry(built));
  std::printf("serialize binary:            %6.3f s  %6.0f ns/entry\n", binary_time, per_entry(binary_time));
  std::printf("serialize ascii:             %6.3f s  %6.0f ns/entry\n", ascii_time, per_entry(ascii_time));
  std::printf("parse binary:                %6.3f s  %6.0f ns/entry\n", parse_time, per_entry(parse_time));
  std::printf("resident per built entry:    %.1f bytes (%.1f beyond template data)\n",
              static_cast<double>(rss_built - rss_before) / static_cast<double>(count),
              static_cast<double>(rss_built - rss_before) / static_cast<double>(count) - data_per_entry);
  std::printf("resident per parsed entry:   %.1f bytes (%.1f beyond template data; offsets index included)\n",
              static_cast<double>(rss_parsed - rss_parse_before) / static_cast<double>(count),
              static_cast<double>(rss_parsed - rss_parse_before) / static_cast<double>(count) - data_per_entry);
  return 0;
}
