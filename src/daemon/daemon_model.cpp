#include "daemon_model.h"

#include <spdlog/spdlog.h>

namespace imarotd {
namespace {

imarot::Error to_model_error(const imarot::rot::RotError& error) {
  using imarot::rot::Status;
  int code = kModelBackendFailed;
  if (error.status == Status::invalid) code = kModelInvalidArgument;
  if (error.status == Status::unallocated) code = kModelUnallocated;
  return imarot::Error{error.message, code};
}

}  // namespace

std::vector<BackendView> DaemonModel::backends() const {
  std::vector<imarot::rot::BackendStatus> statuses = rot_.status();
  std::vector<BackendView> views;
  for (const auto& described : rot_.descriptions()) {
    BackendView view;
    view.id = described.id;
    view.plugin = described.description.name;
    view.register_kind = described.description.register_kind;
    view.register_index = described.register_index;
    view.register_count = described.description.register_count;
    view.banks = described.description.bank_algos();
    for (const auto& status : statuses) {
      if (status.id != described.id) continue;
      view.state = std::string(imarot::rot::backend_state_name(status.state));
      view.pending = status.pending;
      view.last_error = status.last_error;
    }
    views.push_back(std::move(view));
  }
  return views;
}

imarot::Result<imarot::rot::BankRead> DaemonModel::read_registers(const std::string& backend, imarot::HashAlgo bank,
                                                                  const std::vector<uint32_t>& registers) {
  auto read = rot_.read_registers(backend, bank, registers);
  if (!read) return to_model_error(read.error());
  return std::move(*read);
}

imarot::Result<imarot::rot::BootAggregate> DaemonModel::boot_aggregate(const std::string& backend,
                                                                       imarot::HashAlgo ima_hash) {
  auto aggregate = rot_.boot_aggregate(backend, ima_hash);
  if (!aggregate) return to_model_error(aggregate.error());
  return *aggregate;
}

imarot::Result<std::string> DaemonModel::reload_policy() {
  auto reloaded = reload_();
  if (!reloaded) {
    spdlog::error("policy reload requested over D-Bus failed, keeping the current policy: {}",
                  reloaded.error().message);
    return imarot::Error{reloaded.error().message, kModelPolicyInvalid};
  }
  return *reloaded;
}

}  // namespace imarotd
