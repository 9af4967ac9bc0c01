// The Verify method's work: the daemon's list replayed against the registers
// of each backend, in every bank the backend extends.
#pragma once

#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "committed_list.h"
#include "dbus_service.h"
#include "imarot/replay.h"

namespace imarotd {

// Options of a Verify call.
struct LiveVerifyRequest {
  std::string backend;  // one backend id; empty for every backend
  std::optional<std::set<imarot::HashAlgo>> banks;
  std::optional<uint32_t> register_index;
};

// One backend's register values, keyed by the register index the list's
// entries name (the first backend's register), so that one replay serves
// backends whose own register index differs.
struct BackendReference {
  BackendView backend;
  imarot::RegisterValues values;
};

struct BackendVerifyResult {
  BackendView backend;
  imarot::VerifyReport report;
};

struct LiveVerifyResult {
  uint64_t entries = 0;  // entries of the list that were replayed
  std::vector<BackendVerifyResult> backends;
  bool ok() const;
};

// Reads the register values the check compares with, on the main thread.
// These are each selected backend's register in every bank that it extends
// and the request allows. For the first backend, when it is a TPM, they
// also include PCR 0-9 (0-7 in sha1) for the boot_aggregate check.
// Unallocated banks are skipped. The error carries a ModelErrorCode, which
// is kModelInvalidArgument for an unknown backend or a daemon without
// backends.
imarot::Result<std::vector<BackendReference>> read_live_references(ManagerModel& model,
                                                                   const LiveVerifyRequest& request);

// Replays the first `entries` entries of `list` against each reference.
// The registers were read before the list size was taken, so the list
// contains at least the entries extended into them, and later entries are
// reported as trailing, not as failures. An entry that was extended but not
// yet committed when the registers were read makes a register look ahead
// of the list. A failed check is therefore repeated once with the list as
// it is then. Safe to run on any thread.
LiveVerifyResult verify_live(const CommittedList& list, uint64_t entries, const std::vector<BackendReference>& references,
                             const LiveVerifyRequest& request);

}  // namespace imarotd
