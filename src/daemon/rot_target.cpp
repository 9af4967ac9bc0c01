#include "rot_target.h"

#include <time.h>

#include <chrono>
#include <ctime>
#include <fstream>
#include <thread>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "imarot/replay.h"

namespace imarotd {
namespace {

using imarot::rot::RotBackend;

// Reads the register in every bank of the backend, retrying transient
// failures for a few seconds: a restart often races the device coming back.
imarot::Result<std::vector<imarot::Digest>> read_register(RotBackend& backend, uint32_t reg,
                                                          const std::vector<imarot::HashAlgo>& banks,
                                                          const std::string& id) {
  std::vector<imarot::Digest> values;
  for (imarot::HashAlgo bank : banks) {
    for (int attempt = 0;; ++attempt) {
      auto value = backend.read(reg, bank);
      if (value && *value) {
        values.push_back(**value);
        break;
      }
      if (value) {
        return imarot::Error{fmt::format("backend '{}': bank {} of {} {} is not allocated", id,
                                         imarot::hash_name(bank), backend.description().register_kind, reg)};
      }
      if (!imarot::rot::is_transient(value.error().status) || attempt == 20) {
        return imarot::Error{fmt::format("backend '{}': cannot read {} {}: {}", id,
                                         backend.description().register_kind, reg, value.error().message)};
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(250));
    }
  }
  return values;
}

imarot::Result<void> extend_with_retry(RotBackend& backend, uint32_t reg, const imarot::Entry& entry,
                                       const std::string& id, size_t index) {
  for (int attempt = 0;; ++attempt) {
    auto extended = backend.extend(reg, entry);
    if (extended) return imarot::Ok{};
    if (!imarot::rot::is_transient(extended.error().status) || attempt == 20) {
      return imarot::Error{fmt::format("backend '{}': extending list entry {} failed: {}", id, index,
                                       extended.error().message)};
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(250));
  }
}

// Formats `time` as ISO 8601 in UTC to the second: 2024-05-01T12:34:56Z.
std::string iso8601_utc(std::chrono::system_clock::time_point time) {
  std::time_t seconds = std::chrono::system_clock::to_time_t(time);
  struct tm utc {};
  ::gmtime_r(&seconds, &utc);
  char text[32];
  size_t length = std::strftime(text, sizeof text, "%Y-%m-%dT%H:%M:%SZ", &utc);
  return std::string(text, length);
}

void record_divergence(const std::string& state_directory, const std::string& message) {
  std::ofstream out(state_directory + "/divergence.log", std::ios::app);
  out << iso8601_utc(std::chrono::system_clock::now()) << ' ' << message << '\n';
}

}  // namespace

imarot::Result<std::unique_ptr<RotTarget>> RotTarget::open(const std::vector<BackendConfig>& backends,
                                                           const LogStore& log, RotTargetOptions options) {
  std::unique_ptr<RotTarget> target(new RotTarget());
  imarot::rot::BackendSetOptions set_options;
  set_options.plugin_dir = options.plugin_directory;
  set_options.securityfs_root = options.securityfs_root;
  set_options.first_index = log.size();
  target->set_ = imarot::rot::BackendSet(set_options);

  bool first = true;
  for (const BackendConfig& config : backends) {
    const std::string& id = config.name;
    auto loaded = RotBackend::load(config.name, config.config.dump(), options.plugin_directory);
    if (!loaded) return imarot::Error{fmt::format("backend '{}': {}", id, loaded.error().message)};
    std::unique_ptr<RotBackend> backend = std::move(*loaded);
    const imarot::rot::Description& description = backend->description();
    if (description.read_only) {
      return imarot::Error{fmt::format("backend '{}' cannot be an extend target: {}; remove it from \"backends\"",
                                       id, description.read_only_reason)};
    }
    uint32_t reg = config.register_index.value_or(description.default_register);
    if (first) target->default_register_ = reg;
    target->descriptions_.push_back(BackendDescription{id, description, reg});

    // Refuse a bad register before anything is extended into it.
    if (auto checked = backend->check_register(reg); !checked) {
      return imarot::Error{fmt::format("backend '{}': {} {} cannot be used: {}", id, description.register_kind, reg,
                                       checked.error().message)};
    }
    if (auto conflict = imarot::rot::check_kernel_ima_conflict(options.securityfs_root, id, description, reg);
        !conflict) {
      return imarot::Error{conflict.error().message};
    }

    Reconciliation result;
    result.backend_id = id;
    result.register_index = reg;
    std::vector<size_t> members;
    for (size_t i = 0; i < log.entries().size(); ++i) {
      if (log.entries()[i].pcr == target->default_register_) members.push_back(i);
    }
    result.list_entries = members.size();

    std::vector<imarot::HashAlgo> banks = description.bank_algos();
    auto current = read_register(*backend, reg, banks, id);
    if (!current) return current.error();

    // The longest prefix of the list whose replay the register holds.
    std::optional<size_t> matched;
    std::vector<imarot::Digest> running;
    for (imarot::HashAlgo bank : banks) running.push_back(imarot::Digest::zeros(imarot::digest_size(bank)));
    if (running == *current) matched = 0;
    for (size_t k = 0; k < members.size(); ++k) {
      for (size_t b = 0; b < banks.size(); ++b) {
        auto digest = imarot::extend_digest(log.entries()[members[k]], banks[b]);
        if (!digest) return digest.error();
        running[b] = *imarot::extend_value(banks[b], running[b], *digest);
      }
      if (running == *current) matched = k + 1;
    }

    if (!matched) {
      result.diverged = true;
      result.message = fmt::format(
          "backend '{}': {} {} matches no prefix of the measurement list '{}' ({} entries): something else extended "
          "it, or the list is not the one this register was extended from. Nothing will be extended into it; the "
          "list is kept as it is",
          id, description.register_kind, reg, log.path(), members.size());
      spdlog::critical("{}", result.message);
      record_divergence(options.state_directory, result.message);
      imarot::rot::BackendStatus refused;
      refused.id = id;
      refused.backend = config.name;
      refused.register_index = reg;
      refused.state = imarot::rot::BackendState::refused;
      refused.last_error = result.message;
      target->refused_.push_back(refused);
      target->reconciliations_.push_back(result);
      first = false;
      continue;
    }

    result.already_extended = *matched;
    for (size_t k = *matched; k < members.size(); ++k) {
      auto extended = extend_with_retry(*backend, reg, log.entries()[members[k]], id, members[k]);
      if (!extended) return extended.error();
      ++result.re_extended;
    }
    result.message = fmt::format("backend '{}': {} {} contains {} of {} list entries; extended the other {}", id,
                                 description.register_kind, reg, result.already_extended, members.size(),
                                 result.re_extended);
    spdlog::info("{}", result.message);
    target->reconciliations_.push_back(result);

    if (auto added = target->set_.add(id, std::move(backend), reg); !added) {
      return imarot::Error{added.error().message};
    }
    first = false;
  }
  return target;
}

imarot::Result<imarot::Entry> RotTarget::boot_aggregate_entry(imarot::HashAlgo ima_hash,
                                                              const imarot::TemplateDescriptor& tmpl) {
  imarot::TemplateInput input;
  input.name = "boot_aggregate";
  input.digest_algo = ima_hash;
  input.digest = imarot::Digest::zeros(imarot::digest_size(ima_hash));

  std::lock_guard lock(mutex_);
  if (set_.size() > 0) {
    imarot::rot::RotBackend& primary = set_.backend(0);
    auto aggregate = primary.boot_aggregate(ima_hash);
    if (!aggregate) return imarot::Error{fmt::format("boot_aggregate: {}", aggregate.error().message)};
    input.digest_algo = aggregate->bank;
    input.digest = aggregate->digest;
    if (tmpl.has_field(imarot::FieldId::d)) {
      auto sha1 = primary.boot_aggregate(imarot::HashAlgo::sha1);
      if (sha1 && sha1->bank == imarot::HashAlgo::sha1) input.legacy_digest = sha1->digest;
    }
  }
  return imarot::make_entry(default_register_, tmpl, input);
}

void RotTarget::extend(const std::vector<imarot::Entry>& entries, uint64_t first_index) {
  std::lock_guard lock(mutex_);
  for (const auto& entry : entries) {
    uint64_t index = set_.submit(entry);
    if (index != first_index++) {
      spdlog::critical("list index {} was submitted as {}; the backend queue is out of step", first_index - 1, index);
    }
  }
  set_.pump();
}

void RotTarget::pump() {
  std::lock_guard lock(mutex_);
  set_.pump();
}

std::vector<imarot::rot::BackendStatus> RotTarget::status() const {
  std::lock_guard lock(mutex_);
  std::vector<imarot::rot::BackendStatus> all = set_.status();
  all.insert(all.end(), refused_.begin(), refused_.end());
  return all;
}

imarot::rot::RotResult<imarot::rot::RotBackend*> RotTarget::find_backend(const std::string& id) {
  using imarot::rot::RotError;
  using imarot::rot::Status;
  std::vector<imarot::rot::BackendStatus> open = set_.status();
  for (size_t i = 0; i < open.size(); ++i) {
    if (open[i].id == id) return &set_.backend(i);
  }
  for (const auto& refused : refused_) {
    if (refused.id == id) {
      // Not the caller's fault: the backend's device or configuration
      // failed when imarotd started.
      return RotError{Status::unavailable, 0, fmt::format("backend '{}' was refused at start and is not open: {}", id,
                                                          refused.last_error)};
    }
  }
  std::string known;
  for (const auto& status : open) known += (known.empty() ? "'" : ", '") + status.id + "'";
  return RotError{Status::invalid, 0,
                  fmt::format("unknown backend '{}'; the open backends are {}", id,
                              known.empty() ? std::string("none") : known)};
}

imarot::rot::RotResult<imarot::rot::BankRead> RotTarget::read_registers(const std::string& id, imarot::HashAlgo bank,
                                                                        const std::vector<uint32_t>& registers) {
  using imarot::rot::RotError;
  using imarot::rot::Status;
  std::lock_guard lock(mutex_);
  auto backend = find_backend(id);
  if (!backend) return backend.error();
  const imarot::rot::Description& description = (*backend)->description();
  for (uint32_t reg : registers) {
    if (reg >= description.register_count) {
      return RotError{Status::invalid, 0,
                      fmt::format("backend '{}' has no {} {}; its registers are 0 to {}", id,
                                  description.register_kind, reg, description.register_count - 1)};
    }
  }
  auto read = (*backend)->read_bank(bank, registers);
  if (!read) return read.error();
  if (!read->allocated) {
    return RotError{Status::unallocated, 0,
                    fmt::format("bank {} of backend '{}' is not allocated", imarot::hash_name(bank), id)};
  }
  return read;
}

imarot::rot::RotResult<imarot::rot::BootAggregate> RotTarget::boot_aggregate(const std::string& id,
                                                                             imarot::HashAlgo ima_hash) {
  std::lock_guard lock(mutex_);
  auto backend = find_backend(id);
  if (!backend) return backend.error();
  return (*backend)->boot_aggregate(ima_hash);
}

}  // namespace imarotd
