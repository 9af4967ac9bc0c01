// The in-memory index of committed entries that the D-Bus service reads. It
// keeps each entry only as its kernel binary record, packed into large
// chunks, plus one byte offset per entry. The ascii format is rendered from
// those records when a caller asks for it.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "imarot/measurement_list.h"

namespace imarotd {

class CommittedList {
 public:
  enum class Format { binary, ascii };

  // Indexes the entries already in the durable list.
  explicit CommittedList(const std::vector<imarot::Entry>& entries);

  // Adds committed entries whose list indexes start at `first_index`; the
  // writer thread calls it once per batch. Entries must arrive in list
  // order: a batch that does not start at size() is logged and dropped.
  void append(const std::vector<imarot::Entry>& entries, uint64_t first_index);

  uint64_t size() const;
  uint64_t violations() const;

  // Up to `count` entries from list index `offset`, fewer when their binary
  // records would exceed `max_bytes` in total; at least one entry is
  // returned when `offset` < size().
  std::vector<imarot::Entry> read(uint64_t offset, uint64_t count, size_t max_bytes) const;

  // Appends entries [begin, end) in `format` to `out`, stopping at size().
  // Returns the number of entries appended. Safe from any thread.
  uint64_t render(Format format, uint64_t begin, uint64_t end, std::string& out) const;

  // Sets the function called after every append, on the writer thread and
  // outside the lock, with the new number of entries. May be set while
  // entries flow.
  void set_listener(std::function<void(uint64_t)> listener);

 private:
  // Records are appended to the last chunk until the next one would not
  // fit, so a record never straddles two chunks and a chunk never moves.
  // A record larger than kChunkSize gets a chunk of its own size.
  static constexpr size_t kChunkSize = 4 << 20;
  struct Chunk {
    std::unique_ptr<char[]> bytes;
    size_t capacity = 0;
    size_t used = 0;
    uint64_t first_byte = 0;  // list byte offset of bytes[0]
  };

  void add_locked(const imarot::Entry& entry, imarot::Bytes& scratch);
  // Copies the records of entries [begin, end) to `out`. Requires mutex_
  // and begin < end <= offsets_.size().
  void copy_locked(uint64_t begin, uint64_t end, std::string& out) const;
  uint64_t end_byte_locked(uint64_t index) const;

  mutable std::mutex mutex_;
  std::vector<Chunk> chunks_;
  // List byte offset of each entry's binary record. A deque grows in small
  // blocks, so it never copies the whole index or reserves twice its size.
  std::deque<uint64_t> offsets_;
  uint64_t bytes_ = 0;
  uint64_t violations_ = 0;
  std::function<void(uint64_t)> listener_;
};

}  // namespace imarotd
