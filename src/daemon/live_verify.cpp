#include "live_verify.h"

#include <fmt/format.h>

namespace imarotd {
namespace {

// NOTE: the whole list is parsed into memory for the replay, so a Verify of
// a million entries keeps a few hundred megabytes until it returns.
imarot::ParsedList parse_list(const CommittedList& list, uint64_t entries) {
  std::string records;
  list.render(CommittedList::Format::binary, 0, entries, records);
  return imarot::parse_binary_list(
      imarot::ByteView(reinterpret_cast<const uint8_t*>(records.data()), records.size()));
}

LiveVerifyResult verify_once(const imarot::ParsedList& list, const std::vector<BackendReference>& references,
                             const LiveVerifyRequest& request) {
  imarot::VerifyOptions options;
  options.banks = request.banks;
  options.pcr = request.register_index;
  options.allow_trailing = true;

  LiveVerifyResult result;
  result.entries = list.entries.size();
  for (const BackendReference& reference : references) {
    BackendVerifyResult checked{reference.backend, imarot::verify_list(list, reference.values, options)};
    if (list.error) {
      checked.report.failures.push_back(
          imarot::VerifyFinding{list.error->entry_index, "the daemon cannot parse its own list: " +
                                                             imarot::format_parse_error(*list.error)});
    }
    result.backends.push_back(std::move(checked));
  }
  return result;
}

}  // namespace

bool LiveVerifyResult::ok() const {
  for (const auto& backend : backends) {
    if (!backend.report.ok()) return false;
  }
  return true;
}

imarot::Result<std::vector<BackendReference>> read_live_references(ManagerModel& model,
                                                                   const LiveVerifyRequest& request) {
  std::vector<BackendView> all = model.backends();
  if (all.empty()) {
    return imarot::Error{"imarotd has no backends whose registers could be checked", kModelInvalidArgument};
  }
  std::vector<BackendView> selected;
  for (const BackendView& backend : all) {
    if (request.backend.empty() || backend.id == request.backend) selected.push_back(backend);
  }
  if (selected.empty()) {
    std::string ids;
    for (const BackendView& backend : all) ids += (ids.empty() ? "" : ", ") + backend.id;
    return imarot::Error{fmt::format("backend: backend '{}' not found; imarotd's backends are {}", request.backend, ids),
                         kModelInvalidArgument};
  }

  const BackendView& first = all.front();
  uint32_t list_register = first.register_index;
  std::vector<BackendReference> references;
  for (const BackendView& backend : selected) {
    bool primary_tpm = backend.id == first.id && backend.register_kind == "PCR" && backend.register_count >= 10;
    BackendReference reference{backend, {}};
    for (imarot::HashAlgo bank : backend.banks) {
      if (request.banks && request.banks->count(bank) == 0) continue;
      std::vector<uint32_t> registers = {backend.register_index};
      if (primary_tpm) {
        for (uint32_t i = 0; i < imarot::boot_aggregate_pcr_count(bank); ++i) {
          if (i != backend.register_index) registers.push_back(i);
        }
      }
      auto read = model.read_registers(backend.id, bank, registers);
      if (!read) {
        if (read.error().code == kModelUnallocated) continue;  // an unallocated bank has nothing to check
        // Messages from the backend set name the backend already.
        const std::string& message = read.error().message;
        bool named = message.find("'" + backend.id + "'") != std::string::npos;
        return imarot::Error{named ? message : fmt::format("backend {}: {}", backend.id, message), read.error().code};
      }
      if (!read->allocated) continue;
      for (size_t i = 0; i < read->registers.size(); ++i) {
        uint32_t index = read->registers[i] == backend.register_index ? list_register : read->registers[i];
        reference.values[imarot::RegisterId{index, bank}] = read->values[i];
      }
    }
    references.push_back(std::move(reference));
  }
  return references;
}

LiveVerifyResult verify_live(const CommittedList& list, uint64_t entries, const std::vector<BackendReference>& references,
                             const LiveVerifyRequest& request) {
  LiveVerifyResult result = verify_once(parse_list(list, entries), references, request);
  uint64_t now = list.size();
  if (!result.ok() && now > entries) result = verify_once(parse_list(list, now), references, request);
  return result;
}

}  // namespace imarotd
