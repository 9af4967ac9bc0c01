// The D-Bus service's parts that need no bus: the "dbus" setting of
// imarotd.json and the committed-entry index the service reads from.
#include <gtest/gtest.h>

#include <fmt/format.h>

#include "committed_list.h"
#include "config.h"

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

std::string joined(const CommittedList::Snapshot& snapshot) {
  std::string all;
  for (const auto& chunk : snapshot.chunks) all += *chunk;
  return all;
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
  EXPECT_EQ(joined(list.snapshot(CommittedList::Format::ascii)), imarot::serialize_ascii(all));
  imarot::Bytes binary = imarot::serialize_binary(all);
  EXPECT_EQ(joined(list.snapshot(CommittedList::Format::binary)), std::string(binary.begin(), binary.end()));

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
  CommittedList::Snapshot snapshot = list.snapshot(CommittedList::Format::binary);
  EXPECT_GE(snapshot.chunks.size(), 4u);
  EXPECT_EQ(snapshot.entries, entries.size());
  std::string all = joined(snapshot);
  EXPECT_EQ(all.size(), snapshot.bytes);
  imarot::Bytes expected = imarot::serialize_binary(entries);
  EXPECT_TRUE(all == std::string(expected.begin(), expected.end()));

  std::vector<imarot::Entry> read = list.read(3000, 4096, 64 << 20);
  ASSERT_EQ(read.size(), 4096u);
  for (size_t i = 0; i < read.size(); ++i) {
    ASSERT_EQ(read[i].data, entries[3000 + i].data) << "entry " << 3000 + i;
  }
}

}  // namespace
}  // namespace imarotd
