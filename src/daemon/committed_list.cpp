#include "committed_list.h"

#include <algorithm>

#include <spdlog/spdlog.h>

namespace imarotd {

void ChunkedBuffer::append(const char* data, size_t size) {
  open_.append(data, size);
  size_ += size;
  if (open_.size() >= kChunkSize) {
    sealed_starts_.push_back(open_start_);
    sealed_.push_back(std::make_shared<const std::string>(std::move(open_)));
    open_ = std::string();
    open_.reserve(kChunkSize + kChunkSize / 4);
    open_start_ = size_;
  }
}

void ChunkedBuffer::copy(uint64_t begin, uint64_t end, std::string& out) const {
  if (begin >= end) return;
  // The first sealed chunk that ends after `begin`.
  auto it = std::upper_bound(sealed_starts_.begin(), sealed_starts_.end(), begin);
  size_t chunk = it == sealed_starts_.begin() ? 0 : static_cast<size_t>(it - sealed_starts_.begin() - 1);
  for (; chunk < sealed_.size() && begin < end; ++chunk) {
    uint64_t start = sealed_starts_[chunk];
    const std::string& bytes = *sealed_[chunk];
    if (begin >= start + bytes.size()) continue;
    uint64_t stop = std::min<uint64_t>(end, start + bytes.size());
    out.append(bytes, begin - start, stop - begin);
    begin = stop;
  }
  if (begin < end) out.append(open_, begin - open_start_, end - begin);
}

std::vector<std::shared_ptr<const std::string>> ChunkedBuffer::share() const {
  std::vector<std::shared_ptr<const std::string>> chunks = sealed_;
  if (!open_.empty()) chunks.push_back(std::make_shared<const std::string>(open_));
  return chunks;
}

CommittedList::CommittedList(const std::vector<imarot::Entry>& entries) {
  std::lock_guard lock(mutex_);
  offsets_.reserve(entries.size());
  for (const auto& entry : entries) add_locked(entry);
}

void CommittedList::add_locked(const imarot::Entry& entry) {
  imarot::Bytes record;
  imarot::append_binary_record(record, entry);
  std::string line;
  imarot::append_ascii_line(line, entry);
  offsets_.push_back(binary_.size());
  binary_.append(reinterpret_cast<const char*>(record.data()), record.size());
  ascii_.append(line.data(), line.size());
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
    for (const auto& entry : entries) add_locked(entry);
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

std::vector<imarot::Entry> CommittedList::read(uint64_t offset, uint64_t count, size_t max_bytes) const {
  std::string bytes;
  {
    std::lock_guard lock(mutex_);
    if (offset >= offsets_.size() || count == 0) return {};
    uint64_t end = offset + std::min<uint64_t>(count, offsets_.size() - offset);
    uint64_t begin_byte = offsets_[offset];
    // Stop before the first entry whose record ends past the byte budget,
    // but keep at least one.
    auto record_end = [&](uint64_t index) { return index + 1 < offsets_.size() ? offsets_[index + 1] : binary_.size(); };
    uint64_t stop = offset + 1;
    while (stop < end && record_end(stop) - begin_byte <= max_bytes) ++stop;
    uint64_t end_byte = stop < offsets_.size() ? offsets_[stop] : binary_.size();
    binary_.copy(begin_byte, end_byte, bytes);
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

CommittedList::Snapshot CommittedList::snapshot(Format format) const {
  std::lock_guard lock(mutex_);
  const ChunkedBuffer& buffer = format == Format::binary ? binary_ : ascii_;
  Snapshot snapshot;
  snapshot.chunks = buffer.share();
  snapshot.entries = offsets_.size();
  snapshot.bytes = buffer.size();
  return snapshot;
}

}  // namespace imarotd
