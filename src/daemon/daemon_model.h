// The running daemon as the D-Bus service sees it: counters from the
// pipeline, roots of trust from RotTarget, and the daemon's own policy
// reload.
#pragma once

#include <functional>
#include <string>

#include "dbus_service.h"
#include "pipeline.h"
#include "rot_target.h"

namespace imarotd {

class DaemonModel : public ManagerModel {
 public:
  // `reload` loads and installs the configured policy and returns its
  // source; `policy_source` returns the source in use. Both run on the
  // daemon's main thread.
  DaemonModel(const Pipeline& pipeline, RotTarget& rot, std::function<imarot::Result<std::string>()> reload,
              std::function<std::string()> policy_source)
      : pipeline_(pipeline), rot_(rot), reload_(std::move(reload)), policy_source_(std::move(policy_source)) {}

  std::string policy_source() const override { return policy_source_(); }
  uint64_t lost_events() const override { return pipeline_.counters().lost_events.load(); }
  std::vector<BackendView> backends() const override;
  imarot::Result<imarot::rot::BankRead> read_registers(const std::string& backend, imarot::HashAlgo bank,
                                                       const std::vector<uint32_t>& registers) override;
  imarot::Result<imarot::rot::BootAggregate> boot_aggregate(const std::string& backend,
                                                            imarot::HashAlgo ima_hash) override;
  imarot::Result<std::string> reload_policy() override;

 private:
  const Pipeline& pipeline_;
  RotTarget& rot_;
  std::function<imarot::Result<std::string>()> reload_;
  std::function<std::string()> policy_source_;
};

}  // namespace imarotd
