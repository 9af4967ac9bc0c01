// Memfds that contain the committed list in one format, the files behind the
// D-Bus Export method. A file is appended to while it is private to the
// daemon, then sealed against every change before any caller receives it.
#pragma once

#include <cstdint>
#include <optional>

#include "committed_list.h"
#include "event.h"

namespace imarotd {

// A memfd with the first `entries` entries of the list, `bytes` bytes long.
struct ListFile {
  UniqueFd fd;
  uint64_t entries = 0;
  uint64_t bytes = 0;
};

// Creates an empty memfd that allows sealing; nullopt with errno set on
// failure.
std::optional<ListFile> create_list_file();

// Creates a memfd with a copy of the first `source.bytes` bytes of `source`,
// copied inside the kernel; nullopt with errno set on failure.
std::optional<ListFile> copy_list_file(const ListFile& source);

// Appends entries [file.entries, end) of `list` in `format` to the file, in
// steps of a few thousand entries. Returns false with errno set when a write
// fails; the file then ends after the last whole step written.
bool extend_list_file(ListFile& file, const CommittedList& list, CommittedList::Format format, uint64_t end);

// Forbids every later change of the file's size and content, and further
// seals. Returns false with errno set on failure.
bool seal_list_file(const ListFile& file);

// Opens the file again read-only, as a new file description whose offset
// starts at 0, so that callers that receive it do not share an offset.
// Returns -1 with errno set on failure.
int reopen_read_only(const ListFile& file);

}  // namespace imarotd
