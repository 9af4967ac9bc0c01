#include "dbus_service.h"

#include <fcntl.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <systemd/sd-bus.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "live_verify.h"

namespace imarotd {
namespace {

// Arguments of ReadRegisters beyond this many registers are rejected; no
// backend has more.
constexpr size_t kMaxRegisters = 64;

// Verify calls beyond this many in progress are rejected, so that callers
// cannot queue unbounded work and memory on the worker thread.
constexpr size_t kMaxVerifyCalls = 4;

// An export file behind the list by this many entries is extended by the
// worker, so that an Export call appends only a few entries itself.
constexpr uint64_t kExportCatchUpEntries = 4096;

// Verify's result per backend: id, register kind, register index, state,
// ok, entries, violations, first failing entry (-1 for none), register
// checks (index, bank, reference, replayed, entries, match), failures and
// warnings (entry index or -1, message). A macro, because the vtable macros
// join signature literals.
#define IMAROT_VERIFY_BACKENDS_SIGNATURE "a(ssusbttxa(ussstb)a(xs)a(xs))"

// Sets the error a method call returns, and logs it: failures of the daemon
// itself as warnings, rejected arguments and callers at debug level.
int set_error(sd_bus_error* error, const char* name, const std::string& message) {
  bool daemon_failure = std::strcmp(name, kErrorBackendFailed) == 0 || std::strcmp(name, kErrorFailed) == 0;
  if (daemon_failure) {
    spdlog::warn("D-Bus call failed: {}: {}", name, message);
  } else {
    spdlog::debug("D-Bus call rejected: {}: {}", name, message);
  }
  return sd_bus_error_set(error, name, message.c_str());
}

int invalid_args(sd_bus_error* error, const std::string& message) {
  return set_error(error, SD_BUS_ERROR_INVALID_ARGS, message);
}

int model_error(sd_bus_error* error, const imarot::Error& failure) {
  switch (failure.code) {
    case kModelInvalidArgument:
      return invalid_args(error, failure.message);
    case kModelUnallocated:
      return set_error(error, kErrorUnallocated, failure.message);
    case kModelBackendFailed:
      return set_error(error, kErrorBackendFailed, failure.message);
    case kModelPolicyInvalid:
      return set_error(error, kErrorPolicyInvalid, failure.message);
    default:
      return set_error(error, kErrorFailed, failure.message);
  }
}

int system_error(sd_bus_error* error, const std::string& what, int code) {
  return set_error(error, kErrorFailed, fmt::format("{}: {}", what, std::strerror(code)));
}

std::vector<std::string> bank_names(const std::vector<imarot::HashAlgo>& banks) {
  std::vector<std::string> names;
  for (imarot::HashAlgo bank : banks) names.emplace_back(imarot::hash_name(bank));
  return names;
}

// Parses a hash algorithm argument; nullopt after setting an InvalidArgs
// error that names the argument.
std::optional<imarot::HashAlgo> parse_algorithm(const char* argument, const char* value, sd_bus_error* error) {
  auto algo = imarot::hash_algo_from_name(value);
  if (!algo) {
    invalid_args(error, fmt::format("{}: unknown hash algorithm '{}'; expected a kernel name such as sha1, sha256, "
                                    "sha384, sha512 or sm3",
                                    argument, value));
  }
  return algo;
}

int append_findings(sd_bus_message* reply, const std::vector<imarot::VerifyFinding>& findings) {
  int r = sd_bus_message_open_container(reply, 'a', "(xs)");
  for (size_t i = 0; i < findings.size() && r >= 0; ++i) {
    int64_t entry = findings[i].entry_index ? static_cast<int64_t>(*findings[i].entry_index) : -1;
    r = sd_bus_message_append(reply, "(xs)", entry, findings[i].message.c_str());
  }
  if (r >= 0) r = sd_bus_message_close_container(reply);
  return r;
}

// Appends Verify's out arguments: ok, entries and one struct per backend
// (IMAROT_VERIFY_BACKENDS_SIGNATURE).
int append_verify_result(sd_bus_message* reply, const LiveVerifyResult& result) {
  int r = sd_bus_message_append(reply, "bt", result.ok() ? 1 : 0, result.entries);
  // The array's element type: the signature without its leading 'a'.
  if (r >= 0) r = sd_bus_message_open_container(reply, 'a', IMAROT_VERIFY_BACKENDS_SIGNATURE + 1);
  for (const BackendVerifyResult& checked : result.backends) {
    const imarot::VerifyReport& report = checked.report;
    int64_t first_failing = report.first_failing_entry ? static_cast<int64_t>(*report.first_failing_entry) : -1;
    if (r >= 0) r = sd_bus_message_open_container(reply, 'r', "ssusbttxa(ussstb)a(xs)a(xs)");
    if (r >= 0) {
      r = sd_bus_message_append(reply, "ssusbttx", checked.backend.id.c_str(), checked.backend.register_kind.c_str(),
                                checked.backend.register_index, checked.backend.state.c_str(), report.ok() ? 1 : 0,
                                static_cast<uint64_t>(report.entries), static_cast<uint64_t>(report.violations),
                                first_failing);
    }
    if (r >= 0) r = sd_bus_message_open_container(reply, 'a', "(ussstb)");
    for (size_t i = 0; i < report.registers.size() && r >= 0; ++i) {
      const imarot::RegisterCheck& check = report.registers[i];
      r = sd_bus_message_append(reply, "(ussstb)", check.id.index, std::string(imarot::hash_name(check.id.bank)).c_str(),
                                check.reference.hex().c_str(), check.replayed.hex().c_str(),
                                static_cast<uint64_t>(check.entries), check.matched ? 1 : 0);
    }
    if (r >= 0) r = sd_bus_message_close_container(reply);
    if (r >= 0) r = append_findings(reply, report.failures);
    if (r >= 0) r = append_findings(reply, report.warnings);
    if (r >= 0) r = sd_bus_message_close_container(reply);
  }
  if (r >= 0) r = sd_bus_message_close_container(reply);
  return r;
}

}  // namespace

// The sd-bus callbacks; userdata is the DBusService.
struct ServiceCallbacks {
  static DBusService& service(void* userdata) { return *static_cast<DBusService*>(userdata); }

  // --- Properties ---------------------------------------------------------

  static int get_backends(sd_bus* /*bus*/, const char* /*path*/, const char* /*interface*/, const char* /*property*/,
                          sd_bus_message* reply, void* userdata, sd_bus_error* /*error*/) {
    return append_backends(reply, service(userdata).model_.backends());
  }

  static int append_backends(sd_bus_message* reply, const std::vector<BackendView>& backends) {
    int r = sd_bus_message_open_container(reply, 'a', "(sssuuassts)");
    for (const auto& backend : backends) {
      if (r >= 0) r = sd_bus_message_open_container(reply, 'r', "sssuuassts");
      if (r >= 0) {
        r = sd_bus_message_append(reply, "sssuu", backend.id.c_str(), backend.plugin.c_str(),
                                  backend.register_kind.c_str(), backend.register_index, backend.register_count);
      }
      if (r >= 0) r = sd_bus_message_open_container(reply, 'a', "s");
      for (const std::string& bank : bank_names(backend.banks)) {
        if (r >= 0) r = sd_bus_message_append(reply, "s", bank.c_str());
      }
      if (r >= 0) r = sd_bus_message_close_container(reply);
      if (r >= 0) {
        r = sd_bus_message_append(reply, "sts", backend.state.c_str(), backend.pending, backend.last_error.c_str());
      }
      if (r >= 0) r = sd_bus_message_close_container(reply);
    }
    if (r >= 0) r = sd_bus_message_close_container(reply);
    return r;
  }

  static int get_info_string(sd_bus* /*bus*/, const char* /*path*/, const char* /*interface*/, const char* property,
                             sd_bus_message* reply, void* userdata, sd_bus_error* /*error*/) {
    const DBusService& self = service(userdata);
    std::string value;
    if (std::strcmp(property, "EventSource") == 0) {
      value = self.info_.event_source;
    } else if (std::strcmp(property, "Template") == 0) {
      value = self.info_.template_name;
    } else if (std::strcmp(property, "HashAlgorithm") == 0) {
      value = self.info_.hash_algorithm;
    } else if (std::strcmp(property, "BootId") == 0) {
      value = self.info_.boot_id;
    } else {
      value = self.model_.policy_source();
    }
    return sd_bus_message_append(reply, "s", value.c_str());
  }

  static int get_counter(sd_bus* /*bus*/, const char* /*path*/, const char* /*interface*/, const char* property,
                         sd_bus_message* reply, void* userdata, sd_bus_error* /*error*/) {
    const DBusService& self = service(userdata);
    uint64_t value = 0;
    if (std::strcmp(property, "EntryCount") == 0) {
      value = self.list_.size();
    } else if (std::strcmp(property, "ViolationCount") == 0) {
      value = self.list_.violations();
    } else {
      value = self.model_.lost_events();
    }
    return sd_bus_message_append(reply, "t", value);
  }

  static int get_measure_before_use(sd_bus* /*bus*/, const char* /*path*/, const char* /*interface*/,
                                    const char* /*property*/, sd_bus_message* reply, void* userdata,
                                    sd_bus_error* /*error*/) {
    return sd_bus_message_append(reply, "b", service(userdata).info_.measure_before_use ? 1 : 0);
  }

  // --- Methods ------------------------------------------------------------

  static int read_entries(sd_bus_message* m, void* userdata, sd_bus_error* error) {
    DBusService& self = service(userdata);
    uint32_t offset = 0;
    uint32_t count = 0;
    int r = sd_bus_message_read(m, "uu", &offset, &count);
    if (r < 0) return r;

    uint64_t size = self.list_.size();
    if (offset > size) {
      return invalid_args(error, fmt::format("offset: {} is beyond the end of the list, which has {} entries; expected "
                                             "an offset from 0 to {}",
                                             offset, size, size));
    }
    if (count == 0 || count > self.options_.max_read_count) {
      return invalid_args(error, fmt::format("count: {} is out of range; expected 1 to {} entries per call",
                                             count, self.options_.max_read_count));
    }
    std::vector<imarot::Entry> entries = self.list_.read(offset, count, self.options_.max_read_bytes);

    sd_bus_message* reply = nullptr;
    r = sd_bus_message_new_method_return(m, &reply);
    if (r < 0) return r;
    r = sd_bus_message_open_container(reply, 'a', "(ussssayayay)");
    for (size_t i = 0; i < entries.size() && r >= 0; ++i) {
      const imarot::Entry& entry = entries[i];
      auto fields = imarot::decode_fields(entry);
      if (!fields) {
        sd_bus_message_unref(reply);
        return set_error(error, kErrorFailed,
                         fmt::format("entry {} of the list cannot be decoded: {}", offset + i, fields.error().message));
      }
      std::string template_digest = entry.stored_digest().hex();
      std::string file_digest = imarot::to_hex(fields->file_digest);
      r = sd_bus_message_open_container(reply, 'r', "ussssayayay");
      if (r >= 0) {
        r = sd_bus_message_append(reply, "ussss", entry.pcr, std::string(entry.tmpl->list_name()).c_str(),
                                  template_digest.c_str(), fields->digest_algo_name.c_str(), file_digest.c_str());
      }
      if (r >= 0) r = sd_bus_message_append_array(reply, 'y', fields->name.data(), fields->name.size());
      if (r >= 0) r = sd_bus_message_append_array(reply, 'y', fields->signature.data(), fields->signature.size());
      if (r >= 0) r = sd_bus_message_append_array(reply, 'y', entry.data.data(), entry.data.size());
      if (r >= 0) r = sd_bus_message_close_container(reply);
    }
    if (r >= 0) r = sd_bus_message_close_container(reply);
    if (r >= 0) r = sd_bus_send(nullptr, reply, nullptr);
    sd_bus_message_unref(reply);
    return r;
  }

  static int export_list(sd_bus_message* m, void* userdata, sd_bus_error* error) {
    DBusService& self = service(userdata);
    const char* format = nullptr;
    int r = sd_bus_message_read(m, "s", &format);
    if (r < 0) return r;
    CommittedList::Format list_format;
    if (std::strcmp(format, "binary") == 0) {
      list_format = CommittedList::Format::binary;
    } else if (std::strcmp(format, "ascii") == 0) {
      list_format = CommittedList::Format::ascii;
    } else {
      return invalid_args(error, fmt::format("format: unknown list format '{}'; expected 'binary' or 'ascii'", format));
    }

    self.export_list(m, list_format);
    return 1;  // export_list() replies, now or once the worker has prepared a file
  }

  // Reads Verify's options, a{sv} with the optional keys "backend" (s),
  // "banks" (as) and "register" (u).
  static int read_verify_options(sd_bus_message* m, LiveVerifyRequest& request, sd_bus_error* error) {
    int r = sd_bus_message_enter_container(m, 'a', "{sv}");
    if (r < 0) return r;
    while ((r = sd_bus_message_enter_container(m, 'e', "sv")) > 0) {
      const char* key = nullptr;
      r = sd_bus_message_read(m, "s", &key);
      if (r < 0) return r;
      std::string name = key;
      const char* contents = nullptr;
      r = sd_bus_message_peek_type(m, nullptr, &contents);
      if (r < 0) return r;
      std::string type = contents != nullptr ? contents : "";
      auto wrong_type = [&](const char* expected) {
        return invalid_args(error, fmt::format("options: '{}' has type '{}'; expected '{}'", name, type, expected));
      };
      if (name == "backend") {
        if (type != "s") return wrong_type("s");
        const char* backend = nullptr;
        r = sd_bus_message_read(m, "v", "s", &backend);
        if (r < 0) return r;
        request.backend = backend;
        if (request.backend.empty()) return invalid_args(error, "options: 'backend' is empty; expected a backend id");
      } else if (name == "banks") {
        if (type != "as") return wrong_type("as");
        r = sd_bus_message_enter_container(m, 'v', "as");
        if (r < 0) return r;
        r = sd_bus_message_enter_container(m, 'a', "s");
        if (r < 0) return r;
        request.banks.emplace();
        const char* bank_name = nullptr;
        while ((r = sd_bus_message_read(m, "s", &bank_name)) > 0) {
          auto bank = parse_algorithm("options: banks", bank_name, error);
          if (!bank) return -EINVAL;
          request.banks->insert(*bank);
        }
        if (r < 0) return r;
        if (request.banks->empty()) return invalid_args(error, "options: 'banks' is empty; expected at least one bank");
        r = sd_bus_message_exit_container(m);
        if (r >= 0) r = sd_bus_message_exit_container(m);
        if (r < 0) return r;
      } else if (name == "register") {
        if (type != "u") return wrong_type("u");
        uint32_t index = 0;
        r = sd_bus_message_read(m, "v", "u", &index);
        if (r < 0) return r;
        request.register_index = index;
      } else {
        return invalid_args(error, fmt::format("options: unknown key '{}'; expected 'backend', 'banks' or 'register'",
                                               name));
      }
      r = sd_bus_message_exit_container(m);
      if (r < 0) return r;
    }
    if (r < 0) return r;
    return sd_bus_message_exit_container(m);
  }

  static int verify(sd_bus_message* m, void* userdata, sd_bus_error* error) {
    DBusService& self = service(userdata);
    LiveVerifyRequest request;
    int r = read_verify_options(m, request, error);
    if (r < 0) return r;
    if (self.verify_calls_ >= kMaxVerifyCalls) {
      return set_error(error, kErrorBusy,
                       fmt::format("{} Verify calls are in progress, the maximum; try again when one has returned",
                                   self.verify_calls_));
    }
    // Registers first, then the list size: see verify_live().
    auto references = read_live_references(self.model_, request);
    if (!references) return model_error(error, references.error());
    self.verify(m, std::move(request), std::move(*references));
    return 1;  // the reply is sent when the worker has replayed the list
  }

  static int read_registers(sd_bus_message* m, void* userdata, sd_bus_error* error) {
    DBusService& self = service(userdata);
    const char* backend = nullptr;
    const char* bank_name = nullptr;
    int r = sd_bus_message_read(m, "ss", &backend, &bank_name);
    if (r < 0) return r;
    const void* data = nullptr;
    size_t size = 0;
    r = sd_bus_message_read_array(m, 'u', &data, &size);
    if (r < 0) return r;

    auto bank = parse_algorithm("bank", bank_name, error);
    if (!bank) return -EINVAL;
    size_t count = size / sizeof(uint32_t);
    if (count == 0 || count > kMaxRegisters) {
      return invalid_args(error, fmt::format("registers: {} register indexes given; expected 1 to {}", count,
                                             kMaxRegisters));
    }
    std::vector<uint32_t> registers(count);
    std::memcpy(registers.data(), data, size);

    auto read = self.model_.read_registers(backend, *bank, registers);
    if (!read) return model_error(error, read.error());

    sd_bus_message* reply = nullptr;
    r = sd_bus_message_new_method_return(m, &reply);
    if (r < 0) return r;
    r = sd_bus_message_open_container(reply, 'a', "(us)");
    for (size_t i = 0; i < read->registers.size() && r >= 0; ++i) {
      r = sd_bus_message_append(reply, "(us)", read->registers[i], read->values[i].hex().c_str());
    }
    if (r >= 0) r = sd_bus_message_close_container(reply);
    if (r >= 0) r = sd_bus_send(nullptr, reply, nullptr);
    sd_bus_message_unref(reply);
    return r;
  }

  static int boot_aggregate(sd_bus_message* m, void* userdata, sd_bus_error* error) {
    DBusService& self = service(userdata);
    const char* backend = nullptr;
    const char* ima_hash_name = nullptr;
    int r = sd_bus_message_read(m, "ss", &backend, &ima_hash_name);
    if (r < 0) return r;
    auto ima_hash = parse_algorithm("ima_hash", ima_hash_name, error);
    if (!ima_hash) return -EINVAL;
    auto aggregate = self.model_.boot_aggregate(backend, *ima_hash);
    if (!aggregate) return model_error(error, aggregate.error());
    return sd_bus_reply_method_return(m, "ss", std::string(imarot::hash_name(aggregate->bank)).c_str(),
                                      aggregate->digest.hex().c_str());
  }

  // Privileged methods run for callers whose effective uid is 0 or the
  // daemon's own. The bus driver reports the uid from the peer credentials
  // of the caller's connection. A uid that sd-bus could only read from /proc
  // is racy, so it is not trusted.
  static int check_privileged(sd_bus_message* m, const char* method, sd_bus_error* error) {
    sd_bus_creds* creds = nullptr;
    int r = sd_bus_query_sender_creds(m, SD_BUS_CREDS_EUID, &creds);
    if (r < 0) {
      return set_error(error, SD_BUS_ERROR_ACCESS_DENIED,
                       fmt::format("{} needs root, and the caller's credentials cannot be read: {}", method,
                                   std::strerror(-r)));
    }
    uid_t euid = 0;
    r = sd_bus_creds_get_euid(creds, &euid);
    bool augmented = (sd_bus_creds_get_augmented_mask(creds) & SD_BUS_CREDS_EUID) != 0;
    sd_bus_creds_unref(creds);
    if (r < 0 || augmented) {
      return set_error(error, SD_BUS_ERROR_ACCESS_DENIED,
                       fmt::format("{} needs root, and the bus does not report the caller's effective uid", method));
    }
    if (euid != 0 && euid != ::geteuid()) {
      return set_error(error, SD_BUS_ERROR_ACCESS_DENIED,
                       fmt::format("{} needs root (effective uid 0); the caller runs as uid {}", method, euid));
    }
    return 0;
  }

  static int reload_policy(sd_bus_message* m, void* userdata, sd_bus_error* error) {
    DBusService& self = service(userdata);
    if (int denied = check_privileged(m, "ReloadPolicy", error); denied < 0) return denied;
    auto reloaded = self.model_.reload_policy();
    if (!reloaded) return model_error(error, reloaded.error());
    self.policy_changed();
    return sd_bus_reply_method_return(m, "s", reloaded->c_str());
  }
};

namespace {

using Callbacks = ServiceCallbacks;

constexpr uint64_t kReadOnly = SD_BUS_VTABLE_UNPRIVILEGED;
constexpr uint64_t kCounter = SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE;
constexpr uint64_t kConstant = SD_BUS_VTABLE_PROPERTY_CONST;

const sd_bus_vtable kManagerVtable[] = {
    SD_BUS_VTABLE_START(0),
    SD_BUS_PROPERTY("Backends", "a(sssuuassts)", Callbacks::get_backends, 0, kCounter),
    SD_BUS_PROPERTY("EventSource", "s", Callbacks::get_info_string, 0, kConstant),
    SD_BUS_PROPERTY("Template", "s", Callbacks::get_info_string, 0, kConstant),
    SD_BUS_PROPERTY("HashAlgorithm", "s", Callbacks::get_info_string, 0, kConstant),
    SD_BUS_PROPERTY("BootId", "s", Callbacks::get_info_string, 0, kConstant),
    SD_BUS_PROPERTY("MeasureBeforeUse", "b", Callbacks::get_measure_before_use, 0, kConstant),
    SD_BUS_PROPERTY("PolicySource", "s", Callbacks::get_info_string, 0, kCounter),
    SD_BUS_PROPERTY("EntryCount", "t", Callbacks::get_counter, 0, kCounter),
    SD_BUS_PROPERTY("ViolationCount", "t", Callbacks::get_counter, 0, kCounter),
    SD_BUS_PROPERTY("LostEventCount", "t", Callbacks::get_counter, 0, kCounter),
    SD_BUS_METHOD_WITH_ARGS("ReadEntries", SD_BUS_ARGS("u", offset, "u", count),
                            SD_BUS_RESULT("a(ussssayayay)", entries), Callbacks::read_entries, kReadOnly),
    SD_BUS_METHOD_WITH_ARGS("Export", SD_BUS_ARGS("s", format), SD_BUS_RESULT("h", list, "t", entries),
                            Callbacks::export_list, kReadOnly),
    SD_BUS_METHOD_WITH_ARGS("ReadRegisters", SD_BUS_ARGS("s", backend, "s", bank, "au", registers),
                            SD_BUS_RESULT("a(us)", values), Callbacks::read_registers, kReadOnly),
    SD_BUS_METHOD_WITH_ARGS("BootAggregate", SD_BUS_ARGS("s", backend, "s", ima_hash),
                            SD_BUS_RESULT("s", bank, "s", digest), Callbacks::boot_aggregate, kReadOnly),
    SD_BUS_METHOD_WITH_ARGS("Verify", SD_BUS_ARGS("a{sv}", options),
                            SD_BUS_RESULT("b", ok, "t", entries, IMAROT_VERIFY_BACKENDS_SIGNATURE, backends),
                            Callbacks::verify, kReadOnly),
    // sd-bus's own check for methods without SD_BUS_VTABLE_UNPRIVILEGED is
    // skipped on buses it trusts (the session bus), so the handler checks
    // the caller itself, on every bus, with one rule and one message.
    SD_BUS_METHOD_WITH_ARGS("ReloadPolicy", SD_BUS_NO_ARGS, SD_BUS_RESULT("s", policy_source),
                            Callbacks::reload_policy, SD_BUS_VTABLE_UNPRIVILEGED),
    SD_BUS_SIGNAL_WITH_ARGS("EntriesCommitted", SD_BUS_ARGS("t", count), 0),
    SD_BUS_VTABLE_END,
};

}  // namespace

int open_bus(const std::string& bus, sd_bus** out) {
  if (bus == "system") return sd_bus_open_system(out);
  if (bus == "session") return sd_bus_open_user(out);
  sd_bus* opened = nullptr;
  int r = sd_bus_new(&opened);
  if (r < 0) return r;
  r = sd_bus_set_address(opened, bus.c_str());
  if (r >= 0) r = sd_bus_set_bus_client(opened, 1);
  if (r >= 0) r = sd_bus_negotiate_fds(opened, 1);
  if (r >= 0) r = sd_bus_start(opened);
  if (r < 0) {
    sd_bus_unref(opened);
    return r;
  }
  *out = opened;
  return 0;
}

DBusService::DBusService(DBusServiceOptions options, ManagerInfo info, const CommittedList& list, ManagerModel& model)
    : options_(std::move(options)), info_(std::move(info)), list_(list), model_(model) {
  wake_fd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (wake_fd_ < 0) spdlog::warn("eventfd failed: {}; EntriesCommitted is sent on the periodic check only",
                                 std::strerror(errno));
  committed_count_ = list_.size();
  signaled_count_ = committed_count_;
}

DBusService::~DBusService() {
  if (worker_.joinable()) {
    {
      std::lock_guard lock(worker_mutex_);
      worker_stop_ = true;
    }
    worker_wake_.notify_one();
    worker_.join();
  }
  drop_held_calls();
  if (bus_ != nullptr) {
    if (vtable_slot_ != nullptr) vtable_slot_ = sd_bus_slot_unref(vtable_slot_);
    bus_ = sd_bus_flush_close_unref(bus_);
    spdlog::info("D-Bus service stopped");
  }
  if (wake_fd_ >= 0) ::close(wake_fd_);
}

void DBusService::start() {
  next_connect_ = Clock::now();
  connect();
}

bool DBusService::connect() {
  Clock::time_point now = Clock::now();
  next_connect_ = now + options_.reconnect_interval;
  sd_bus* bus = nullptr;
  int r = open_bus(options_.bus, &bus);
  std::string failure;
  if (r < 0) {
    failure = fmt::format("cannot connect to the {} bus: {}", options_.bus, std::strerror(-r));
  } else {
    r = sd_bus_add_object_vtable(bus, &vtable_slot_, kObjectPath, kManagerInterface, kManagerVtable, this);
    if (r < 0) failure = fmt::format("cannot register {}: {}", kObjectPath, std::strerror(-r));
  }
  if (failure.empty()) {
    r = sd_bus_request_name(bus, kBusName, 0);
    if (r == -EEXIST) {
      failure = fmt::format("the name {} on the {} bus is owned by another process", kBusName, options_.bus);
    } else if (r == -EACCES) {
      failure = fmt::format("the {} bus policy does not allow this process to own {}; install org.imarot1.conf "
                            "into the bus's policy directory (/usr/share/dbus-1/system.d)",
                            options_.bus, kBusName);
    } else if (r < 0) {
      failure = fmt::format("cannot own {} on the {} bus: {}", kBusName, options_.bus, std::strerror(-r));
    }
  }
  if (!failure.empty()) {
    if (vtable_slot_ != nullptr) vtable_slot_ = sd_bus_slot_unref(vtable_slot_);
    if (bus != nullptr) sd_bus_flush_close_unref(bus);
    if (!warned_unreachable_) {
      spdlog::warn("D-Bus service unavailable: {}; measuring continues, retrying every {} s", failure,
                   std::chrono::duration<double>(options_.reconnect_interval).count());
      warned_unreachable_ = true;
    } else {
      spdlog::debug("D-Bus service still unavailable: {}", failure);
    }
    return false;
  }

  bus_ = bus;
  warned_unreachable_ = false;
  const char* unique = nullptr;
  (void)sd_bus_get_unique_name(bus_, &unique);
  spdlog::info("D-Bus service {} on the {} bus as {}", kBusName, options_.bus, unique != nullptr ? unique : "?");
  signaled_count_ = committed_count_.load();
  last_backends_ = model_.backends();
  next_backends_check_ = now + options_.backends_interval;
  return true;
}

void DBusService::disconnect(const std::string& reason) {
  spdlog::warn("D-Bus service left the {} bus: {}; measuring continues", options_.bus, reason);
  drop_held_calls();
  if (vtable_slot_ != nullptr) vtable_slot_ = sd_bus_slot_unref(vtable_slot_);
  bus_ = sd_bus_flush_close_unref(bus_);
  next_connect_ = Clock::now() + options_.reconnect_interval;
}

void DBusService::add_poll_fds(std::vector<struct pollfd>& fds) const {
  if (wake_fd_ >= 0) fds.push_back({wake_fd_, POLLIN, 0});
  if (bus_ != nullptr) {
    int events = sd_bus_get_events(bus_);
    fds.push_back({sd_bus_get_fd(bus_), static_cast<short>(events < 0 ? POLLIN : events), 0});
  }
}

int DBusService::poll_timeout_ms() const {
  Clock::time_point now = Clock::now();
  std::optional<Clock::time_point> due;
  auto earliest = [&](Clock::time_point t) {
    if (!due || t < *due) due = t;
  };
  if (bus_ == nullptr) {
    earliest(next_connect_);
  } else {
    uint64_t usec = 0;
    if (sd_bus_get_timeout(bus_, &usec) >= 0 && usec != UINT64_MAX) {
      // sd-bus reports an absolute CLOCK_MONOTONIC time, which is what
      // steady_clock reads on Linux.
      earliest(Clock::time_point(std::chrono::microseconds(usec)));
    }
    if (committed_count_.load() != signaled_count_) earliest(last_signal_ + options_.signal_interval);
    earliest(next_backends_check_);
  }
  for (const ExportFiles& files : exports_) {
    if (files.sealed || files.next) earliest(files.expires);
  }
  // Without the eventfd, finished background work is noticed by polling.
  if (wake_fd_ < 0 && outstanding_jobs_ > 0) earliest(now + std::chrono::milliseconds(10));
  if (!due) return -1;
  if (*due <= now) return 0;
  auto wait = std::chrono::ceil<std::chrono::milliseconds>(*due - now);
  return static_cast<int>(std::min<int64_t>(wait.count(), 60000));
}

void DBusService::dispatch(std::span<const struct pollfd> fds) {
  if (wake_fd_ >= 0 && !fds.empty() && fds.front().fd == wake_fd_ && (fds.front().revents & POLLIN)) {
    uint64_t ignored = 0;
    (void)::read(wake_fd_, &ignored, sizeof ignored);
  }
  run_completions();
  Clock::time_point now = Clock::now();
  maintain_exports(now);
  if (bus_ == nullptr) {
    if (now >= next_connect_) connect();
    return;
  }
  process_bus();
  if (bus_ == nullptr) return;
  flush_signals(now);
  check_backends(now);
  if (bus_ != nullptr) process_bus();
}

void DBusService::process_bus() {
  for (;;) {
    int r = sd_bus_process(bus_, nullptr);
    if (r < 0) {
      disconnect(std::strerror(-r));
      return;
    }
    if (r == 0) break;
  }
  if (sd_bus_is_open(bus_) <= 0) disconnect("the connection was closed");
}

void DBusService::entries_committed(uint64_t count) {
  committed_count_.store(count);
  if (wake_fd_ >= 0) {
    uint64_t one = 1;
    (void)::write(wake_fd_, &one, sizeof one);
  }
}

void DBusService::flush_signals(Clock::time_point now) {
  uint64_t count = committed_count_.load();
  if (count == signaled_count_ || now < last_signal_ + options_.signal_interval) return;
  int r = sd_bus_emit_signal(bus_, kObjectPath, kManagerInterface, "EntriesCommitted", "t", count);
  if (r >= 0) {
    r = sd_bus_emit_properties_changed(bus_, kObjectPath, kManagerInterface, "EntryCount", "ViolationCount",
                                       "LostEventCount", nullptr);
  }
  if (r < 0) spdlog::warn("cannot send EntriesCommitted: {}", std::strerror(-r));
  signaled_count_ = count;
  last_signal_ = now;
}

void DBusService::check_backends(Clock::time_point now) {
  if (now < next_backends_check_) return;
  next_backends_check_ = now + options_.backends_interval;
  std::vector<BackendView> backends = model_.backends();
  if (backends == last_backends_) return;
  last_backends_ = std::move(backends);
  int r = sd_bus_emit_properties_changed(bus_, kObjectPath, kManagerInterface, "Backends", nullptr);
  if (r < 0) spdlog::warn("cannot send PropertiesChanged for Backends: {}", std::strerror(-r));
}

// --- Background work and held calls -----------------------------------------

void DBusService::run_in_background(std::function<Completion()> job) {
  {
    std::lock_guard lock(worker_mutex_);
    jobs_.push_back(std::move(job));
  }
  ++outstanding_jobs_;
  if (!worker_.joinable()) worker_ = std::thread([this] { worker_loop(); });
  worker_wake_.notify_one();
}

void DBusService::worker_loop() {
  for (;;) {
    std::function<Completion()> job;
    {
      std::unique_lock lock(worker_mutex_);
      worker_wake_.wait(lock, [this] { return worker_stop_ || !jobs_.empty(); });
      if (worker_stop_) return;
      job = std::move(jobs_.front());
      jobs_.pop_front();
    }
    Completion done = job();
    {
      std::lock_guard lock(worker_mutex_);
      completions_.push_back(std::move(done));
    }
    if (wake_fd_ >= 0) {
      uint64_t one = 1;
      (void)::write(wake_fd_, &one, sizeof one);
    }
  }
}

void DBusService::run_completions() {
  std::vector<Completion> done;
  {
    std::lock_guard lock(worker_mutex_);
    done.swap(completions_);
  }
  for (Completion& completion : done) {
    --outstanding_jobs_;
    completion();
  }
}

uint64_t DBusService::hold_call(sd_bus_message* m) {
  uint64_t id = next_call_id_++;
  held_calls_[id] = sd_bus_message_ref(m);
  return id;
}

sd_bus_message* DBusService::take_call(uint64_t id) {
  auto it = held_calls_.find(id);
  if (it == held_calls_.end()) return nullptr;
  sd_bus_message* m = it->second;
  held_calls_.erase(it);
  return m;
}

void DBusService::drop_held_calls() {
  for (auto& [id, m] : held_calls_) sd_bus_message_unref(m);
  held_calls_.clear();
  for (ExportFiles& files : exports_) files.waiting.clear();
}

void DBusService::reply_held_error(uint64_t id, const std::string& failure, int code) {
  sd_bus_message* m = take_call(id);
  if (m == nullptr) return;
  sd_bus_error error = SD_BUS_ERROR_NULL;
  system_error(&error, failure, code);
  int r = sd_bus_reply_method_error(m, &error);
  if (r < 0) spdlog::warn("cannot send the error reply to {}: {}", sd_bus_message_get_member(m), std::strerror(-r));
  sd_bus_error_free(&error);
  sd_bus_message_unref(m);
}

// --- Export -------------------------------------------------------------------

void DBusService::export_list(sd_bus_message* m, CommittedList::Format format) {
  exports_[static_cast<int>(format)].expires = Clock::now() + options_.export_cache_time;
  serve_export(hold_call(m), format);
}

void DBusService::serve_export(uint64_t id, CommittedList::Format format) {
  ExportFiles& files = exports_[static_cast<int>(format)];
  uint64_t size = list_.size();
  if (!files.sealed || files.sealed->entries != size) {
    if (files.preparing || !files.next) {
      files.waiting.push_back(id);
      prepare_export(format);
      return;
    }
    // The next file only needs the entries committed since the worker last
    // extended it. Then it is sealed and becomes the file sent.
    if (!extend_list_file(*files.next, list_, format, size) || !seal_list_file(*files.next)) {
      int code = errno;
      files.next.reset();
      reply_held_error(id, "cannot prepare the export file", code);
      return;
    }
    std::optional<ListFile> retired = std::move(files.sealed);
    files.sealed = std::move(files.next);
    files.next.reset();
    prepare_export(format, std::move(retired));
  }

  sd_bus_message* m = take_call(id);
  if (m == nullptr) return;
  int fd = reopen_read_only(*files.sealed);
  int r = 0;
  if (fd < 0) {
    sd_bus_error error = SD_BUS_ERROR_NULL;
    system_error(&error, "cannot open the export file again read-only", errno);
    r = sd_bus_reply_method_error(m, &error);
    sd_bus_error_free(&error);
  } else {
    r = sd_bus_reply_method_return(m, "ht", fd, files.sealed->entries);
    ::close(fd);  // sd-bus sends a duplicate
  }
  if (r < 0) spdlog::warn("cannot send the Export reply: {}", std::strerror(-r));
  sd_bus_message_unref(m);
}

void DBusService::prepare_export(CommittedList::Format format, std::optional<ListFile> retired) {
  ExportFiles& files = exports_[static_cast<int>(format)];
  if (files.preparing || files.next) return;
  files.preparing = true;
  // The worker copies the file sent before the current one when there is
  // one, because the callers that just received the current file are
  // reading it, and copying the same pages at the same time slows both. Entries
  // the copy lacks are rendered again. The worker owns its descriptor,
  // because this thread may drop `sealed` meanwhile.
  std::shared_ptr<ListFile> source;
  if (retired) {
    source = std::make_shared<ListFile>(std::move(*retired));
  } else if (files.sealed) {
    int fd = ::fcntl(files.sealed->fd.get(), F_DUPFD_CLOEXEC, 3);
    if (fd >= 0) source = std::make_shared<ListFile>(ListFile{UniqueFd(fd), files.sealed->entries, files.sealed->bytes});
  }
  run_in_background([this, format, source]() -> Completion {
    std::optional<ListFile> started = source ? copy_list_file(*source) : create_list_file();
    std::shared_ptr<ListFile> next;
    int code = 0;
    if (started && extend_list_file(*started, list_, format, list_.size())) {
      next = std::make_shared<ListFile>(std::move(*started));
    } else {
      code = errno;
    }
    return [this, format, next, code] { finish_export_preparation(format, next, code); };
  });
}

void DBusService::finish_export_preparation(CommittedList::Format format, std::shared_ptr<ListFile> next,
                                            int error_code) {
  ExportFiles& files = exports_[static_cast<int>(format)];
  files.preparing = false;
  if (next) {
    files.next = std::move(*next);
  } else {
    spdlog::warn("cannot prepare the {} export file: {}", format == CommittedList::Format::ascii ? "ascii" : "binary",
                 std::strerror(error_code));
  }
  std::vector<uint64_t> waiting;
  waiting.swap(files.waiting);
  for (uint64_t id : waiting) {
    if (files.next || (files.sealed && files.sealed->entries == list_.size())) {
      serve_export(id, format);
    } else {
      reply_held_error(id, "cannot prepare the export file", error_code);
    }
  }
}

void DBusService::maintain_exports(Clock::time_point now) {
  for (int index = 0; index < 2; ++index) {
    auto format = static_cast<CommittedList::Format>(index);
    ExportFiles& files = exports_[index];
    if (files.preparing || !files.waiting.empty() || (!files.sealed && !files.next)) continue;
    if (now >= files.expires) {
      files.sealed.reset();
      files.next.reset();
      continue;
    }
    uint64_t size = list_.size();
    if (files.next && size - files.next->entries >= kExportCatchUpEntries) {
      files.preparing = true;
      auto next = std::make_shared<ListFile>(std::move(*files.next));
      files.next.reset();
      run_in_background([this, format, next]() -> Completion {
        bool extended = extend_list_file(*next, list_, format, list_.size());
        int code = errno;
        return [this, format, next, extended, code] {
          finish_export_preparation(format, extended ? next : nullptr, code);
        };
      });
    }
  }
}

// --- Verify -------------------------------------------------------------------

void DBusService::verify(sd_bus_message* m, LiveVerifyRequest request, std::vector<BackendReference> references) {
  uint64_t id = hold_call(m);
  ++verify_calls_;
  uint64_t entries = list_.size();
  run_in_background([this, id, entries, request = std::move(request), references = std::move(references)] {
    auto result = std::make_shared<LiveVerifyResult>(verify_live(list_, entries, references, request));
    return Completion([this, id, result] { reply_verify(id, *result); });
  });
}

void DBusService::reply_verify(uint64_t id, const LiveVerifyResult& result) {
  --verify_calls_;
  sd_bus_message* call = take_call(id);
  if (call == nullptr) return;
  sd_bus_message* reply = nullptr;
  int r = sd_bus_message_new_method_return(call, &reply);
  if (r >= 0) r = append_verify_result(reply, result);
  if (r >= 0) r = sd_bus_send(nullptr, reply, nullptr);
  if (r < 0) {
    spdlog::warn("cannot send the Verify reply: {}", std::strerror(-r));
    (void)sd_bus_reply_method_errorf(call, kErrorFailed, "cannot build the Verify reply: %s", std::strerror(-r));
  }
  sd_bus_message_unref(reply);
  sd_bus_message_unref(call);
}

void DBusService::policy_changed() {
  if (bus_ == nullptr) return;
  int r = sd_bus_emit_properties_changed(bus_, kObjectPath, kManagerInterface, "PolicySource", nullptr);
  if (r < 0) spdlog::warn("cannot send PropertiesChanged for PolicySource: {}", std::strerror(-r));
}

}  // namespace imarotd
