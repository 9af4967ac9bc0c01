// The durable measurement list: a binary_runtime_measurements file in the
// state directory, one per boot, appended and fdatasync'd before any entry
// in it is extended into a root of trust.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "event.h"
#include "imarot/measurement_list.h"
#include "imarot/result.h"

namespace imarotd {

class LogStore {
 public:
  // Opens (or creates) the list of boot `boot_id` under `state_dir`:
  // <state_dir>/lists/<boot_id>.bin, linked as <state_dir>/current.bin.
  // Entries already in the file are loaded. A record cut short by a crash
  // during write() was never synced, so never extended: it is removed and
  // reported in recovery_note(). The side file <boot_id>.committed contains
  // the size of the list after the last completed append. A cut record is
  // removed only when it starts at or after that size. Any other damage is
  // an error, and the file is left as it is.
  static imarot::Result<std::unique_ptr<LogStore>> open(const std::string& state_dir, const std::string& boot_id);

  ~LogStore();
  LogStore(const LogStore&) = delete;
  LogStore& operator=(const LogStore&) = delete;

  // Appends the records and makes them durable (one fdatasync for the whole
  // batch). Returns the byte offset in the file of each appended record. On
  // error nothing of the batch counts as appended, and the file is cut back
  // to its previous size.
  imarot::Result<std::vector<uint64_t>> append(const std::vector<imarot::Entry>& batch);

  // Reads up to buffer.size() bytes of the list file at byte `offset`.
  // Returns the count read, which is smaller only at the end of the file.
  imarot::Result<size_t> read_at(uint64_t offset, std::span<uint8_t> buffer) const;

  // The entries in memory: those loaded by open() and, until
  // release_entries() is called, those appended since.
  const std::vector<imarot::Entry>& entries() const { return entries_; }
  // The byte offset in the file of each record in entries().
  const std::vector<uint64_t>& entry_offsets() const { return entry_offsets_; }
  // Frees the entries in memory and their offsets, and stops keeping
  // appended ones. The daemon calls it once the parts that read the whole
  // list at startup have done so, because the D-Bus list keeps its own
  // compact copy.
  void release_entries();
  // Entries in the file, whether kept in memory or not.
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }
  const std::string& boot_id() const { return boot_id_; }
  const std::optional<std::string>& recovery_note() const { return recovery_note_; }

 private:
  LogStore() = default;
  std::string path_;
  std::string boot_id_;
  UniqueFd fd_;
  UniqueFd committed_fd_;
  uint64_t file_size_ = 0;
  std::vector<imarot::Entry> entries_;
  std::vector<uint64_t> entry_offsets_;
  size_t size_ = 0;
  bool keep_entries_ = true;
  std::optional<std::string> recovery_note_;
};

// Reads /proc/sys/kernel/random/boot_id (or `path` in tests).
imarot::Result<std::string> read_boot_id(const std::string& path = "/proc/sys/kernel/random/boot_id");

}  // namespace imarotd
