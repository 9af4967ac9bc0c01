// The roots of trust behind the pipeline: startup reconciliation of each
// register with the durable list, then extends of every committed entry.
#pragma once

#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "config.h"
#include "imarot/rot.h"
#include "imarot/rot_backend_set.h"
#include "log_store.h"
#include "pipeline.h"

namespace imarotd {

struct RotTargetOptions {
  std::string plugin_directory;
  std::string securityfs_root = "/sys/kernel/security";
  std::string state_directory;  // divergence records go here
};

// Result of matching one backend's register against the list at start.
struct Reconciliation {
  std::string backend_id;
  uint32_t register_index = 0;
  size_t list_entries = 0;     // entries of the list that extend this register
  size_t already_extended = 0; // the prefix the register contains
  size_t re_extended = 0;      // entries appended but not extended before the restart
  bool diverged = false;       // the register matches no prefix of the list
  std::string message;
};

class RotTarget : public CommitTarget {
 public:
  // Loads every configured backend, checks its register (extendable, not
  // shared with kernel IMA), matches the register against the list in
  // `log`, re-extends the entries appended but not extended, and makes the
  // backend ready for new entries. A backend whose register matches no
  // prefix of the list is refused: reported, recorded under the state
  // directory, and never extended, while the others carry on.
  static imarot::Result<std::unique_ptr<RotTarget>> open(const std::vector<BackendConfig>& backends,
                                                         const LogStore& log, RotTargetOptions options);

  // The list's PCR column value for entries without a policy pcr=: the
  // first backend's register, or 10 without backends.
  uint32_t default_register() const { return default_register_; }
  const std::vector<Reconciliation>& reconciliations() const { return reconciliations_; }

  // boot_aggregate from the first backend, as kernel IMA computes it for
  // `ima_hash`; all zeros of `ima_hash` without a backend.
  imarot::Result<imarot::Entry> boot_aggregate_entry(imarot::HashAlgo ima_hash,
                                                     const imarot::TemplateDescriptor& tmpl);

  void extend(const std::vector<imarot::Entry>& entries, uint64_t first_index) override;

  // Retries degraded backends whose backoff has expired.
  void pump();
  std::vector<imarot::rot::BackendStatus> status() const;

  // Descriptions of the configured backends as they were opened, in config
  // order, refused ones included.
  struct BackendDescription {
    std::string id;
    imarot::rot::Description description;
    uint32_t register_index = 0;
  };
  const std::vector<BackendDescription>& descriptions() const { return descriptions_; }

  // Reads registers of the backend `id`, serialized with the extends. An
  // unknown or refused backend, a bank the backend does not extend and a
  // register it does not have are Status::invalid; an unallocated bank is
  // Status::unallocated.
  imarot::rot::RotResult<imarot::rot::BankRead> read_registers(const std::string& id, imarot::HashAlgo bank,
                                                               const std::vector<uint32_t>& registers);
  imarot::rot::RotResult<imarot::rot::BootAggregate> boot_aggregate(const std::string& id, imarot::HashAlgo ima_hash);

 private:
  RotTarget() = default;

  mutable std::mutex mutex_;
  imarot::rot::BackendSet set_{imarot::rot::BackendSetOptions{}};
  std::vector<Reconciliation> reconciliations_;
  std::vector<imarot::rot::BackendStatus> refused_;  // backends kept out of the set
  std::vector<BackendDescription> descriptions_;

  // The open backend with id `id`; a Status::invalid error naming the
  // backends that can be used otherwise. Requires mutex_.
  imarot::rot::RotResult<imarot::rot::RotBackend*> find_backend(const std::string& id);
  uint32_t default_register_ = 10;
};

}  // namespace imarotd
