#include "committed_list.h"

#include <algorithm>
#include <cstring>

#include <spdlog/spdlog.h>

namespace imarotd {
namespace {

// Entries rendered per step of render(), so that the lock is released
// between steps and the parsed entries of one step are all that is held.
constexpr uint64_t kRenderStep = 4096;

}  // namespace

CommittedList::CommittedList(const std::vector<imarot::Entry>& entries) {
  std::lock_guard lock(mutex_);
  imarot::Bytes scratch;
  for (const auto& entry : entries) add_locked(entry, scratch);
}

void CommittedList::add_locked(const imarot::Entry& entry, imarot::Bytes& scratch) {
  scratch.clear();
  imarot::append_binary_record(scratch, entry);
  if (chunks_.empty() || chunks_.back().capacity - chunks_.back().used < scratch.size()) {
    Chunk chunk;
    chunk.capacity = std::max(kChunkSize, scratch.size());
    chunk.bytes = std::make_unique_for_overwrite<char[]>(chunk.capacity);
    chunk.first_byte = bytes_;
    chunks_.push_back(std::move(chunk));
  }
  Chunk& chunk = chunks_.back();
  std::memcpy(chunk.bytes.get() + chunk.used, scratch.data(), scratch.size());
  chunk.used += scratch.size();
  offsets_.push_back(bytes_);
  bytes_ += scratch.size();
  if (entry.is_violation()) ++violations_;
}

void CommittedList::set_listener(std::function<void(uint64_t)> listener) {
  std::lock_guard lock(mutex_);
  listener_ = std::move(listener);
}

void CommittedList::append(const std::vector<imarot::Entry>& entries, uint64_t first_index) {
  uint64_t size = 0;
  std::function<void(uint64_t)> listener;
  {
    std::lock_guard lock(mutex_);
    if (first_index != offsets_.size()) {
      spdlog::error("committed entries start at list index {}, but the D-Bus index holds {} entries; the {} entries "
                    "are left out of D-Bus reads and exports",
                    first_index, offsets_.size(), entries.size());
      return;
    }
    imarot::Bytes scratch;
    for (const auto& entry : entries) add_locked(entry, scratch);
    size = offsets_.size();
    listener = listener_;
  }
  if (listener) listener(size);
}

uint64_t CommittedList::size() const {
  std::lock_guard lock(mutex_);
  return offsets_.size();
}

uint64_t CommittedList::violations() const {
  std::lock_guard lock(mutex_);
  return violations_;
}

uint64_t CommittedList::end_byte_locked(uint64_t index) const {
  return index + 1 < offsets_.size() ? offsets_[index + 1] : bytes_;
}

void CommittedList::copy_locked(uint64_t begin, uint64_t end, std::string& out) const {
  uint64_t first = offsets_[begin];
  uint64_t last = end_byte_locked(end - 1);
  // The chunk that contains byte `first`: the last one starting at or before it.
  auto chunk = std::upper_bound(chunks_.begin(), chunks_.end(), first,
                                [](uint64_t byte, const Chunk& c) { return byte < c.first_byte; });
  --chunk;
  out.reserve(out.size() + (last - first));
  for (; first < last; ++chunk) {
    uint64_t stop = std::min<uint64_t>(last, chunk->first_byte + chunk->used);
    out.append(chunk->bytes.get() + (first - chunk->first_byte), stop - first);
    first = stop;
  }
}

std::vector<imarot::Entry> CommittedList::read(uint64_t offset, uint64_t count, size_t max_bytes) const {
  std::string bytes;
  {
    std::lock_guard lock(mutex_);
    if (offset >= offsets_.size() || count == 0) return {};
    uint64_t end = offset + std::min<uint64_t>(count, offsets_.size() - offset);
    uint64_t begin_byte = offsets_[offset];
    // Stop before the first entry whose record ends past the byte budget,
    // but keep at least one.
    uint64_t stop = offset + 1;
    while (stop < end && end_byte_locked(stop) - begin_byte <= max_bytes) ++stop;
    copy_locked(offset, stop, bytes);
  }
  imarot::ParsedList parsed =
      imarot::parse_binary_list(imarot::ByteView(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()));
  if (parsed.error) {
    // The records were written by append_binary_record above, so this means
    // memory corruption or a format bug; report it rather than hide it.
    spdlog::error("the D-Bus index cannot parse its own records from list index {}: {}", offset,
                  imarot::format_parse_error(*parsed.error));
  }
  return std::move(parsed.entries);
}

uint64_t CommittedList::render(Format format, uint64_t begin, uint64_t end, std::string& out) const {
  uint64_t rendered = 0;
  std::string records;
  while (begin < end) {
    records.clear();
    uint64_t stop = 0;
    {
      std::lock_guard lock(mutex_);
      stop = std::min<uint64_t>({end, offsets_.size(), begin + (format == Format::ascii ? kRenderStep : end - begin)});
      if (begin >= stop) break;
      copy_locked(begin, stop, format == Format::binary ? out : records);
    }
    if (format == Format::ascii) {
      imarot::ParsedList parsed = imarot::parse_binary_list(
          imarot::ByteView(reinterpret_cast<const uint8_t*>(records.data()), records.size()));
      for (const imarot::Entry& entry : parsed.entries) imarot::append_ascii_line(out, entry);
      if (parsed.error) {
        spdlog::error("the D-Bus index cannot parse its own records from list index {}: {}", begin,
                      imarot::format_parse_error(*parsed.error));
        return rendered + parsed.entries.size();
      }
    }
    rendered += stop - begin;
    begin = stop;
  }
  return rendered;
}

}  // namespace imarotd
