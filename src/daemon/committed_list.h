// The in-memory index of committed entries that the D-Bus service reads. It
// keeps every entry in the kernel's binary and ascii formats as it is
// committed, so a whole-list export copies ready bytes instead of
// serializing a million entries.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "imarot/measurement_list.h"

namespace imarotd {

// Bytes appended in chunks of about 4 MiB. A chunk is immutable once the
// next one starts, so readers share full chunks without copying them and
// copy only the chunk still being filled. A record never straddles two
// chunks. Not synchronized: CommittedList guards it.
class ChunkedBuffer {
 public:
  static constexpr size_t kChunkSize = 4 << 20;

  void append(const char* data, size_t size);
  uint64_t size() const { return size_; }
  // Copies bytes [begin, end) to the end of `out`.
  void copy(uint64_t begin, uint64_t end, std::string& out) const;
  // Every byte as a list of chunks; the last is a copy of the open chunk.
  std::vector<std::shared_ptr<const std::string>> share() const;

 private:
  std::vector<std::shared_ptr<const std::string>> sealed_;
  std::vector<uint64_t> sealed_starts_;  // byte offset of each sealed chunk
  std::string open_;
  uint64_t open_start_ = 0;
  uint64_t size_ = 0;
};

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

  // The whole list in `format` and its number of entries, taken at one
  // instant.
  struct Snapshot {
    std::vector<std::shared_ptr<const std::string>> chunks;
    uint64_t entries = 0;
    uint64_t bytes = 0;
  };
  Snapshot snapshot(Format format) const;

  // Sets the function called after every append, on the writer thread and
  // outside the lock, with the new number of entries. May be set while
  // entries flow.
  void set_listener(std::function<void(uint64_t)> listener);

 private:
  void add_locked(const imarot::Entry& entry);

  mutable std::mutex mutex_;
  ChunkedBuffer binary_;
  ChunkedBuffer ascii_;
  std::vector<uint64_t> offsets_;  // byte offset of each entry's binary record
  uint64_t violations_ = 0;
  std::function<void(uint64_t)> listener_;
};

}  // namespace imarotd
