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

namespace imarotd {
namespace {

// Arguments of ReadRegisters beyond this many registers are rejected; no
// backend has more.
constexpr size_t kMaxRegisters = 64;

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

// Writes every byte, retrying short writes.
bool write_all(int fd, const char* data, size_t size) {
  while (size > 0) {
    ssize_t n = ::write(fd, data, size);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    data += n;
    size -= static_cast<size_t>(n);
  }
  return true;
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

    uint64_t bytes = 0;
    auto [fd, entries] = self.export_descriptor(list_format, bytes);
    if (fd < 0) return system_error(error, fmt::format("cannot prepare the {}-byte export", bytes), errno);
    r = sd_bus_reply_method_return(m, "ht", fd, entries);
    ::close(fd);  // sd-bus sends a duplicate
    return r;
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
  if (bus_ != nullptr) {
    if (vtable_slot_ != nullptr) vtable_slot_ = sd_bus_slot_unref(vtable_slot_);
    bus_ = sd_bus_flush_close_unref(bus_);
    spdlog::info("D-Bus service stopped");
  }
  for (ExportCache& cache : export_cache_) drop_export_cache(cache);
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
  for (const ExportCache& cache : export_cache_) {
    if (cache.fd >= 0) earliest(cache.expires);
  }
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
  Clock::time_point now = Clock::now();
  if (bus_ == nullptr) {
    if (now >= next_connect_) connect();
    return;
  }
  for (ExportCache& cache : export_cache_) {
    if (cache.fd >= 0 && now >= cache.expires) drop_export_cache(cache);
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

std::pair<int, uint64_t> DBusService::export_descriptor(CommittedList::Format format, uint64_t& bytes) {
  ExportCache& cache = export_cache_[static_cast<int>(format)];
  Clock::time_point now = Clock::now();
  if (cache.fd >= 0 && cache.entries == list_.size()) {
    int fd = ::open(fmt::format("/proc/self/fd/{}", cache.fd).c_str(), O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
      cache.expires = now + options_.export_cache_time;
      return {fd, cache.entries};
    }
  }
  drop_export_cache(cache);

  CommittedList::Snapshot snapshot = list_.snapshot(format);
  bytes = snapshot.bytes;
  int fd = ::memfd_create("imarot-measurements", MFD_CLOEXEC | MFD_ALLOW_SEALING);
  if (fd < 0) return {-1, 0};
  bool written = true;
  for (const auto& chunk : snapshot.chunks) {
    if (!write_all(fd, chunk->data(), chunk->size())) {
      written = false;
      break;
    }
  }
  // Receivers of this descriptor share its offset: rewind it, then seal the
  // content so that no one can change it.
  if (!written || ::lseek(fd, 0, SEEK_SET) != 0 ||
      ::fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL) != 0) {
    int code = errno;
    ::close(fd);
    errno = code;
    return {-1, 0};
  }
  int cached = ::fcntl(fd, F_DUPFD_CLOEXEC, 3);
  if (cached >= 0) {
    cache.fd = cached;
    cache.entries = snapshot.entries;
    cache.expires = now + options_.export_cache_time;
  }
  return {fd, snapshot.entries};
}

void DBusService::drop_export_cache(ExportCache& cache) {
  if (cache.fd >= 0) ::close(cache.fd);
  cache.fd = -1;
}

void DBusService::policy_changed() {
  if (bus_ == nullptr) return;
  int r = sd_bus_emit_properties_changed(bus_, kObjectPath, kManagerInterface, "PolicySource", nullptr);
  if (r < 0) spdlog::warn("cannot send PropertiesChanged for PolicySource: {}", std::strerror(-r));
}

}  // namespace imarotd
