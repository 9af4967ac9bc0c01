#include "daemon_client.h"

#include <fcntl.h>
#include <systemd/sd-bus.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <iostream>

#include <fmt/format.h>

namespace rotctl {
namespace {

constexpr const char* kBusName = "org.imarot1";
constexpr const char* kObjectPath = "/org/imarot1";
constexpr const char* kInterface = "org.imarot1.Manager";
// ReadEntries accepts at most this many entries per call.
constexpr uint32_t kPageSize = 4096;

bool starts_with(const char* text, const char* prefix) {
  return text != nullptr && std::strncmp(text, prefix, std::strlen(prefix)) == 0;
}

// Ends the program for a failed call, with the exit code its error calls
// for: the daemon rejected an argument (2), or it cannot be reached or
// refuses the caller (3).
[[noreturn]] void fail_call(const std::string& bus, const char* member, const sd_bus_error& error, int r) {
  const char* name = error.name;
  std::string message = error.message != nullptr ? error.message : std::strerror(-r);
  if (name == nullptr) {
    fail(kExitUnreachable, fmt::format("{} on the {} bus failed: {}", member, bus, message));
  }
  if (std::strcmp(name, SD_BUS_ERROR_SERVICE_UNKNOWN) == 0 || std::strcmp(name, SD_BUS_ERROR_NAME_HAS_NO_OWNER) == 0 ||
      starts_with(name, "org.freedesktop.DBus.Error.Spawn") || std::strcmp(name, SD_BUS_ERROR_NO_REPLY) == 0 ||
      std::strcmp(name, SD_BUS_ERROR_DISCONNECTED) == 0 || std::strcmp(name, SD_BUS_ERROR_TIMEOUT) == 0) {
    fail(kExitUnreachable, fmt::format("imarotd is not reachable on the {} bus: {} ({}); check that imarotd runs and "
                                       "serves D-Bus (\"dbus\" in imarotd.json)",
                                       bus, message, name));
  }
  if (std::strcmp(name, SD_BUS_ERROR_ACCESS_DENIED) == 0) {
    fail(kExitUnreachable, fmt::format("{}: access denied by imarotd or the bus policy: {}; run as root or as a "
                                       "member of the group imarot",
                                       member, message));
  }
  if (std::strcmp(name, SD_BUS_ERROR_INVALID_ARGS) == 0 || std::strcmp(name, "org.imarot1.Error.BankUnallocated") == 0) {
    fail(kExitUsage, message);
  }
  fail(kExitUnreachable, fmt::format("{}: {} ({})", member, message, name));
}

[[noreturn]] void fail_reply(const char* member, int r) {
  fail(kExitUnreachable, fmt::format("{}: the reply does not have the expected form: {}", member, std::strerror(-r)));
}

std::optional<imarot::Digest> digest_from_hex(const char* hex) {
  auto bytes = imarot::from_hex(hex);
  if (!bytes || bytes->empty() || bytes->size() > imarot::kMaxDigestSize) return std::nullopt;
  return imarot::Digest(imarot::ByteView(*bytes));
}

}  // namespace

void add_bus_option(CLI::App* command, std::string& bus) {
  command->add_option("--bus", bus,
                      "Bus on which imarotd serves org.imarot1: system, session, or a D-Bus address such as "
                      "unix:path=/run/user/1000/bus")
      ->capture_default_str();
}

DaemonClient::DaemonClient(const std::string& bus) : bus_name_(bus) {
  int r = 0;
  if (bus == "system") {
    r = sd_bus_open_system(&bus_);
  } else if (bus == "session") {
    r = sd_bus_open_user(&bus_);
  } else if (bus.find(':') == std::string::npos) {
    fail(kExitUsage, fmt::format("--bus '{}': expected system, session or a D-Bus address such as unix:path=SOCKET",
                                 bus));
  } else {
    r = sd_bus_new(&bus_);
    if (r >= 0) r = sd_bus_set_address(bus_, bus.c_str());
    if (r >= 0) r = sd_bus_set_bus_client(bus_, 1);
    if (r >= 0) r = sd_bus_negotiate_fds(bus_, 1);
    if (r >= 0) r = sd_bus_start(bus_);
  }
  if (r < 0) {
    fail(kExitUnreachable, fmt::format("cannot connect to the {} bus: {}; imarotd cannot be reached", bus,
                                       std::strerror(-r)));
  }
}

DaemonClient::~DaemonClient() {
  if (match_slot_ != nullptr) sd_bus_slot_unref(static_cast<sd_bus_slot*>(match_slot_));
  sd_bus_flush_close_unref(bus_);
}

DaemonStatus DaemonClient::status() {
  sd_bus_error error = SD_BUS_ERROR_NULL;
  sd_bus_message* reply = nullptr;
  int r = sd_bus_call_method(bus_, kBusName, kObjectPath, "org.freedesktop.DBus.Properties", "GetAll", &error,
                             &reply, "s", kInterface);
  if (r < 0) fail_call(bus_name_, "GetAll", error, r);

  DaemonStatus status;
  r = sd_bus_message_enter_container(reply, 'a', "{sv}");
  while (r >= 0 && (r = sd_bus_message_enter_container(reply, 'e', "sv")) > 0) {
    const char* name = nullptr;
    r = sd_bus_message_read(reply, "s", &name);
    if (r < 0) break;
    std::string property = name;
    std::string* text = nullptr;
    if (property == "EventSource") text = &status.event_source;
    if (property == "Template") text = &status.template_name;
    if (property == "HashAlgorithm") text = &status.hash_algorithm;
    if (property == "BootId") text = &status.boot_id;
    if (property == "PolicySource") text = &status.policy_source;
    uint64_t* counter = nullptr;
    if (property == "EntryCount") counter = &status.entries;
    if (property == "ViolationCount") counter = &status.violations;
    if (property == "LostEventCount") counter = &status.lost_events;

    if (text != nullptr) {
      const char* value = nullptr;
      r = sd_bus_message_read(reply, "v", "s", &value);
      if (r >= 0) *text = value;
    } else if (counter != nullptr) {
      r = sd_bus_message_read(reply, "v", "t", counter);
    } else if (property == "MeasureBeforeUse") {
      int value = 0;
      r = sd_bus_message_read(reply, "v", "b", &value);
      status.measure_before_use = value != 0;
    } else if (property == "Backends") {
      r = sd_bus_message_enter_container(reply, 'v', "a(sssuuassts)");
      if (r >= 0) r = sd_bus_message_enter_container(reply, 'a', "(sssuuassts)");
      while (r >= 0 && (r = sd_bus_message_enter_container(reply, 'r', "sssuuassts")) > 0) {
        RemoteBackend backend;
        const char* id = nullptr;
        const char* plugin = nullptr;
        const char* kind = nullptr;
        const char* state = nullptr;
        const char* last_error = nullptr;
        char** banks = nullptr;
        r = sd_bus_message_read(reply, "sssuu", &id, &plugin, &kind, &backend.register_index,
                                &backend.register_count);
        if (r >= 0) r = sd_bus_message_read_strv(reply, &banks);
        if (r >= 0) r = sd_bus_message_read(reply, "sts", &state, &backend.pending, &last_error);
        if (r < 0) break;
        backend.id = id;
        backend.plugin = plugin;
        backend.register_kind = kind;
        backend.state = state;
        backend.last_error = last_error;
        for (char** bank = banks; bank != nullptr && *bank != nullptr; ++bank) {
          backend.banks.emplace_back(*bank);
          std::free(*bank);
        }
        std::free(banks);
        status.backends.push_back(std::move(backend));
        r = sd_bus_message_exit_container(reply);
      }
      if (r >= 0) r = sd_bus_message_exit_container(reply);
      if (r >= 0) r = sd_bus_message_exit_container(reply);
    } else {
      r = sd_bus_message_skip(reply, "v");
    }
    if (r >= 0) r = sd_bus_message_exit_container(reply);
  }
  if (r >= 0) r = sd_bus_message_exit_container(reply);
  sd_bus_message_unref(reply);
  if (r < 0) fail_reply("GetAll", r);
  return status;
}

std::vector<imarot::Entry> DaemonClient::read_entries(uint64_t offset, uint32_t count) {
  if (offset > UINT32_MAX) fail(kExitUsage, fmt::format("entry offset {} is larger than ReadEntries accepts ({} at most)", offset, UINT32_MAX));
  sd_bus_error error = SD_BUS_ERROR_NULL;
  sd_bus_message* reply = nullptr;
  int r = sd_bus_call_method(bus_, kBusName, kObjectPath, kInterface, "ReadEntries", &error, &reply, "uu",
                             static_cast<uint32_t>(offset), count);
  if (r < 0) fail_call(bus_name_, "ReadEntries", error, r);

  std::vector<imarot::Entry> entries;
  r = sd_bus_message_enter_container(reply, 'a', "(ussssayayay)");
  while (r >= 0 && (r = sd_bus_message_enter_container(reply, 'r', "ussssayayay")) > 0) {
    uint32_t pcr = 0;
    const char* template_name = nullptr;
    const char* template_digest = nullptr;
    const char* digest_algorithm = nullptr;
    const char* file_digest = nullptr;
    const void* name = nullptr;
    const void* signature = nullptr;
    const void* data = nullptr;
    size_t name_size = 0;
    size_t signature_size = 0;
    size_t data_size = 0;
    r = sd_bus_message_read(reply, "ussss", &pcr, &template_name, &template_digest, &digest_algorithm, &file_digest);
    if (r >= 0) r = sd_bus_message_read_array(reply, 'y', &name, &name_size);
    if (r >= 0) r = sd_bus_message_read_array(reply, 'y', &signature, &signature_size);
    if (r >= 0) r = sd_bus_message_read_array(reply, 'y', &data, &data_size);
    if (r >= 0) r = sd_bus_message_exit_container(reply);
    if (r < 0) break;

    uint64_t index = offset + entries.size();
    auto tmpl = imarot::resolve_template(template_name);
    auto sha1 = digest_from_hex(template_digest);
    if (!tmpl || !sha1 || sha1->size() != 20) {
      sd_bus_message_unref(reply);
      fail(kExitUnreachable, fmt::format("ReadEntries: entry {} has template '{}' and digest '{}', which rotctl "
                                         "cannot use",
                                         index, template_name, template_digest));
    }
    imarot::Entry entry;
    entry.pcr = pcr;
    entry.tmpl = *tmpl;
    const auto* bytes = static_cast<const uint8_t*>(data);
    entry.data.assign(bytes, bytes + data_size);
    std::copy(sha1->data(), sha1->data() + 20, entry.sha1.begin());
    entries.push_back(std::move(entry));
  }
  if (r >= 0) r = sd_bus_message_exit_container(reply);
  sd_bus_message_unref(reply);
  if (r < 0) fail_reply("ReadEntries", r);
  return entries;
}

std::vector<imarot::Entry> DaemonClient::read_range(uint64_t offset, uint64_t end) {
  std::vector<imarot::Entry> all;
  while (offset < end) {
    auto page = read_entries(offset, static_cast<uint32_t>(std::min<uint64_t>(kPageSize, end - offset)));
    if (page.empty()) break;  // the list ended sooner than `end`
    offset += page.size();
    for (auto& entry : page) all.push_back(std::move(entry));
  }
  return all;
}

std::pair<int, uint64_t> DaemonClient::export_list(const std::string& format) {
  sd_bus_error error = SD_BUS_ERROR_NULL;
  sd_bus_message* reply = nullptr;
  int r = sd_bus_call_method(bus_, kBusName, kObjectPath, kInterface, "Export", &error, &reply, "s", format.c_str());
  if (r < 0) fail_call(bus_name_, "Export", error, r);
  int fd = -1;
  uint64_t entries = 0;
  r = sd_bus_message_read(reply, "ht", &fd, &entries);
  // The message owns `fd` and closes it when released.
  int copy = r >= 0 ? ::fcntl(fd, F_DUPFD_CLOEXEC, 3) : -1;
  sd_bus_message_unref(reply);
  if (r < 0) fail_reply("Export", r);
  if (copy < 0) fail(kExitUnreachable, fmt::format("Export: cannot keep the received descriptor: {}", std::strerror(errno)));
  return {copy, entries};
}

std::optional<std::vector<std::pair<uint32_t, imarot::Digest>>> DaemonClient::read_registers(
    const std::string& backend, imarot::HashAlgo bank, const std::vector<uint32_t>& registers) {
  sd_bus_message* call = nullptr;
  int r = sd_bus_message_new_method_call(bus_, &call, kBusName, kObjectPath, kInterface, "ReadRegisters");
  std::string bank_name(imarot::hash_name(bank));
  if (r >= 0) r = sd_bus_message_append(call, "ss", backend.c_str(), bank_name.c_str());
  if (r >= 0) r = sd_bus_message_append_array(call, 'u', registers.data(), registers.size() * sizeof(uint32_t));
  if (r < 0) fail(kExitUnreachable, fmt::format("cannot build the ReadRegisters call: {}", std::strerror(-r)));
  sd_bus_error error = SD_BUS_ERROR_NULL;
  sd_bus_message* reply = nullptr;
  r = sd_bus_call(bus_, call, 0, &error, &reply);
  sd_bus_message_unref(call);
  if (r < 0 && sd_bus_error_has_name(&error, "org.imarot1.Error.BankUnallocated")) {
    sd_bus_error_free(&error);
    return std::nullopt;
  }
  if (r < 0) fail_call(bus_name_, "ReadRegisters", error, r);

  std::vector<std::pair<uint32_t, imarot::Digest>> values;
  r = sd_bus_message_enter_container(reply, 'a', "(us)");
  uint32_t index = 0;
  const char* hex = nullptr;
  while (r >= 0 && (r = sd_bus_message_read(reply, "(us)", &index, &hex)) > 0) {
    auto digest = digest_from_hex(hex);
    if (!digest) {
      r = -EBADMSG;
      break;
    }
    values.emplace_back(index, *digest);
  }
  if (r >= 0) r = sd_bus_message_exit_container(reply);
  sd_bus_message_unref(reply);
  if (r < 0) fail_reply("ReadRegisters", r);
  return values;
}

std::pair<std::string, std::string> DaemonClient::boot_aggregate(const std::string& backend,
                                                                 const std::string& ima_hash) {
  sd_bus_error error = SD_BUS_ERROR_NULL;
  sd_bus_message* reply = nullptr;
  int r = sd_bus_call_method(bus_, kBusName, kObjectPath, kInterface, "BootAggregate", &error, &reply, "ss",
                             backend.c_str(), ima_hash.c_str());
  if (r < 0) fail_call(bus_name_, "BootAggregate", error, r);
  const char* bank = nullptr;
  const char* digest = nullptr;
  r = sd_bus_message_read(reply, "ss", &bank, &digest);
  std::pair<std::string, std::string> result;
  if (r >= 0) result = {bank, digest};
  sd_bus_message_unref(reply);
  if (r < 0) fail_reply("BootAggregate", r);
  return result;
}

namespace {

// Reads one a(xs) array of Verify's reply: the entry index (-1 for none)
// and the message of each finding.
int read_findings(sd_bus_message* reply, std::vector<imarot::VerifyFinding>& findings) {
  int r = sd_bus_message_enter_container(reply, 'a', "(xs)");
  int64_t entry = 0;
  const char* message = nullptr;
  while (r >= 0 && (r = sd_bus_message_read(reply, "(xs)", &entry, &message)) > 0) {
    std::optional<size_t> index;
    if (entry >= 0) index = static_cast<size_t>(entry);
    findings.push_back(imarot::VerifyFinding{index, message});
  }
  if (r >= 0) r = sd_bus_message_exit_container(reply);
  return r;
}

// Reads one register check, (ussstb), of Verify's reply.
int read_register_check(sd_bus_message* reply, imarot::RegisterCheck& check) {
  uint32_t index = 0;
  const char* bank = nullptr;
  const char* reference = nullptr;
  const char* replayed = nullptr;
  uint64_t entries = 0;
  int matched = 0;
  int r = sd_bus_message_read(reply, "(ussstb)", &index, &bank, &reference, &replayed, &entries, &matched);
  if (r <= 0) return r;
  auto algo = imarot::hash_algo_from_name(bank);
  auto reference_bytes = imarot::from_hex(reference);
  auto replayed_bytes = imarot::from_hex(replayed);
  if (!algo || !reference_bytes || !replayed_bytes) return -EBADMSG;
  check.id = imarot::RegisterId{index, *algo};
  check.reference = imarot::Digest(*reference_bytes);
  check.replayed = imarot::Digest(*replayed_bytes);
  check.entries = entries;
  check.matched = matched != 0;
  return 1;
}

int read_verify_backend(sd_bus_message* reply, RemoteVerifyBackend& backend) {
  int r = sd_bus_message_enter_container(reply, 'r', "ssusbttxa(ussstb)a(xs)a(xs)");
  if (r <= 0) return r;
  const char* id = nullptr;
  const char* kind = nullptr;
  const char* state = nullptr;
  int ok = 0;
  uint64_t entries = 0;
  uint64_t violations = 0;
  int64_t first_failing = -1;
  r = sd_bus_message_read(reply, "ssusbttx", &id, &kind, &backend.register_index, &state, &ok, &entries, &violations,
                          &first_failing);
  if (r < 0) return r;
  backend.id = id;
  backend.register_kind = kind;
  backend.state = state;
  backend.report.entries = entries;
  backend.report.violations = violations;
  if (first_failing >= 0) backend.report.first_failing_entry = static_cast<size_t>(first_failing);

  r = sd_bus_message_enter_container(reply, 'a', "(ussstb)");
  while (r >= 0) {
    imarot::RegisterCheck check;
    r = read_register_check(reply, check);
    if (r <= 0) break;
    backend.report.registers.push_back(std::move(check));
  }
  if (r >= 0) r = sd_bus_message_exit_container(reply);
  if (r >= 0) r = read_findings(reply, backend.report.failures);
  if (r >= 0) r = read_findings(reply, backend.report.warnings);
  if (r >= 0) r = sd_bus_message_exit_container(reply);
  if (r >= 0 && (ok != 0) != backend.report.ok()) r = -EBADMSG;  // "ok" means no failures
  return r < 0 ? r : 1;
}

}  // namespace

RemoteVerify DaemonClient::verify(const std::string& backend, const std::vector<std::string>& banks,
                                  std::optional<uint32_t> pcr) {
  sd_bus_message* call = nullptr;
  int r = sd_bus_message_new_method_call(bus_, &call, kBusName, kObjectPath, kInterface, "Verify");
  if (r >= 0) r = sd_bus_message_open_container(call, 'a', "{sv}");
  if (r >= 0 && !backend.empty()) r = sd_bus_message_append(call, "{sv}", "backend", "s", backend.c_str());
  if (r >= 0 && !banks.empty()) {
    r = sd_bus_message_open_container(call, 'e', "sv");
    if (r >= 0) r = sd_bus_message_append(call, "s", "banks");
    if (r >= 0) r = sd_bus_message_open_container(call, 'v', "as");
    if (r >= 0) r = sd_bus_message_open_container(call, 'a', "s");
    for (size_t i = 0; i < banks.size() && r >= 0; ++i) r = sd_bus_message_append(call, "s", banks[i].c_str());
    for (int level = 0; level < 3 && r >= 0; ++level) r = sd_bus_message_close_container(call);
  }
  if (r >= 0 && pcr) r = sd_bus_message_append(call, "{sv}", "register", "u", *pcr);
  if (r >= 0) r = sd_bus_message_close_container(call);
  if (r < 0) {
    sd_bus_message_unref(call);
    fail(kExitUnreachable, fmt::format("Verify: cannot build the call: {}", std::strerror(-r)));
  }

  sd_bus_error error = SD_BUS_ERROR_NULL;
  sd_bus_message* reply = nullptr;
  // The daemon replays the whole list: 1.6 s for a million entries in two
  // banks on the development VM (bench_committed_list). Allow more than
  // sd-bus's default of 25 s for slower machines and longer lists.
  r = sd_bus_call(bus_, call, 120ull * 1000 * 1000, &error, &reply);
  sd_bus_message_unref(call);
  if (r < 0) fail_call(bus_name_, "Verify", error, r);

  RemoteVerify result;
  int ok = 0;
  r = sd_bus_message_read(reply, "bt", &ok, &result.entries);
  result.ok = ok != 0;
  if (r >= 0) r = sd_bus_message_enter_container(reply, 'a', "(ssusbttxa(ussstb)a(xs)a(xs))");
  while (r >= 0) {
    RemoteVerifyBackend checked;
    r = read_verify_backend(reply, checked);
    if (r <= 0) break;
    result.backends.push_back(std::move(checked));
  }
  if (r >= 0) r = sd_bus_message_exit_container(reply);
  sd_bus_message_unref(reply);
  if (r < 0) fail_reply("Verify", r);
  return result;
}

RemoteBackend find_remote_backend(const DaemonStatus& status, const std::string& id, const std::string& plugin) {
  for (const auto& backend : status.backends) {
    if (id.empty() ? (plugin.empty() || backend.plugin == plugin) : backend.id == id) return backend;
  }
  std::string known;
  for (const auto& backend : status.backends) {
    known += fmt::format("{}'{}' ({})", known.empty() ? "" : ", ", backend.id, backend.plugin);
  }
  if (known.empty()) known = "none";
  if (!id.empty()) fail(kExitUsage, fmt::format("--backend '{}': imarotd has no such backend; its backends are {}", id, known));
  fail(kExitUsage, fmt::format("imarotd has no {} backend; its backends are {}; choose one with --backend", plugin, known));
}

namespace {

int on_entries_committed(sd_bus_message* m, void* userdata, sd_bus_error* /*error*/) {
  uint64_t count = 0;
  if (sd_bus_message_read(m, "t", &count) > 0) static_cast<std::vector<uint64_t>*>(userdata)->push_back(count);
  return 0;
}

int on_name_owner_changed(sd_bus_message* m, void* /*userdata*/, sd_bus_error* /*error*/) {
  const char* name = nullptr;
  const char* old_owner = nullptr;
  const char* new_owner = nullptr;
  if (sd_bus_message_read(m, "sss", &name, &old_owner, &new_owner) > 0 && std::strcmp(name, kBusName) == 0 &&
      new_owner[0] == '\0') {
    fail(kExitUnreachable, "imarotd left the bus while following the list");
  }
  return 0;
}

}  // namespace

void DaemonClient::subscribe_entries_committed() {
  sd_bus_slot* slot = nullptr;
  int r = sd_bus_match_signal(bus_, &slot, kBusName, kObjectPath, kInterface, "EntriesCommitted",
                              on_entries_committed, &received_counts_);
  if (r >= 0) {
    match_slot_ = slot;
    // The owner change needs no slot of its own: it lives as long as the bus.
    r = sd_bus_match_signal(bus_, nullptr, "org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus",
                            "NameOwnerChanged", on_name_owner_changed, nullptr);
  }
  if (r < 0) fail(kExitUnreachable, fmt::format("cannot subscribe to EntriesCommitted: {}", std::strerror(-r)));
}

void DaemonClient::wait_entries_committed(const std::function<bool(uint64_t)>& on_count) {
  for (;;) {
    int r = 0;
    while ((r = sd_bus_process(bus_, nullptr)) > 0) {
    }
    if (r < 0) fail(kExitUnreachable, fmt::format("the {} bus connection failed: {}", bus_name_, std::strerror(-r)));
    while (!received_counts_.empty()) {
      uint64_t count = received_counts_.front();
      received_counts_.erase(received_counts_.begin());
      if (!on_count(count)) return;
    }
    r = sd_bus_wait(bus_, UINT64_MAX);
    if (r < 0 && r != -EINTR) {
      fail(kExitUnreachable, fmt::format("waiting on the {} bus failed: {}", bus_name_, std::strerror(-r)));
    }
  }
}

void copy_fd_to_stdout(int fd) {
  std::cout.flush();
  char buffer[1 << 16];
  off_t offset = 0;
  for (;;) {
    ssize_t n = ::pread(fd, buffer, sizeof buffer, offset);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) fail(kExitUnreachable, fmt::format("cannot read the exported list: {}", std::strerror(errno)));
    if (n == 0) break;
    offset += n;
    const char* data = buffer;
    size_t left = static_cast<size_t>(n);
    while (left > 0) {
      ssize_t written = ::write(STDOUT_FILENO, data, left);
      if (written < 0 && errno == EINTR) continue;
      if (written <= 0) fail(kExitUsage, fmt::format("cannot write to standard output: {}", std::strerror(errno)));
      data += written;
      left -= static_cast<size_t>(written);
    }
  }
}

imarot::ParsedList daemon_list(DaemonClient& client) {
  auto [fd, count] = client.export_list("binary");
  imarot::Bytes data;
  char buffer[1 << 16];
  for (;;) {
    ssize_t n = ::read(fd, buffer, sizeof buffer);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    data.insert(data.end(), buffer, buffer + n);
  }
  ::close(fd);
  imarot::ParsedList list = imarot::parse_binary_list(data);
  if (list.error) {
    fail(kExitUnreachable, fmt::format("the list exported by imarotd does not parse: {}",
                                       imarot::format_parse_error(*list.error)));
  }
  if (list.entries.size() != count) {
    fail(kExitUnreachable, fmt::format("the list exported by imarotd has {} entries, but the daemon reported {}",
                                       list.entries.size(), count));
  }
  return list;
}

}  // namespace rotctl
