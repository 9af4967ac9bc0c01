// The D-Bus service's parts that need no bus: the "dbus" setting of
// imarotd.json, the committed-entry index the service reads from, and the
// memfds behind Export.
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <fmt/format.h>

#include "committed_list.h"
#include "config.h"
#include "list_file.h"

namespace imarotd {
namespace {

imarot::Entry file_entry(size_t index, size_t name_length = 40) {
  imarot::TemplateInput input;
  input.digest_algo = imarot::HashAlgo::sha256;
  input.digest = imarot::Digest::filled(32, static_cast<uint8_t>(index));
  input.name = fmt::format("/f{:06}", index);
  input.name.resize(std::max(name_length, input.name.size()), 'x');
  return *imarot::make_entry(10, *imarot::find_builtin_template("ima-ng"), input);
}

std::string rendered(const CommittedList& list, CommittedList::Format format, uint64_t begin = 0,
                     uint64_t end = UINT64_MAX) {
  std::string out;
  list.render(format, begin, end, out);
  return out;
}

std::string as_string(const imarot::Bytes& bytes) { return std::string(bytes.begin(), bytes.end()); }

std::string read_whole_fd(int fd) {
  std::string out;
  char buffer[65536];
  for (;;) {
    ssize_t n = ::read(fd, buffer, sizeof buffer);
    if (n <= 0) break;
    out.append(buffer, static_cast<size_t>(n));
  }
  return out;
}

TEST(DBusConfig, DefaultsToSystemBus) {
  auto config = parse_config("{}", "imarotd.json", "/plugins");
  ASSERT_TRUE(config) << config.error().message;
  EXPECT_EQ(config->dbus, "system");
}

TEST(DBusConfig, AcceptsNamesAndAddresses) {
  for (const char* value : {"system", "session", "none", "unix:path=/run/test/bus.sock"}) {
    auto config = parse_config(fmt::format("{{\"dbus\": \"{}\"}}", value), "imarotd.json", "/plugins");
    ASSERT_TRUE(config) << config.error().message;
    EXPECT_EQ(config->dbus, value);
  }
}

TEST(DBusConfig, RejectsOtherValues) {
  auto word = parse_config("{\n  \"dbus\": \"sytem\"\n}", "imarotd.json", "/plugins");
  ASSERT_FALSE(word);
  EXPECT_EQ(word.error().message.rfind("imarotd.json:2:11: \"dbus\" is \"sytem\"; expected \"system\", \"session\", "
                                       "\"none\" or a D-Bus address",
                                       0),
            0u)
      << word.error().message;

  auto number = parse_config("{\"dbus\": 1}", "imarotd.json", "/plugins");
  ASSERT_FALSE(number);
  EXPECT_NE(number.error().message.find("\"dbus\" must be a non-empty string"), std::string::npos)
      << number.error().message;
}

TEST(CommittedList, ServesEntriesInBothFormats) {
  std::vector<imarot::Entry> initial = {file_entry(0), file_entry(1)};
  CommittedList list(initial);
  uint64_t notified_count = 0;
  list.set_listener([&](uint64_t count) { notified_count = count; });
  list.append({file_entry(2)}, 2);
  EXPECT_EQ(notified_count, 3u);
  EXPECT_EQ(list.size(), 3u);

  std::vector<imarot::Entry> all = {file_entry(0), file_entry(1), file_entry(2)};
  EXPECT_EQ(rendered(list, CommittedList::Format::ascii), imarot::serialize_ascii(all));
  EXPECT_EQ(rendered(list, CommittedList::Format::binary), as_string(imarot::serialize_binary(all)));
  EXPECT_EQ(rendered(list, CommittedList::Format::ascii, 1, 2), imarot::serialize_ascii({all[1]}));
  EXPECT_EQ(rendered(list, CommittedList::Format::binary, 2, 9), as_string(imarot::serialize_binary({all[2]})));
  EXPECT_EQ(rendered(list, CommittedList::Format::ascii, 3), "");

  std::vector<imarot::Entry> middle = list.read(1, 1, 1 << 20);
  ASSERT_EQ(middle.size(), 1u);
  EXPECT_EQ(middle[0].data, all[1].data);
  EXPECT_EQ(middle[0].sha1, all[1].sha1);
}

TEST(CommittedList, CountsViolations) {
  imarot::TemplateInput input;
  input.name = "/violated";
  input.violation = true;
  CommittedList list({file_entry(0)});
  list.append({*imarot::make_entry(10, *imarot::find_builtin_template("ima-ng"), input), file_entry(1)}, 1);
  EXPECT_EQ(list.violations(), 1u);
  EXPECT_EQ(list.size(), 3u);
}

TEST(CommittedList, DropsBatchOutOfOrder) {
  CommittedList list({file_entry(0)});
  list.append({file_entry(5)}, 5);
  EXPECT_EQ(list.size(), 1u);
}

TEST(CommittedList, ReadStopsAtByteBudget) {
  std::vector<imarot::Entry> entries;
  for (size_t i = 0; i < 10; ++i) entries.push_back(file_entry(i, 1000));
  CommittedList list(entries);
  EXPECT_EQ(list.read(0, 10, 3500).size(), 3u) << "records of about 1.1 KB each";
  EXPECT_EQ(list.read(0, 10, 10).size(), 1u) << "one entry even when it alone exceeds the budget";
  EXPECT_EQ(list.read(8, 10, 1 << 20).size(), 2u);
  EXPECT_TRUE(list.read(10, 1, 1 << 20).empty());
}

TEST(CommittedList, ReadsAcrossChunks) {
  // About 15 MB of records, so that the index spans four chunks of 4 MiB.
  std::vector<imarot::Entry> entries;
  for (size_t i = 0; i < 12000; ++i) entries.push_back(file_entry(i, 1200));
  CommittedList list({});
  for (size_t first = 0; first < entries.size(); first += 1000) {
    list.append(std::vector<imarot::Entry>(entries.begin() + static_cast<ptrdiff_t>(first),
                                           entries.begin() + static_cast<ptrdiff_t>(first + 1000)),
                first);
  }
  std::string all;
  EXPECT_EQ(list.render(CommittedList::Format::binary, 0, UINT64_MAX, all), entries.size());
  EXPECT_TRUE(all == as_string(imarot::serialize_binary(entries)));
  std::string ascii;
  EXPECT_EQ(list.render(CommittedList::Format::ascii, 0, UINT64_MAX, ascii), entries.size());
  EXPECT_TRUE(ascii == imarot::serialize_ascii(entries));

  std::vector<imarot::Entry> read = list.read(3000, 4096, 64 << 20);
  ASSERT_EQ(read.size(), 4096u);
  for (size_t i = 0; i < read.size(); ++i) {
    ASSERT_EQ(read[i].data, entries[3000 + i].data) << "entry " << 3000 + i;
  }
}

TEST(CommittedList, KeepsRecordLargerThanChunk) {
  // A 5 MB file name makes a record larger than a 4 MiB chunk.
  std::vector<imarot::Entry> entries = {file_entry(0), file_entry(1, 5 << 20), file_entry(2)};
  CommittedList list({});
  list.append(entries, 0);
  EXPECT_TRUE(rendered(list, CommittedList::Format::binary) == as_string(imarot::serialize_binary(entries)));
  std::vector<imarot::Entry> read = list.read(1, 2, 64 << 20);
  ASSERT_EQ(read.size(), 2u);
  EXPECT_EQ(read[0].data, entries[1].data);
  EXPECT_EQ(read[1].data, entries[2].data);
}

TEST(ListFile, ExtendsCopiesAndSeals) {
  std::vector<imarot::Entry> entries;
  for (size_t i = 0; i < 20000; ++i) entries.push_back(file_entry(i));
  CommittedList list(std::vector<imarot::Entry>(entries.begin(), entries.begin() + 10000));

  std::optional<ListFile> file = create_list_file();
  ASSERT_TRUE(file) << std::strerror(errno);
  ASSERT_TRUE(extend_list_file(*file, list, CommittedList::Format::ascii, UINT64_MAX)) << std::strerror(errno);
  EXPECT_EQ(file->entries, 10000u);
  std::string first_half = imarot::serialize_ascii(std::vector<imarot::Entry>(entries.begin(), entries.begin() + 10000));
  EXPECT_EQ(file->bytes, first_half.size());

  ASSERT_TRUE(seal_list_file(*file)) << std::strerror(errno);
  int sealed_fd = reopen_read_only(*file);
  ASSERT_GE(sealed_fd, 0) << std::strerror(errno);
  EXPECT_TRUE(read_whole_fd(sealed_fd) == first_half);
  EXPECT_EQ(::fcntl(sealed_fd, F_GET_SEALS),
            F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL);
  EXPECT_LT(::write(file->fd.get(), "x", 1), 0) << "a sealed file takes no writes, even from the daemon";
  EXPECT_EQ(errno, EPERM);
  ::close(sealed_fd);

  // The next generation starts as a copy and takes the newer entries.
  list.append(std::vector<imarot::Entry>(entries.begin() + 10000, entries.end()), 10000);
  std::optional<ListFile> next = copy_list_file(*file);
  ASSERT_TRUE(next) << std::strerror(errno);
  EXPECT_EQ(next->entries, 10000u);
  ASSERT_TRUE(extend_list_file(*next, list, CommittedList::Format::ascii, 15000));
  EXPECT_EQ(next->entries, 15000u);
  ASSERT_TRUE(extend_list_file(*next, list, CommittedList::Format::ascii, UINT64_MAX));
  EXPECT_EQ(next->entries, 20000u);
  int next_fd = reopen_read_only(*next);
  ASSERT_GE(next_fd, 0);
  EXPECT_TRUE(read_whole_fd(next_fd) == imarot::serialize_ascii(entries));
  ::close(next_fd);
}

}  // namespace
}  // namespace imarotd
