// The duplicate check's index over a list file kept in memory, and its
// keyed hash against SipHash's reference vectors.
#include <gtest/gtest.h>


#include <algorithm>
#include <bit>
#include <cstring>
#include <memory>

#include "template_digest_index.h"

namespace imarotd {
namespace {

SipHashKey counting_key() {
  SipHashKey key{};
  for (size_t i = 0; i < key.size(); ++i) key[i] = static_cast<uint8_t>(i);
  return key;
}

TEST(SipHash, MatchesReferenceVectors) {
  // vectors_sip64[0] and [15] in vectors.h of the reference implementation
  // (github.com/veorq/SipHash): key 00..0f, messages of 0 and 15 bytes
  // counting up from 00, the output read as a little-endian u64.
  EXPECT_EQ(siphash_2_4(counting_key(), {}), 0x726fdb47dd0e0e31ULL);
  std::vector<uint8_t> message(15);
  for (size_t i = 0; i < message.size(); ++i) message[i] = static_cast<uint8_t>(i);
  EXPECT_EQ(siphash_2_4(counting_key(), message), 0xa129ca6149be45e5ULL);
}

// One KeyedHash restarts its MAC for each call: the same input gives the
// same value, and the reference vectors hold on later calls too.
TEST(SipHash, KeyedHashRestartsEachCall) {
  KeyedHash hash(counting_key());
  ASSERT_EQ(hash.algorithm(), "SIPHASH");
  std::vector<uint8_t> message(15);
  for (size_t i = 0; i < message.size(); ++i) message[i] = static_cast<uint8_t>(i);
  EXPECT_EQ(hash(message), 0xa129ca6149be45e5ULL);
  EXPECT_EQ(hash({}), 0x726fdb47dd0e0e31ULL);
  EXPECT_EQ(hash(message), 0xa129ca6149be45e5ULL);
}

TEST(RecordKey, IsTheRecordPrefix) {
  imarot::TemplateInput input;
  input.digest = imarot::Digest::filled(32, 0x42);
  input.name = "/usr/bin/true";
  auto entry = imarot::make_entry(0x01020304, *imarot::find_builtin_template("ima-ng"), input);
  ASSERT_TRUE(entry) << entry.error().message;
  imarot::Bytes record;
  imarot::append_binary_record(record, *entry);
  ASSERT_GE(record.size(), 24u);

  RecordKey key = record_key(*entry);
  EXPECT_TRUE(std::equal(key.begin(), key.end(), record.begin()));
  EXPECT_EQ(key[0], 0x04);  // the PCR is little-endian
}

RecordKey make_key(uint32_t number, uint32_t pcr = 10) {
  RecordKey key{};
  for (int i = 0; i < 4; ++i) key[static_cast<size_t>(i)] = static_cast<uint8_t>(pcr >> (8 * i));
  for (size_t i = 4; i < key.size(); ++i) key[i] = static_cast<uint8_t>((number >> (8 * (i % 4))) ^ (i * 29));
  return key;
}

// A list file in memory: records of the key and some filler bytes, which
// vary in length as real records do.
class MemoryList {
 public:
  uint64_t append(const RecordKey& key) {
    uint64_t offset = bytes.size();
    bytes.insert(bytes.end(), key.begin(), key.end());
    bytes.resize(bytes.size() + 16 + (offset / 24) % 61, 0xee);
    return offset;
  }

  TemplateDigestIndex::ReadAt reader() {
    return [this](uint64_t offset, std::span<uint8_t> buffer) -> imarot::Result<size_t> {
      ++reads;
      if (offset == failing_offset) return imarot::Error{"injected read error"};
      if (offset >= bytes.size()) return size_t{0};
      size_t count = std::min<size_t>(buffer.size(), bytes.size() - offset);
      std::memcpy(buffer.data(), bytes.data() + offset, count);
      return count;
    };
  }

  std::vector<uint8_t> bytes;
  uint64_t reads = 0;
  uint64_t failing_offset = UINT64_MAX;
};

uint64_t colliding_hash(const RecordKey&) { return 0xabcd000000000005ULL; }

TEST(TemplateDigestIndex, FindsInsertedKeysOnly) {
  MemoryList list;
  TemplateDigestIndex index(list.reader());
  for (uint32_t i = 0; i < 100; ++i) index.insert(make_key(i), list.append(make_key(i)));
  EXPECT_EQ(index.size(), 100u);
  for (uint32_t i = 0; i < 100; ++i) EXPECT_TRUE(index.contains(make_key(i))) << i;
  for (uint32_t i = 100; i < 200; ++i) EXPECT_FALSE(index.contains(make_key(i))) << i;
  EXPECT_EQ(index.read_failures(), 0u);
}

TEST(TemplateDigestIndex, OtherPcrIsAnotherKey) {
  MemoryList list;
  TemplateDigestIndex index(list.reader());
  index.insert(make_key(7, 10), list.append(make_key(7, 10)));
  EXPECT_TRUE(index.contains(make_key(7, 10)));
  EXPECT_FALSE(index.contains(make_key(7, 11)));

  TemplateDigestIndex colliding(list.reader(), colliding_hash);
  colliding.insert(make_key(7, 10), 0);
  EXPECT_TRUE(colliding.contains(make_key(7, 10)));
  EXPECT_FALSE(colliding.contains(make_key(7, 11)));
}

TEST(TemplateDigestIndex, CollisionsCompareAllBytes) {
  MemoryList list;
  TemplateDigestIndex index(list.reader(), colliding_hash);
  const RecordKey stored = make_key(1);
  index.insert(stored, list.append(stored));
  for (uint32_t i = 2; i < 50; ++i) index.insert(make_key(i), list.append(make_key(i)));

  // Every key has the same slot and tag, so only the bytes read back
  // from the list tell them apart, down to the first and the last byte.
  for (size_t position : {size_t{0}, size_t{3}, size_t{4}, size_t{12}, size_t{23}}) {
    RecordKey changed = stored;
    changed[position] ^= 0x01;
    EXPECT_FALSE(index.contains(changed)) << "byte " << position;
  }
  for (uint32_t i = 1; i < 50; ++i) EXPECT_TRUE(index.contains(make_key(i))) << i;

  list.reads = 0;
  EXPECT_FALSE(index.contains(make_key(1000)));
  EXPECT_EQ(list.reads, 49u);  // one read per stored record in the chain
}

TEST(TemplateDigestIndex, GrowsAcrossManyKeys) {
  MemoryList list;
  TemplateDigestIndex index(list.reader());
  const uint32_t count = 100000;
  size_t previous_capacity = 0;
  size_t growths = 0;
  for (uint32_t i = 0; i < count; ++i) {
    index.insert(make_key(i), list.append(make_key(i)));
    if (index.capacity() != previous_capacity) {
      ++growths;
      previous_capacity = index.capacity();
    }
    ASSERT_LE(index.size() * 4, index.capacity() * 3) << "after " << i + 1 << " keys";
  }
  // The records span many of the reads that growth makes in offset order.
  ASSERT_GT(list.bytes.size(), size_t{4} << 20);
  EXPECT_GE(growths, 7u);
  EXPECT_TRUE(std::has_single_bit(index.capacity()));
  EXPECT_EQ(index.size(), count);
  EXPECT_EQ(index.read_failures(), 0u);
  for (uint32_t i = 0; i < count; ++i) ASSERT_TRUE(index.contains(make_key(i))) << i;
  for (uint32_t i = count; i < count + 1000; ++i) EXPECT_FALSE(index.contains(make_key(i))) << i;
}

TEST(TemplateDigestIndex, GrowsWithCollidingHashes) {
  MemoryList list;
  TemplateDigestIndex index(list.reader(), colliding_hash);
  const uint32_t count = 2000;
  for (uint32_t i = 0; i < count; ++i) index.insert(make_key(i), list.append(make_key(i)));
  EXPECT_EQ(index.size(), count);
  EXPECT_GE(index.capacity(), 4096u);
  for (uint32_t i = 0; i < count; ++i) ASSERT_TRUE(index.contains(make_key(i))) << i;
  EXPECT_FALSE(index.contains(make_key(count)));
}

TEST(TemplateDigestIndex, ReserveAvoidsGrowth) {
  MemoryList list;
  TemplateDigestIndex index(list.reader());
  index.reserve(10000);
  EXPECT_EQ(index.capacity(), 16384u);
  for (uint32_t i = 0; i < 10000; ++i) index.insert(make_key(i), list.append(make_key(i)));
  EXPECT_EQ(index.capacity(), 16384u);
  EXPECT_EQ(list.reads, 0u);
}

TEST(TemplateDigestIndex, ReadFailureCountsAsDifferent) {
  MemoryList list;
  TemplateDigestIndex index(list.reader());
  const uint64_t offset = list.append(make_key(1));
  index.insert(make_key(1), offset);

  list.failing_offset = offset;
  EXPECT_FALSE(index.contains(make_key(1)));
  EXPECT_EQ(index.read_failures(), 1u);

  list.failing_offset = UINT64_MAX;
  EXPECT_TRUE(index.contains(make_key(1)));
  EXPECT_EQ(index.read_failures(), 1u);
}

TEST(TemplateDigestIndex, ShortReadCountsAsDifferent) {
  MemoryList list;
  TemplateDigestIndex index(list.reader());
  index.insert(make_key(1), list.append(make_key(1)));
  list.bytes.resize(20);
  EXPECT_FALSE(index.contains(make_key(1)));
  EXPECT_EQ(index.read_failures(), 1u);
}

TEST(TemplateDigestIndex, GrowthDropsUnreadableRecord) {
  MemoryList list;
  TemplateDigestIndex index(list.reader(), colliding_hash);
  std::vector<uint64_t> offsets;
  for (uint32_t i = 0; i < 700; ++i) {
    offsets.push_back(list.append(make_key(i)));
    index.insert(make_key(i), offsets.back());
  }
  ASSERT_EQ(index.capacity(), 1024u);

  // Growth reads the records in offset order, so only the first record is
  // lost: its read fails, and the next read starts at the second record.
  list.failing_offset = offsets[0];
  for (uint32_t i = 700; i < 800; ++i) index.insert(make_key(i), list.append(make_key(i)));
  ASSERT_EQ(index.capacity(), 2048u);
  EXPECT_EQ(index.read_failures(), 1u);
  EXPECT_EQ(index.size(), 799u);

  list.failing_offset = UINT64_MAX;
  EXPECT_FALSE(index.contains(make_key(0)));
  for (uint32_t i = 1; i < 800; ++i) ASSERT_TRUE(index.contains(make_key(i))) << i;
}

TEST(TemplateDigestIndex, OffsetBeyondLimitIsNotIndexed) {
  MemoryList list;
  TemplateDigestIndex index(list.reader());
  index.insert(make_key(1), TemplateDigestIndex::kMaxOffset + 1);
  EXPECT_EQ(index.size(), 0u);
  EXPECT_FALSE(index.contains(make_key(1)));
}

}  // namespace
}  // namespace imarotd
