#include "tpm2_device.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <tss2/tss2_tctildr.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <map>
#include <thread>

#include <fmt/format.h>

#include "imarot/replay.h"
#include "sigpipe_guard.h"
#include "tpm2_rc.h"

namespace imarot::tpm2 {

using rot::RotError;
using rot::RotResult;
using rot::Status;

namespace {

struct EsysFree {
  void operator()(void* pointer) const { Esys_Free(pointer); }
};
template <typename T>
using EsysPtr = std::unique_ptr<T, EsysFree>;

// Kernel IMA's TPM range is 8 to 14; PCRs 17 to 22 belong to the dynamic
// root of trust and take extends only from localities 2 to 4.
constexpr uint32_t kFirstDrtmPcr = 17;
constexpr uint32_t kLastDrtmPcr = 22;

// When a PCR read spans several TPM2_PCR_Read commands and a PCR changes in
// between (the update counter moves), the read starts over this many times
// before it accepts values from different moments.
constexpr unsigned kReadRestarts = 3;

bool path_exists(const char* path) {
  struct stat info {};
  return ::stat(path, &info) == 0;
}

std::string default_tcti() {
  // /dev/tpmrm0 is the kernel's resource manager, which many processes can
  // share. The raw /dev/tpm0 admits one process at a time, but it is the only
  // node on kernels older than the resource manager.
  if (path_exists("/dev/tpmrm0") || !path_exists("/dev/tpm0")) return "device:/dev/tpmrm0";
  return "device:/dev/tpm0";
}

// Opens a TPM character device once to turn a failure into a useful message:
// the device TCTI reports every open failure as the same I/O error.
RotResult<void> probe_device(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
  if (fd >= 0) {
    ::close(fd);
    return Ok{};
  }
  int error = errno;
  switch (error) {
    case EBUSY:
      return RotError{Status::retry, error,
                      fmt::format("TPM device '{}' is busy: another process holds it open, and the raw device admits "
                                  "one process at a time; use \"tcti\": \"device:/dev/tpmrm0\", the kernel's resource "
                                  "manager, which can be shared",
                                  path)};
    case EACCES:
    case EPERM:
      return RotError{Status::invalid, error,
                      fmt::format("cannot open TPM device '{}': {}; run as root or as a member of the group that "
                                  "owns the device (tss on most distributions)",
                                  path, std::strerror(error))};
    default:
      return RotError{Status::unavailable, error,
                      fmt::format("cannot open TPM device '{}': {}", path, std::strerror(error))};
  }
}

// tpm2-tss opens its descriptors without O_CLOEXEC. A child process that
// inherits one keeps the TPM connection open after this process has closed
// it, which stalls a swtpm (it serves one connection at a time), so the
// descriptors the TCTI reports are marked close-on-exec.
// NOTE: the swtpm and mssim TCTIs of tpm2-tss 3.2 report none. The swtpm TCTI
// opens a socket per command, so a process that forks during a command still
// passes that socket on. Such a process should close inherited descriptors
// in the child.
TSS2_RC poll_handles(TSS2_TCTI_CONTEXT* tcti, TSS2_TCTI_POLL_HANDLE* handles, size_t* count) {
  // The tss2_tcti.h accessor macro casts in C style.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wold-style-cast"
  return Tss2_Tcti_GetPollHandles(tcti, handles, count);
#pragma GCC diagnostic pop
}

void mark_close_on_exec(TSS2_TCTI_CONTEXT* tcti) {
  size_t count = 0;
  if (poll_handles(tcti, nullptr, &count) != TSS2_RC_SUCCESS || count == 0) return;
  std::vector<TSS2_TCTI_POLL_HANDLE> handles(count);
  if (poll_handles(tcti, handles.data(), &count) != TSS2_RC_SUCCESS) return;
  for (size_t i = 0; i < count && i < handles.size(); ++i) {
    int flags = ::fcntl(handles[i].fd, F_GETFD);
    if (flags >= 0) ::fcntl(handles[i].fd, F_SETFD, flags | FD_CLOEXEC);
  }
}

std::string bank_list(const std::vector<PcrBank>& banks) {
  std::vector<std::string> names;
  for (const PcrBank& bank : banks) {
    std::string name = bank.algo ? std::string(hash_name(*bank.algo)) : fmt::format("0x{:04x}", bank.alg);
    if (bank.pcrs.none()) name += " (unallocated)";
    names.push_back(std::move(name));
  }
  return names.empty() ? std::string("none") : fmt::format("{}", fmt::join(names, ", "));
}

}  // namespace

Device::Device(Config config) : config_(std::move(config)) {
  tcti_string_ = config_.tcti.value_or(default_tcti());
}

Device::~Device() {
  // Closing an mssim connection sends a session-end message over it.
  SigpipeGuard guard;
  disconnect();
}

RotResult<std::unique_ptr<Device>> Device::open(Config config) {
  std::unique_ptr<Device> device(new Device(std::move(config)));
  SigpipeGuard guard;
  if (auto connected = device->connect(); !connected) return connected.error();
  return device;
}

void Device::disconnect() {
  if (esys_ != nullptr) Esys_Finalize(&esys_);
  if (tcti_ != nullptr) Tss2_TctiLdr_Finalize(&tcti_);
  esys_ = nullptr;
  tcti_ = nullptr;
}

RotError Device::tss_error(TSS2_RC rc, std::string_view operation) {
  RcClass rc_class = classify_rc(rc);
  if (rc_class.transport) disconnect();
  std::string message = fmt::format("{}: {}", operation, describe_rc(rc));
  if ((rc & ~TSS2_RC_LAYER_MASK) == TPM2_RC_INITIALIZE && (rc & TSS2_RC_LAYER_MASK) == TSS2_TPM_RC_LAYER) {
    message += "; the TPM has not been started with TPM2_Startup (swtpm does so with --flags startup-clear)";
  }
  return RotError{rc_class.status, static_cast<int>(rc), std::move(message)};
}

RotResult<void> Device::connect() {
  if (esys_ != nullptr) return Ok{};

  if (tcti_name(tcti_string_) == "device") {
    size_t colon = tcti_string_.find(':');
    std::string path = colon == std::string::npos ? std::string() : tcti_string_.substr(colon + 1);
    // tpm2-tss's device TCTI opens /dev/tpm0 when no path is given.
    if (path.empty()) path = "/dev/tpm0";
    if (auto probed = probe_device(path); !probed) return probed.error();
  }

  TSS2_RC rc = Tss2_TctiLdr_Initialize(tcti_string_.c_str(), &tcti_);
  if (rc != TSS2_RC_SUCCESS) {
    tcti_ = nullptr;
    return RotError{Status::unavailable, static_cast<int>(rc),
                    fmt::format("cannot connect to the TPM through TCTI '{}': {}; check that the TPM or emulator is "
                                "running there and that libtss2-tcti-{} is installed",
                                tcti_string_, describe_rc(rc), tcti_name(tcti_string_))};
  }
  mark_close_on_exec(tcti_);
  rc = Esys_Initialize(&esys_, tcti_, nullptr);
  if (rc != TSS2_RC_SUCCESS) {
    esys_ = nullptr;
    Tss2_TctiLdr_Finalize(&tcti_);
    tcti_ = nullptr;
    return RotError{Status::unavailable, static_cast<int>(rc),
                    fmt::format("cannot initialize ESAPI on TCTI '{}': {}", tcti_string_, describe_rc(rc))};
  }
  return discover();
}

RotResult<void> Device::discover() {
  TPMI_YES_NO more = TPM2_NO;
  TPMS_CAPABILITY_DATA* raw = nullptr;
  TSS2_RC rc = Esys_GetCapability(esys_, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, TPM2_CAP_PCRS, 0, 1, &more, &raw);
  EsysPtr<TPMS_CAPABILITY_DATA> pcrs_cap(raw);
  if (rc != TSS2_RC_SUCCESS) return tss_error(rc, "reading the TPM's PCR banks (TPM2_GetCapability) failed");

  std::vector<PcrBank> implemented;
  const TPML_PCR_SELECTION& assigned = pcrs_cap->data.assignedPCR;
  for (uint32_t i = 0; i < assigned.count && i < TPM2_NUM_PCR_BANKS; ++i) {
    const TPMS_PCR_SELECTION& selection = assigned.pcrSelections[i];
    PcrBank bank;
    bank.alg = selection.hash;
    bank.algo = hash_algo_from_tpm_id(selection.hash);
    for (uint32_t byte = 0; byte < selection.sizeofSelect && byte < TPM2_PCR_SELECT_MAX; ++byte) {
      for (uint32_t bit = 0; bit < 8; ++bit) {
        if ((selection.pcrSelect[byte] >> bit) & 1u) bank.pcrs.set(byte * 8 + bit);
      }
    }
    implemented.push_back(bank);
  }

  raw = nullptr;
  rc = Esys_GetCapability(esys_, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, TPM2_CAP_TPM_PROPERTIES, TPM2_PT_PCR_COUNT,
                          1, &more, &raw);
  EsysPtr<TPMS_CAPABILITY_DATA> count_cap(raw);
  if (rc != TSS2_RC_SUCCESS) return tss_error(rc, "reading the TPM's PCR count (TPM2_GetCapability) failed");
  uint32_t pcr_count = 24;
  const TPML_TAGGED_TPM_PROPERTY& properties = count_cap->data.tpmProperties;
  if (properties.count >= 1 && properties.tpmProperty[0].property == TPM2_PT_PCR_COUNT) {
    pcr_count = std::min<uint32_t>(properties.tpmProperty[0].value, TPM2_MAX_PCRS);
  }

  std::vector<rot::Bank> banks;
  for (const PcrBank& bank : implemented) {
    if (bank.pcrs.none()) continue;
    if (!bank.algo) {
      return RotError{Status::invalid, 0,
                      fmt::format("the TPM has a PCR bank of TPM algorithm 0x{:04x} allocated, which imarotd cannot "
                                  "compute; an active bank left unextended could be extended with forged values, so "
                                  "deallocate it (tpm2_pcrallocate) or use another TPM",
                                  bank.alg)};
    }
    banks.push_back(rot::Bank{*bank.algo, digest_size(*bank.algo), bank.alg});
  }
  if (banks.empty()) {
    return RotError{Status::invalid, 0, fmt::format("the TPM has no PCR bank allocated ({})", bank_list(implemented))};
  }

  // A reconnect must find the same TPM configuration: the banks are part of
  // the description the caller extends against.
  if (!banks_.empty()) {
    bool same = banks.size() == banks_.size() &&
                std::equal(banks.begin(), banks.end(), banks_.begin(),
                           [](const rot::Bank& a, const rot::Bank& b) { return a.algo == b.algo; });
    if (!same || pcr_count != pcr_count_) {
      disconnect();
      return RotError{Status::invalid, 0,
                      fmt::format("after reconnecting, the TPM has PCR banks {} and {} PCRs, which differ from when "
                                  "the backend was opened; reopen it",
                                  bank_list(implemented), pcr_count)};
    }
  }
  implemented_ = std::move(implemented);
  banks_ = std::move(banks);
  pcr_count_ = pcr_count;
  return Ok{};
}

RotResult<void> Device::check_pcr(uint32_t pcr) const {
  if (pcr >= pcr_count_) {
    return RotError{Status::invalid, 0,
                    fmt::format("PCR {} does not exist: this TPM has PCRs 0 to {}", pcr, pcr_count_ - 1)};
  }
  if (pcr >= kFirstDrtmPcr && pcr <= kLastDrtmPcr) {
    return RotError{Status::read_only, 0,
                    fmt::format("PCR {} cannot be extended at locality 0: PCRs {} to {} belong to the dynamic root of "
                                "trust and take extends only from localities 2 to 4; choose another PCR (kernel IMA "
                                "uses 10, within its range of 8 to 14)",
                                pcr, kFirstDrtmPcr, kLastDrtmPcr)};
  }
  return Ok{};
}

RotResult<void> Device::extend(uint32_t pcr, std::span<const Digest> digests) {
  if (auto checked = check_pcr(pcr); !checked) return checked.error();
  if (digests.size() != banks_.size()) {
    return RotError{Status::invalid, 0,
                    fmt::format("{} digests given for the TPM's {} allocated banks", digests.size(), banks_.size())};
  }
  TPML_DIGEST_VALUES values{};
  values.count = static_cast<UINT32>(banks_.size());
  for (size_t i = 0; i < banks_.size(); ++i) {
    if (digests[i].size() != banks_[i].digest_size) {
      return RotError{Status::invalid, 0,
                      fmt::format("the {} digest is {} bytes; expected {}", hash_name(banks_[i].algo),
                                  digests[i].size(), banks_[i].digest_size)};
    }
    values.digests[i].hashAlg = banks_[i].tpm_alg_id;
    std::memcpy(&values.digests[i].digest, digests[i].data(), digests[i].size());
  }

  SigpipeGuard guard;
  for (unsigned attempt = 0;; ++attempt) {
    if (auto connected = connect(); !connected) return connected.error();
    TSS2_RC rc = Esys_PCR_Extend(esys_, ESYS_TR_PCR0 + pcr, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE, &values);
    if (rc == TSS2_RC_SUCCESS) return Ok{};

    RcClass rc_class = classify_rc(rc);
    if (rc_class.status == Status::retry && !rc_class.transport && attempt < config_.retry_attempts) {
      std::this_thread::sleep_for(config_.retry_delay * (1u << attempt));
      continue;
    }
    if (rc_class.transport) {
      disconnect();
      return RotError{Status::unavailable, static_cast<int>(rc),
                      fmt::format("extending PCR {} failed: {}; the connection to the TPM was lost, so whether the "
                                  "TPM applied the extend is unknown until the PCR is read",
                                  pcr, describe_rc(rc))};
    }
    std::string operation = fmt::format("extending PCR {} failed", pcr);
    if (rc_class.status == Status::retry) operation += fmt::format(" after {} retries", attempt);
    return tss_error(rc, operation);
  }
}

RotResult<std::optional<std::vector<Digest>>> Device::read(HashAlgo bank, std::span<const uint32_t> pcrs) {
  auto implemented = std::find_if(implemented_.begin(), implemented_.end(),
                                  [bank](const PcrBank& candidate) { return candidate.algo == bank; });
  if (implemented == implemented_.end()) {
    return RotError{Status::invalid, 0,
                    fmt::format("this TPM has no {} PCR bank; its banks are {}", hash_name(bank),
                                bank_list(implemented_))};
  }
  for (uint32_t pcr : pcrs) {
    if (pcr >= pcr_count_) {
      return RotError{Status::invalid, 0,
                      fmt::format("PCR {} does not exist: this TPM has PCRs 0 to {}", pcr, pcr_count_ - 1)};
    }
  }

  SigpipeGuard guard;
  // Reads change nothing, so one that lost its connection is sent again
  // once over a new one.
  for (int attempt = 0;; ++attempt) {
    if (auto connected = connect(); !connected) return connected.error();
    // connect() may have rediscovered the banks.
    auto selected = std::find_if(implemented_.begin(), implemented_.end(),
                                 [bank](const PcrBank& candidate) { return candidate.algo == bank; });
    if (selected == implemented_.end()) {
      return RotError{Status::invalid, 0, fmt::format("this TPM no longer has a {} PCR bank", hash_name(bank))};
    }
    bool connection_lost = false;
    auto values = read_once(*selected, pcrs, connection_lost);
    if (values || !connection_lost || attempt > 0) return values;
  }
}

RotResult<std::optional<std::vector<Digest>>> Device::read_once(const PcrBank& bank, std::span<const uint32_t> pcrs,
                                                                bool& connection_lost) {
  const HashAlgo algo = *bank.algo;
  std::bitset<TPM2_MAX_PCRS> requested;
  for (uint32_t pcr : pcrs) requested.set(pcr);

  std::array<Digest, TPM2_MAX_PCRS> values{};
  std::bitset<TPM2_MAX_PCRS> remaining = requested;
  std::optional<UINT32> first_counter;
  unsigned restarts = 0;
  const auto select_size = static_cast<UINT8>(std::max<uint32_t>(3, (pcr_count_ + 7) / 8));

  while (remaining.any()) {
    TPML_PCR_SELECTION selection{};
    selection.count = 1;
    selection.pcrSelections[0].hash = bank.alg;
    selection.pcrSelections[0].sizeofSelect = select_size;
    for (uint32_t pcr = 0; pcr < TPM2_MAX_PCRS; ++pcr) {
      if (remaining.test(pcr)) selection.pcrSelections[0].pcrSelect[pcr / 8] |= static_cast<BYTE>(1u << (pcr % 8));
    }

    UINT32 counter = 0;
    TPML_PCR_SELECTION* raw_selection = nullptr;
    TPML_DIGEST* raw_digests = nullptr;
    TSS2_RC rc = Esys_PCR_Read(esys_, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &selection, &counter, &raw_selection,
                               &raw_digests);
    EsysPtr<TPML_PCR_SELECTION> returned_selection(raw_selection);
    EsysPtr<TPML_DIGEST> digests(raw_digests);
    if (rc != TSS2_RC_SUCCESS) {
      connection_lost = classify_rc(rc).transport;
      return tss_error(rc, fmt::format("reading PCRs of the {} bank failed", hash_name(algo)));
    }

    std::bitset<TPM2_MAX_PCRS> returned;
    for (uint32_t i = 0; i < returned_selection->count && i < TPM2_NUM_PCR_BANKS; ++i) {
      const TPMS_PCR_SELECTION& item = returned_selection->pcrSelections[i];
      if (item.hash != bank.alg) continue;
      for (uint32_t byte = 0; byte < item.sizeofSelect && byte < TPM2_PCR_SELECT_MAX; ++byte) {
        for (uint32_t bit = 0; bit < 8; ++bit) {
          if ((item.pcrSelect[byte] >> bit) & 1u) returned.set(byte * 8 + bit);
        }
      }
    }

    // For an unallocated bank the TPM returns success, an empty selection
    // and no digests, which must not be mistaken for zero values.
    if (returned.none() || digests->count == 0) {
      if (remaining == requested) return std::optional<std::vector<Digest>>();
      return RotError{Status::failed, 0,
                      fmt::format("the TPM stopped returning PCRs of the {} bank partway through a read",
                                  hash_name(algo))};
    }
    if (digests->count != returned.count() || (returned & ~remaining).any()) {
      return RotError{Status::failed, 0,
                      fmt::format("TPM2_PCR_Read of the {} bank returned {} digests for a selection of {} PCRs",
                                  hash_name(algo), digests->count, returned.count())};
    }

    if (first_counter && *first_counter != counter && restarts < kReadRestarts) {
      // A PCR changed between two commands of this read: start over so the
      // values belong to one moment.
      ++restarts;
      first_counter = counter;
      remaining = requested;
      continue;
    }
    if (!first_counter) first_counter = counter;

    uint32_t k = 0;
    for (uint32_t pcr = 0; pcr < TPM2_MAX_PCRS; ++pcr) {
      if (!returned.test(pcr)) continue;
      const TPM2B_DIGEST& digest = digests->digests[k++];
      if (digest.size != digest_size(algo)) {
        return RotError{Status::failed, 0,
                        fmt::format("PCR {} of the {} bank came back with {} bytes; expected {}", pcr, hash_name(algo),
                                    digest.size, digest_size(algo))};
      }
      values[pcr] = Digest(ByteView(digest.buffer, digest.size));
      remaining.reset(pcr);
    }
  }

  std::vector<Digest> out;
  out.reserve(pcrs.size());
  for (uint32_t pcr : pcrs) out.push_back(values[pcr]);
  return std::optional<std::vector<Digest>>(std::move(out));
}

RotResult<rot::BootAggregate> Device::boot_aggregate(HashAlgo ima_hash) {
  std::vector<HashAlgo> algos;
  for (const rot::Bank& bank : banks_) algos.push_back(bank.algo);
  std::optional<HashAlgo> bank = boot_aggregate_bank(ima_hash, algos);
  if (!bank) {
    // Kernel IMA logs "No suitable TPM algorithm for boot aggregate" and
    // records zeros in its own hash algorithm in that case
    // (ima_calc_boot_aggregate in security/integrity/ima/ima_crypto.c).
    return rot::BootAggregate{ima_hash, Digest::zeros(digest_size(ima_hash))};
  }

  std::vector<uint32_t> pcrs(boot_aggregate_pcr_count(*bank));
  for (uint32_t i = 0; i < pcrs.size(); ++i) pcrs[i] = i;
  auto values = read(*bank, pcrs);
  if (!values) return values.error();
  if (!values->has_value()) {
    return RotError{Status::failed, 0,
                    fmt::format("the {} bank reads as unallocated although the TPM lists it as allocated",
                                hash_name(*bank))};
  }
  auto digest = compute_boot_aggregate(*bank, **values);
  if (!digest) return RotError{Status::failed, 0, digest.error().message};
  return rot::BootAggregate{*bank, *digest};
}

}  // namespace imarot::tpm2
