// org.imarot1 served by the real imarotd on a private dbus-daemon, with
// swtpm as its TPM: every property, method and signal, the bus policy and
// the daemon's own access check, and malformed arguments.
#include <fcntl.h>
#include <unistd.h>

#include <fstream>
#include <functional>
#include <iterator>
#include <optional>
#include <thread>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "daemon_harness.h"
#include "imarot/measurement_list.h"
#include "rot_test_util.h"
#include "imarot/replay.h"

namespace imarotd::test {
namespace {

using namespace std::chrono_literals;

std::string read_all(int fd) {
  std::string data;
  char buffer[65536];
  off_t offset = 0;
  for (;;) {
    ssize_t n = ::pread(fd, buffer, sizeof buffer, offset);
    if (n <= 0) break;
    data.append(buffer, static_cast<size_t>(n));
    offset += n;
  }
  return data;
}

// The block of one interface in introspection XML, with each line trimmed.
std::string interface_block(const std::string& xml, const std::string& name) {
  size_t begin = xml.find("<interface name=\"" + name + "\">");
  if (begin == std::string::npos) return "";
  size_t end = xml.find("</interface>", begin);
  if (end == std::string::npos) return "";
  std::string block = xml.substr(begin, end - begin);
  std::string trimmed;
  size_t start = 0;
  while (start < block.size()) {
    size_t newline = block.find('\n', start);
    std::string line = block.substr(start, newline == std::string::npos ? std::string::npos : newline - start);
    size_t first = line.find_first_not_of(" \t");
    if (first != std::string::npos) trimmed += line.substr(first) + "\n";
    if (newline == std::string::npos) break;
    start = newline + 1;
  }
  return trimmed;
}

struct RemoteEntry {
  uint32_t pcr = 0;
  std::string template_name;
  std::string template_digest;
  std::string digest_algorithm;
  std::string file_digest;
  std::string name;
  std::string signature;
  std::string data;
};

std::string read_bytes(sd_bus_message* m) {
  const void* data = nullptr;
  size_t size = 0;
  if (sd_bus_message_read_array(m, 'y', &data, &size) < 0) return "<unreadable>";
  return std::string(static_cast<const char*>(data), size);
}

std::vector<RemoteEntry> parse_entries(sd_bus_message* m) {
  std::vector<RemoteEntry> entries;
  if (sd_bus_message_enter_container(m, 'a', "(ussssayayay)") < 0) return entries;
  while (sd_bus_message_enter_container(m, 'r', "ussssayayay") > 0) {
    RemoteEntry entry;
    const char* strings[4] = {};
    sd_bus_message_read(m, "ussss", &entry.pcr, &strings[0], &strings[1], &strings[2], &strings[3]);
    entry.template_name = strings[0];
    entry.template_digest = strings[1];
    entry.digest_algorithm = strings[2];
    entry.file_digest = strings[3];
    entry.name = read_bytes(m);
    entry.signature = read_bytes(m);
    entry.data = read_bytes(m);
    sd_bus_message_exit_container(m);
    entries.push_back(std::move(entry));
  }
  sd_bus_message_exit_container(m);
  return entries;
}

class DBusService : public ::testing::Test {
 protected:
  void SetUp() override {
    auto started = harness_.start();
    ASSERT_TRUE(started) << started.error().message;
    bus_ = std::make_unique<TestBus>(harness_.address());
    ASSERT_TRUE(bus_->connected());
  }

  std::vector<RemoteEntry> read_entries(uint32_t offset, uint32_t count) {
    auto reply = bus_->call("ReadEntries", [&](sd_bus_message* m) { return sd_bus_message_append(m, "uu", offset, count); });
    EXPECT_TRUE(reply->ok()) << reply->error_message();
    if (!reply->ok()) return {};
    return parse_entries(reply->message);
  }

  // Measures a file and waits until the list has one more entry.
  void measure(const std::string& name, const std::string& content) {
    uint64_t before = bus_->entry_count();
    harness_.measure_file(name, content);
    ASSERT_TRUE(wait_until([&] { return bus_->entry_count() > before; }, 10s)) << harness_.daemon_log();
  }

  std::string export_list(const std::string& format, uint64_t* entries = nullptr) {
    auto reply = bus_->call("Export", [&](sd_bus_message* m) { return sd_bus_message_append(m, "s", format.c_str()); });
    EXPECT_TRUE(reply->ok()) << reply->error_message();
    if (!reply->ok()) return "";
    int fd = -1;
    uint64_t count = 0;
    EXPECT_GE(sd_bus_message_read(reply->message, "ht", &fd, &count), 0);
    if (entries != nullptr) *entries = count;
    return read_all(fd);
  }

  std::vector<std::pair<uint32_t, std::string>> read_registers(const std::string& bank,
                                                               const std::vector<uint32_t>& registers) {
    auto reply = bus_->call("ReadRegisters", [&](sd_bus_message* m) {
      int r = sd_bus_message_append(m, "ss", "tpm2", bank.c_str());
      if (r >= 0) r = sd_bus_message_append_array(m, 'u', registers.data(), registers.size() * sizeof(uint32_t));
      return r;
    });
    EXPECT_TRUE(reply->ok()) << reply->error_message();
    std::vector<std::pair<uint32_t, std::string>> values;
    if (!reply->ok()) return values;
    sd_bus_message_enter_container(reply->message, 'a', "(us)");
    uint32_t index = 0;
    const char* hex = nullptr;
    while (sd_bus_message_read(reply->message, "(us)", &index, &hex) > 0) values.emplace_back(index, hex);
    return values;
  }

  DaemonHarness harness_;
  std::unique_ptr<TestBus> bus_;
};

TEST_F(DBusService, IntrospectionMatchesDocs) {
  auto reply = bus_->call_interface("org.freedesktop.DBus.Introspectable", "Introspect");
  ASSERT_TRUE(reply->ok()) << reply->error_message();
  const char* xml = nullptr;
  ASSERT_GE(sd_bus_message_read(reply->message, "s", &xml), 0);

  std::string live = interface_block(xml, "org.imarot1.Manager");
  ASSERT_FALSE(live.empty()) << xml;
  std::string documented = interface_block(imarot::test::read_text_file(source_path("docs/org.imarot1.xml")),
                                           "org.imarot1.Manager");
  EXPECT_EQ(live, documented) << "docs/org.imarot1.xml differs from the running service; update it from:\n" << xml;
  EXPECT_NE(std::string(xml).find("org.freedesktop.DBus.Properties"), std::string::npos);
}

TEST_F(DBusService, PropertiesDescribeTheDaemon) {
  std::string boot_id = imarot::test::read_text_file("/proc/sys/kernel/random/boot_id");
  boot_id.erase(boot_id.find_last_not_of("\n") + 1);

  auto get_string = [&](const char* name) {
    char* value = nullptr;
    sd_bus_error error = SD_BUS_ERROR_NULL;
    int r = sd_bus_get_property_string(bus_->get(), "org.imarot1", "/org/imarot1", "org.imarot1.Manager", name,
                                       &error, &value);
    std::string out = r >= 0 ? value : "<error: " + std::string(error.message ? error.message : "") + ">";
    free(value);
    sd_bus_error_free(&error);
    return out;
  };
  EXPECT_EQ(get_string("EventSource"), "fanotify");
  EXPECT_EQ(get_string("Template"), "ima-ng");
  EXPECT_EQ(get_string("HashAlgorithm"), "sha256");
  EXPECT_EQ(get_string("BootId"), boot_id);
  EXPECT_EQ(get_string("PolicySource"), harness_.policy_path());

  int measure_before_use = -1;
  sd_bus_error error = SD_BUS_ERROR_NULL;
  ASSERT_GE(sd_bus_get_property_trivial(bus_->get(), "org.imarot1", "/org/imarot1", "org.imarot1.Manager",
                                        "MeasureBeforeUse", &error, 'b', &measure_before_use),
            0);
  EXPECT_EQ(measure_before_use, 0);

  measure("counted", "one");
  uint64_t counters[3] = {};
  const char* names[3] = {"EntryCount", "ViolationCount", "LostEventCount"};
  for (int i = 0; i < 3; ++i) {
    ASSERT_GE(sd_bus_get_property_trivial(bus_->get(), "org.imarot1", "/org/imarot1", "org.imarot1.Manager", names[i],
                                          &error, 't', &counters[i]),
              0)
        << names[i];
  }
  EXPECT_EQ(counters[0], 2u) << "boot_aggregate and the measured file";
  EXPECT_EQ(counters[1], 0u);
  EXPECT_EQ(counters[2], 0u);

  sd_bus_message* reply = nullptr;
  ASSERT_GE(sd_bus_get_property(bus_->get(), "org.imarot1", "/org/imarot1", "org.imarot1.Manager", "Backends", &error,
                                &reply, "a(sssuuassts)"),
            0);
  ASSERT_GE(sd_bus_message_enter_container(reply, 'a', "(sssuuassts)"), 0);
  ASSERT_GT(sd_bus_message_enter_container(reply, 'r', "sssuuassts"), 0);
  const char* id = nullptr;
  const char* plugin = nullptr;
  const char* kind = nullptr;
  uint32_t register_index = 0;
  uint32_t register_count = 0;
  char** banks = nullptr;
  const char* state = nullptr;
  uint64_t pending = 99;
  const char* last_error = nullptr;
  ASSERT_GE(sd_bus_message_read(reply, "sssuu", &id, &plugin, &kind, &register_index, &register_count), 0);
  ASSERT_GE(sd_bus_message_read_strv(reply, &banks), 0);
  ASSERT_GE(sd_bus_message_read(reply, "sts", &state, &pending, &last_error), 0);
  EXPECT_STREQ(id, "tpm2");
  EXPECT_STREQ(plugin, "tpm2");
  EXPECT_STREQ(kind, "PCR");
  EXPECT_EQ(register_index, 10u);
  EXPECT_EQ(register_count, 24u);
  ASSERT_NE(banks, nullptr);
  std::vector<std::string> bank_list;
  for (char** bank = banks; *bank != nullptr; ++bank) {
    bank_list.emplace_back(*bank);
    free(*bank);
  }
  free(banks);
  EXPECT_EQ(bank_list, (std::vector<std::string>{"sha1", "sha256"}));
  EXPECT_STREQ(state, "ok");
  EXPECT_EQ(pending, 0u);
  EXPECT_STREQ(last_error, "");
  sd_bus_message_exit_container(reply);
  EXPECT_EQ(sd_bus_message_enter_container(reply, 'r', "sssuuassts"), 0) << "only one backend is configured";
  sd_bus_message_unref(reply);
}

TEST_F(DBusService, ReadEntriesReturnsTypedFields) {
  measure("plain.txt", "plain content\n");
  std::vector<RemoteEntry> entries = read_entries(0, 10);
  ASSERT_EQ(entries.size(), 2u);

  EXPECT_EQ(entries[0].name, "boot_aggregate");
  EXPECT_EQ(entries[0].digest_algorithm, "sha256");

  const RemoteEntry& file = entries[1];
  EXPECT_EQ(file.pcr, 10u);
  EXPECT_EQ(file.template_name, "ima-ng");
  EXPECT_EQ(file.name, harness_.mount_point() + "/plain.txt");
  EXPECT_EQ(file.digest_algorithm, "sha256");
  std::string content = "plain content\n";
  auto digest = imarot::hash_bytes(imarot::HashAlgo::sha256,
                                   imarot::ByteView(reinterpret_cast<const uint8_t*>(content.data()), content.size()));
  ASSERT_TRUE(digest);
  EXPECT_EQ(file.file_digest, digest->hex());
  EXPECT_TRUE(file.signature.empty());
  // The template digest is the SHA-1 of the template data sent alongside.
  auto template_digest = imarot::hash_bytes(
      imarot::HashAlgo::sha1, imarot::ByteView(reinterpret_cast<const uint8_t*>(file.data.data()), file.data.size()));
  ASSERT_TRUE(template_digest);
  EXPECT_EQ(file.template_digest, template_digest->hex());
}

TEST_F(DBusService, NamesTravelAsExactBytes) {
  // Not UTF-8, with a space that the kernel's rule turns into '_'.
  std::string name = "odd name \xff\xfe.bin";
  measure(name, "bytes");
  std::vector<RemoteEntry> entries = read_entries(1, 1);
  ASSERT_EQ(entries.size(), 1u);
  EXPECT_EQ(entries[0].name, harness_.mount_point() + "/odd_name_\xff\xfe.bin");
}

TEST_F(DBusService, ReadEntriesPagesAndBounds) {
  for (int i = 0; i < 5; ++i) measure(fmt::format("page{}", i), fmt::format("content {}", i));
  ASSERT_EQ(bus_->entry_count(), 6u);

  std::vector<RemoteEntry> all = read_entries(0, 4096);
  ASSERT_EQ(all.size(), 6u);
  std::vector<RemoteEntry> middle = read_entries(2, 3);
  ASSERT_EQ(middle.size(), 3u);
  for (size_t i = 0; i < 3; ++i) EXPECT_EQ(middle[i].name, all[2 + i].name);
  EXPECT_EQ(read_entries(4, 100).size(), 2u) << "a count past the end stops at the end";
  EXPECT_TRUE(read_entries(6, 1).empty()) << "the offset equal to the count is the end of the list";
}

TEST_F(DBusService, ReadEntriesRejectsBadArguments) {
  struct Case {
    uint32_t offset;
    uint32_t count;
    std::string expected;
  };
  const Case cases[] = {
      {7, 1, "offset: 7 is beyond the end of the list, which has 1 entries"},
      {0, 0, "count: 0 is out of range; expected 1 to 4096"},
      {0, 4097, "count: 4097 is out of range"},
      {UINT32_MAX, UINT32_MAX, "offset: 4294967295 is beyond the end"},
  };
  for (const Case& c : cases) {
    auto reply = bus_->call("ReadEntries", [&](sd_bus_message* m) { return sd_bus_message_append(m, "uu", c.offset, c.count); });
    ASSERT_FALSE(reply->ok()) << c.offset << " " << c.count;
    EXPECT_EQ(reply->error_name(), "org.freedesktop.DBus.Error.InvalidArgs");
    EXPECT_NE(reply->error_message().find(c.expected), std::string::npos) << reply->error_message();
  }
  EXPECT_TRUE(harness_.daemon_running());
}

TEST_F(DBusService, ExportSendsSealedMemfd) {
  for (int i = 0; i < 3; ++i) measure(fmt::format("export{}", i), fmt::format("export {}", i));

  auto reply = bus_->call("Export", [](sd_bus_message* m) { return sd_bus_message_append(m, "s", "binary"); });
  ASSERT_TRUE(reply->ok()) << reply->error_message();
  int fd = -1;
  uint64_t count = 0;
  ASSERT_GE(sd_bus_message_read(reply->message, "ht", &fd, &count), 0);
  EXPECT_EQ(count, 4u);
  int seals = ::fcntl(fd, F_GET_SEALS);
  EXPECT_EQ(seals & (F_SEAL_WRITE | F_SEAL_SHRINK | F_SEAL_GROW), F_SEAL_WRITE | F_SEAL_SHRINK | F_SEAL_GROW);
  EXPECT_LT(::write(fd, "x", 1), 0) << "a sealed export cannot be written";

  std::string binary = read_all(fd);
  EXPECT_EQ(binary, imarot::test::read_text_file(harness_.durable_list()))
      << "the binary export is the durable list, byte for byte";
  imarot::ParsedList parsed =
      imarot::parse_binary_list(imarot::ByteView(reinterpret_cast<const uint8_t*>(binary.data()), binary.size()));
  EXPECT_FALSE(parsed.error);
  EXPECT_EQ(parsed.entries.size(), count);

  uint64_t ascii_count = 0;
  std::string ascii = export_list("ascii", &ascii_count);
  EXPECT_EQ(ascii_count, 4u);
  EXPECT_EQ(ascii, imarot::test::read_text_file(harness_.runtime_directory() + "/ascii_runtime_measurements"));
  EXPECT_EQ(ascii, imarot::serialize_ascii(parsed.entries));
}

TEST_F(DBusService, ExportAgainGetsOwnOffsetAndNewEntries) {
  measure("again0", "again 0");
  auto first = bus_->call("Export", [](sd_bus_message* m) { return sd_bus_message_append(m, "s", "ascii"); });
  auto second = bus_->call("Export", [](sd_bus_message* m) { return sd_bus_message_append(m, "s", "ascii"); });
  ASSERT_TRUE(first->ok()) << first->error_message();
  ASSERT_TRUE(second->ok()) << second->error_message();
  int first_fd = -1;
  int second_fd = -1;
  uint64_t first_count = 0;
  uint64_t second_count = 0;
  ASSERT_GE(sd_bus_message_read(first->message, "ht", &first_fd, &first_count), 0);
  ASSERT_GE(sd_bus_message_read(second->message, "ht", &second_fd, &second_count), 0);
  EXPECT_EQ(first_count, 2u);
  EXPECT_EQ(second_count, 2u);

  // read() moves a descriptor's offset; each export must start at 0 even
  // after another export of the same list was read to its end.
  auto read_sequential = [](int fd) {
    std::string data;
    char buffer[4096];
    for (ssize_t n; (n = ::read(fd, buffer, sizeof buffer)) > 0;) data.append(buffer, static_cast<size_t>(n));
    return data;
  };
  std::string first_text = read_sequential(first_fd);
  std::string second_text = read_sequential(second_fd);
  EXPECT_FALSE(first_text.empty());
  EXPECT_EQ(first_text, second_text);
  EXPECT_EQ(::fcntl(second_fd, F_GET_SEALS) & F_SEAL_WRITE, F_SEAL_WRITE);

  measure("again1", "again 1");
  uint64_t third_count = 0;
  std::string third_text = export_list("ascii", &third_count);
  EXPECT_EQ(third_count, 3u);
  EXPECT_EQ(third_text.rfind(first_text, 0), 0u) << "the list only grows";
  EXPECT_NE(third_text.find("/again1"), std::string::npos) << third_text;
}

TEST_F(DBusService, ExportKeepsEarlierSnapshots) {
  measure("snap0", "snapshot 0");
  auto first = bus_->call("Export", [](sd_bus_message* m) { return sd_bus_message_append(m, "s", "binary"); });
  ASSERT_TRUE(first->ok()) << first->error_message();
  int first_fd = -1;
  uint64_t first_count = 0;
  ASSERT_GE(sd_bus_message_read(first->message, "ht", &first_fd, &first_count), 0);
  std::string first_bytes = read_all(first_fd);

  // Calls sent together right after growth, while the daemon prepares its
  // next file, each get a sealed file of whole records that matches its
  // own count.
  measure("snap1", "snapshot 1");
  struct Pending {
    sd_bus_slot* slot = nullptr;
    bool done = false;
    std::string bytes;
    uint64_t count = 0;
    std::string error;
  };
  std::vector<Pending> pending(6);
  auto on_reply = [](sd_bus_message* m, void* userdata, sd_bus_error* /*error*/) -> int {
    auto* call = static_cast<Pending*>(userdata);
    call->done = true;
    if (sd_bus_message_is_method_error(m, nullptr)) {
      call->error = sd_bus_message_get_error(m)->message;
      return 0;
    }
    int fd = -1;
    if (sd_bus_message_read(m, "ht", &fd, &call->count) < 0) {
      call->error = "unexpected reply";
      return 0;
    }
    call->bytes = read_all(fd);
    return 0;
  };
  for (size_t i = 0; i < pending.size(); ++i) {
    if (i == 3) measure("snap2", "snapshot 2");
    ASSERT_GE(sd_bus_call_method_async(bus_->get(), &pending[i].slot, "org.imarot1", "/org/imarot1",
                                       "org.imarot1.Manager", "Export", on_reply, &pending[i], "s", "binary"),
              0);
  }
  ASSERT_TRUE(bus_->process_until(
      [&] {
        for (const Pending& call : pending) {
          if (!call.done) return false;
        }
        return true;
      },
      20s));
  for (size_t i = 0; i < pending.size(); ++i) {
    sd_bus_slot_unref(pending[i].slot);
    ASSERT_TRUE(pending[i].error.empty()) << pending[i].error;
    imarot::ParsedList parsed = imarot::parse_binary_list(
        imarot::ByteView(reinterpret_cast<const uint8_t*>(pending[i].bytes.data()), pending[i].bytes.size()));
    EXPECT_FALSE(parsed.error) << "call " << i;
    EXPECT_EQ(parsed.entries.size(), pending[i].count) << "call " << i;
    EXPECT_GE(pending[i].count, i < 3 ? 3u : 4u) << "call " << i;
    EXPECT_EQ(pending[i].bytes.rfind(first_bytes, 0), 0u) << "call " << i << ": the list only grows";
  }

  EXPECT_EQ(read_all(first_fd), first_bytes) << "a file already sent never changes";
  EXPECT_EQ(first_count, 2u);
}

TEST_F(DBusService, ExportRejectsUnknownFormat) {
  for (const char* format : {"xml", "", "ASCII", "binary "}) {
    auto reply = bus_->call("Export", [&](sd_bus_message* m) { return sd_bus_message_append(m, "s", format); });
    ASSERT_FALSE(reply->ok()) << format;
    EXPECT_EQ(reply->error_name(), "org.freedesktop.DBus.Error.InvalidArgs");
    EXPECT_NE(reply->error_message().find("expected 'binary' or 'ascii'"), std::string::npos)
        << reply->error_message();
  }
}

TEST_F(DBusService, ReadRegistersMatchesReplay) {
  for (int i = 0; i < 3; ++i) measure(fmt::format("reg{}", i), fmt::format("register {}", i));
  std::string binary = export_list("binary");
  imarot::ParsedList list =
      imarot::parse_binary_list(imarot::ByteView(reinterpret_cast<const uint8_t*>(binary.data()), binary.size()));
  std::vector<imarot::HashAlgo> banks = {imarot::HashAlgo::sha1, imarot::HashAlgo::sha256};
  auto replayed = imarot::replay_list(list.entries, banks);
  ASSERT_TRUE(replayed);

  for (imarot::HashAlgo bank : banks) {
    std::string name(imarot::hash_name(bank));
    auto values = read_registers(name, {10, 0, 17});
    ASSERT_EQ(values.size(), 3u) << name;
    EXPECT_EQ(values[0].first, 10u);
    EXPECT_EQ(values[0].second, replayed->at(imarot::RegisterId{10, bank}).hex()) << name;
    EXPECT_EQ(values[1].first, 0u);
    EXPECT_EQ(values[1].second, imarot::Digest::zeros(imarot::digest_size(bank)).hex()) << name;
    // PCR 17 starts as all ones after a TPM2_Startup(CLEAR).
    EXPECT_EQ(values[2].first, 17u);
    EXPECT_EQ(values[2].second, imarot::Digest::filled(imarot::digest_size(bank), 0xff).hex()) << name;
  }
}

TEST_F(DBusService, ReadRegistersRejectsBadArguments) {
  struct Case {
    std::string backend;
    std::string bank;
    std::vector<uint32_t> registers;
    std::string error_name;
    std::string expected;
  };
  const std::string invalid = "org.freedesktop.DBus.Error.InvalidArgs";
  const Case cases[] = {
      {"nope", "sha256", {10}, invalid, "unknown backend 'nope'; the open backends are 'tpm2'"},
      {"tpm2", "sha999", {10}, invalid, "bank: unknown hash algorithm 'sha999'"},
      {"tpm2", "sha256", {}, invalid, "registers: 0 register indexes given; expected 1 to 64"},
      {"tpm2", "sha256", std::vector<uint32_t>(65, 1), invalid, "registers: 65 register indexes given"},
      {"tpm2", "sha256", {10, 24}, invalid, "backend 'tpm2' has no PCR 24; its registers are 0 to 23"},
      {"tpm2", "sha384", {10}, "org.imarot1.Error.BankUnallocated", "bank sha384 of backend 'tpm2' is not allocated"},
  };
  for (const Case& c : cases) {
    auto reply = bus_->call("ReadRegisters", [&](sd_bus_message* m) {
      int r = sd_bus_message_append(m, "ss", c.backend.c_str(), c.bank.c_str());
      if (r >= 0) r = sd_bus_message_append_array(m, 'u', c.registers.data(), c.registers.size() * sizeof(uint32_t));
      return r;
    });
    ASSERT_FALSE(reply->ok()) << c.expected;
    EXPECT_EQ(reply->error_name(), c.error_name) << c.expected;
    EXPECT_NE(reply->error_message().find(c.expected), std::string::npos) << reply->error_message();
  }
  EXPECT_TRUE(harness_.daemon_running());
}

// Verify's reply, reduced to what the tests check.
struct VerifyReply {
  bool ok = false;
  uint64_t entries = 0;
  struct Backend {
    std::string id;
    std::string register_kind;
    uint32_t register_index = 0;
    bool ok = false;
    uint64_t entries = 0;
    int64_t first_failing_entry = -1;
    std::vector<std::string> checks;  // "INDEX BANK match" or "INDEX BANK MISMATCH"
    std::vector<std::string> failures;
  };
  std::vector<Backend> backends;
};

std::vector<std::string> read_finding_messages(sd_bus_message* m) {
  std::vector<std::string> messages;
  EXPECT_GE(sd_bus_message_enter_container(m, 'a', "(xs)"), 0);
  int64_t entry = 0;
  const char* message = nullptr;
  while (sd_bus_message_read(m, "(xs)", &entry, &message) > 0) messages.emplace_back(message);
  EXPECT_GE(sd_bus_message_exit_container(m), 0);
  return messages;
}

VerifyReply parse_verify(sd_bus_message* m) {
  VerifyReply reply;
  int ok = 0;
  EXPECT_GE(sd_bus_message_read(m, "bt", &ok, &reply.entries), 0);
  reply.ok = ok != 0;
  EXPECT_GE(sd_bus_message_enter_container(m, 'a', "(ssusbttxa(ussstb)a(xs)a(xs))"), 0);
  while (sd_bus_message_enter_container(m, 'r', "ssusbttxa(ussstb)a(xs)a(xs)") > 0) {
    VerifyReply::Backend backend;
    const char* id = nullptr;
    const char* kind = nullptr;
    const char* state = nullptr;
    int backend_ok = 0;
    uint64_t violations = 0;
    EXPECT_GE(sd_bus_message_read(m, "ssusbttx", &id, &kind, &backend.register_index, &state, &backend_ok,
                                  &backend.entries, &violations, &backend.first_failing_entry),
              0);
    backend.id = id;
    backend.register_kind = kind;
    backend.ok = backend_ok != 0;
    EXPECT_GE(sd_bus_message_enter_container(m, 'a', "(ussstb)"), 0);
    uint32_t index = 0;
    const char* bank = nullptr;
    const char* reference = nullptr;
    const char* replayed = nullptr;
    uint64_t entries = 0;
    int matched = 0;
    while (sd_bus_message_read(m, "(ussstb)", &index, &bank, &reference, &replayed, &entries, &matched) > 0) {
      backend.checks.push_back(fmt::format("{} {} {}", index, bank, matched ? "match" : "MISMATCH"));
    }
    EXPECT_GE(sd_bus_message_exit_container(m), 0);
    backend.failures = read_finding_messages(m);
    read_finding_messages(m);  // warnings
    EXPECT_GE(sd_bus_message_exit_container(m), 0);
    reply.backends.push_back(std::move(backend));
  }
  return reply;
}

// Appends Verify's a{sv} options: "backend" and "register" when set, and
// "banks" when not empty.
int append_verify_options(sd_bus_message* m, const std::string& backend, const std::vector<std::string>& banks,
                          std::optional<uint32_t> index) {
  int r = sd_bus_message_open_container(m, 'a', "{sv}");
  if (r >= 0 && !backend.empty()) r = sd_bus_message_append(m, "{sv}", "backend", "s", backend.c_str());
  if (r >= 0 && !banks.empty()) {
    r = sd_bus_message_open_container(m, 'e', "sv");
    if (r >= 0) r = sd_bus_message_append(m, "s", "banks");
    if (r >= 0) r = sd_bus_message_open_container(m, 'v', "as");
    if (r >= 0) r = sd_bus_message_open_container(m, 'a', "s");
    for (const std::string& bank : banks) {
      if (r >= 0) r = sd_bus_message_append(m, "s", bank.c_str());
    }
    for (int level = 0; level < 3 && r >= 0; ++level) r = sd_bus_message_close_container(m);
  }
  if (r >= 0 && index) r = sd_bus_message_append(m, "{sv}", "register", "u", *index);
  if (r >= 0) r = sd_bus_message_close_container(m);
  return r;
}

TEST_F(DBusService, VerifyMatchesRegisters) {
  for (int i = 0; i < 3; ++i) measure(fmt::format("verify{}", i), fmt::format("verify {}", i));
  auto reply = bus_->call("Verify", [](sd_bus_message* m) { return append_verify_options(m, "", {}, std::nullopt); });
  ASSERT_TRUE(reply->ok()) << reply->error_message();
  VerifyReply verify = parse_verify(reply->message);
  EXPECT_TRUE(verify.ok);
  EXPECT_EQ(verify.entries, 4u);
  ASSERT_EQ(verify.backends.size(), 1u);
  const VerifyReply::Backend& tpm = verify.backends[0];
  EXPECT_EQ(tpm.id, "tpm2");
  EXPECT_EQ(tpm.register_kind, "PCR");
  EXPECT_EQ(tpm.register_index, 10u);
  EXPECT_TRUE(tpm.ok);
  EXPECT_EQ(tpm.entries, 4u);
  EXPECT_EQ(tpm.first_failing_entry, -1);
  EXPECT_EQ(tpm.checks, (std::vector<std::string>{"10 sha1 match", "10 sha256 match"}));
  EXPECT_TRUE(tpm.failures.empty());
}

TEST_F(DBusService, VerifyHonorsBankAndRegister) {
  measure("filtered", "filtered");
  auto reply = bus_->call("Verify", [](sd_bus_message* m) { return append_verify_options(m, "tpm2", {"sha256"}, 10); });
  ASSERT_TRUE(reply->ok()) << reply->error_message();
  VerifyReply verify = parse_verify(reply->message);
  EXPECT_TRUE(verify.ok);
  ASSERT_EQ(verify.backends.size(), 1u);
  EXPECT_EQ(verify.backends[0].checks, std::vector<std::string>{"10 sha256 match"});

  // The list extends no register 11, which makes the check fail.
  auto other = bus_->call("Verify", [](sd_bus_message* m) { return append_verify_options(m, "", {}, 11); });
  ASSERT_TRUE(other->ok()) << other->error_message();
  VerifyReply failed = parse_verify(other->message);
  EXPECT_FALSE(failed.ok);
  ASSERT_EQ(failed.backends.size(), 1u);
  ASSERT_FALSE(failed.backends[0].failures.empty());
  EXPECT_NE(failed.backends[0].failures[0].find("no entry of the list extends register 11"), std::string::npos)
      << failed.backends[0].failures[0];
}

TEST_F(DBusService, VerifyReportsForeignExtend) {
  measure("before", "before");
  std::vector<std::pair<imarot::HashAlgo, imarot::Digest>> digests = {
      {imarot::HashAlgo::sha256, imarot::Digest::filled(32, 0x42)}};
  auto tools = imarot::test::SwtpmTools::find();
  ASSERT_TRUE(tools);
  auto extended = imarot::test::pcrextend(*tools, harness_.swtpm()->tcti(), 10, digests);
  ASSERT_TRUE(extended) << extended.error().message;

  auto reply = bus_->call("Verify", [](sd_bus_message* m) { return append_verify_options(m, "", {}, std::nullopt); });
  ASSERT_TRUE(reply->ok()) << reply->error_message();
  VerifyReply verify = parse_verify(reply->message);
  EXPECT_FALSE(verify.ok);
  ASSERT_EQ(verify.backends.size(), 1u);
  EXPECT_EQ(verify.backends[0].checks, (std::vector<std::string>{"10 sha1 match", "10 sha256 MISMATCH"}));
  EXPECT_FALSE(verify.backends[0].failures.empty());
  EXPECT_TRUE(harness_.daemon_running());
}

TEST_F(DBusService, VerifyLimitsCallsInProgress) {
  measure("busy", "busy");
  struct Pending {
    sd_bus_slot* slot = nullptr;
    bool done = false;
    std::string error_name;
  };
  std::vector<Pending> pending(12);
  auto on_reply = [](sd_bus_message* m, void* userdata, sd_bus_error* /*error*/) -> int {
    auto* call = static_cast<Pending*>(userdata);
    call->done = true;
    if (sd_bus_message_is_method_error(m, nullptr)) call->error_name = sd_bus_message_get_error(m)->name;
    return 0;
  };
  for (Pending& call : pending) {
    sd_bus_message* m = nullptr;
    ASSERT_GE(sd_bus_message_new_method_call(bus_->get(), &m, "org.imarot1", "/org/imarot1", "org.imarot1.Manager",
                                             "Verify"),
              0);
    ASSERT_GE(append_verify_options(m, "", {}, std::nullopt), 0);
    ASSERT_GE(sd_bus_call_async(bus_->get(), &call.slot, m, on_reply, &call, 0), 0);
    sd_bus_message_unref(m);
  }
  ASSERT_TRUE(bus_->process_until(
      [&] {
        for (const Pending& call : pending) {
          if (!call.done) return false;
        }
        return true;
      },
      30s));
  size_t succeeded = 0;
  for (Pending& call : pending) {
    sd_bus_slot_unref(call.slot);
    if (call.error_name.empty()) {
      ++succeeded;
    } else {
      EXPECT_EQ(call.error_name, "org.imarot1.Error.Busy");
    }
  }
  EXPECT_GE(succeeded, 1u);
  auto after = bus_->call("Verify", [](sd_bus_message* m) { return append_verify_options(m, "", {}, std::nullopt); });
  EXPECT_TRUE(after->ok()) << "the limit counts only calls in progress: " << after->error_message();
}

TEST_F(DBusService, VerifyRejectsBadOptions) {
  struct Case {
    std::function<int(sd_bus_message*)> append;
    std::string expected;
  };
  const Case cases[] = {
      {[](sd_bus_message* m) { return append_verify_options(m, "nope", {}, std::nullopt); },
       "backend: backend 'nope' not found; imarotd's backends are tpm2"},
      {[](sd_bus_message* m) { return append_verify_options(m, "", {"sha999"}, std::nullopt); },
       "options: banks: unknown hash algorithm 'sha999'"},
      {[](sd_bus_message* m) { return sd_bus_message_append(m, "a{sv}", 1, "colour", "s", "blue"); },
       "options: unknown key 'colour'; expected 'backend', 'banks' or 'register'"},
      {[](sd_bus_message* m) { return sd_bus_message_append(m, "a{sv}", 1, "register", "s", "10"); },
       "options: 'register' has type 's'; expected 'u'"},
      {[](sd_bus_message* m) { return sd_bus_message_append(m, "a{sv}", 1, "banks", "s", "sha1"); },
       "options: 'banks' has type 's'; expected 'as'"},
      {[](sd_bus_message* m) { return sd_bus_message_append(m, "a{sv}", 1, "banks", "as", 0); },
       "options: 'banks' is empty; expected at least one bank"},
      {[](sd_bus_message* m) { return sd_bus_message_append(m, "a{sv}", 1, "backend", "s", ""); },
       "options: 'backend' is empty; expected a backend id"},
  };
  for (const Case& c : cases) {
    auto reply = bus_->call("Verify", c.append);
    ASSERT_FALSE(reply->ok()) << c.expected;
    EXPECT_EQ(reply->error_name(), "org.freedesktop.DBus.Error.InvalidArgs") << c.expected;
    EXPECT_NE(reply->error_message().find(c.expected), std::string::npos) << reply->error_message();
  }

  CommandResult wrong_signature = busctl(harness_.address(), {"call", "org.imarot1", "/org/imarot1",
                                                              "org.imarot1.Manager", "Verify", "s", "tpm2"});
  EXPECT_NE(wrong_signature.exit_code, 0);
  EXPECT_NE(wrong_signature.err.find("expecting 'a{sv}'"), std::string::npos) << wrong_signature.err;
  EXPECT_TRUE(harness_.daemon_running());
}

TEST_F(DBusService, BootAggregateMatchesFirstEntry) {
  auto reply = bus_->call("BootAggregate", [](sd_bus_message* m) { return sd_bus_message_append(m, "ss", "tpm2", "sha256"); });
  ASSERT_TRUE(reply->ok()) << reply->error_message();
  const char* bank = nullptr;
  const char* digest = nullptr;
  ASSERT_GE(sd_bus_message_read(reply->message, "ss", &bank, &digest), 0);
  EXPECT_STREQ(bank, "sha256");

  std::vector<imarot::Digest> pcrs;
  for (const auto& [index, hex] : read_registers("sha256", {0, 1, 2, 3, 4, 5, 6, 7, 8, 9})) {
    pcrs.push_back(imarot::Digest(imarot::ByteView(*imarot::from_hex(hex))));
  }
  auto expected = imarot::compute_boot_aggregate(imarot::HashAlgo::sha256, pcrs);
  ASSERT_TRUE(expected);
  EXPECT_EQ(std::string(digest), expected->hex());

  std::vector<RemoteEntry> first = read_entries(0, 1);
  ASSERT_EQ(first.size(), 1u);
  EXPECT_EQ(first[0].name, "boot_aggregate");
  EXPECT_EQ(first[0].file_digest, std::string(digest));

  auto sha1 = bus_->call("BootAggregate", [](sd_bus_message* m) { return sd_bus_message_append(m, "ss", "tpm2", "sha1"); });
  ASSERT_TRUE(sha1->ok()) << sha1->error_message();
  ASSERT_GE(sd_bus_message_read(sha1->message, "ss", &bank, &digest), 0);
  EXPECT_STREQ(bank, "sha1");
  EXPECT_EQ(std::string(digest).size(), 40u);
}

TEST_F(DBusService, BootAggregateRejectsBadArguments) {
  auto unknown = bus_->call("BootAggregate", [](sd_bus_message* m) { return sd_bus_message_append(m, "ss", "tdx", "sha256"); });
  ASSERT_FALSE(unknown->ok());
  EXPECT_EQ(unknown->error_name(), "org.freedesktop.DBus.Error.InvalidArgs");
  EXPECT_NE(unknown->error_message().find("unknown backend 'tdx'"), std::string::npos) << unknown->error_message();

  auto algorithm = bus_->call("BootAggregate", [](sd_bus_message* m) { return sd_bus_message_append(m, "ss", "tpm2", "crc32"); });
  ASSERT_FALSE(algorithm->ok());
  EXPECT_EQ(algorithm->error_name(), "org.freedesktop.DBus.Error.InvalidArgs");
  EXPECT_NE(algorithm->error_message().find("ima_hash: unknown hash algorithm 'crc32'"), std::string::npos)
      << algorithm->error_message();
}

TEST_F(DBusService, ReloadPolicyAppliesNewRules) {
  // The new policy measures nothing, so a file read afterwards stays out.
  imarot::test::write_text_file(harness_.policy_path(), "dont_measure fsmagic=0x01021994\n");
  auto reply = bus_->call("ReloadPolicy");
  ASSERT_TRUE(reply->ok()) << reply->error_message();
  const char* source = nullptr;
  ASSERT_GE(sd_bus_message_read(reply->message, "s", &source), 0);
  EXPECT_EQ(std::string(source), harness_.policy_path());

  uint64_t before = bus_->entry_count();
  harness_.measure_file("after-reload", "not measured");
  std::this_thread::sleep_for(500ms);
  EXPECT_EQ(bus_->entry_count(), before);
}

TEST_F(DBusService, ReloadPolicyReportsInvalidPolicy) {
  imarot::test::write_text_file(harness_.policy_path(), "measure func=NO_SUCH_HOOK\n");
  auto reply = bus_->call("ReloadPolicy");
  ASSERT_FALSE(reply->ok());
  EXPECT_EQ(reply->error_name(), "org.imarot1.Error.PolicyInvalid");
  EXPECT_NE(reply->error_message().find(harness_.policy_path() + ":1:"), std::string::npos) << reply->error_message();

  // The old policy stays in force.
  measure("still-measured", "old policy");
  EXPECT_TRUE(harness_.daemon_running());
}

TEST_F(DBusService, EntriesCommittedIsCoalesced) {
  std::vector<uint64_t> counts;
  sd_bus_slot* slot = nullptr;
  ASSERT_GE(sd_bus_match_signal(
                bus_->get(), &slot, "org.imarot1", "/org/imarot1", "org.imarot1.Manager", "EntriesCommitted",
                [](sd_bus_message* m, void* userdata, sd_bus_error*) {
                  uint64_t count = 0;
                  if (sd_bus_message_read(m, "t", &count) > 0) static_cast<std::vector<uint64_t>*>(userdata)->push_back(count);
                  return 0;
                },
                &counts),
            0);
  std::vector<std::string> changed;
  sd_bus_slot* properties_slot = nullptr;
  ASSERT_GE(sd_bus_match_signal(
                bus_->get(), &properties_slot, "org.imarot1", "/org/imarot1", "org.freedesktop.DBus.Properties",
                "PropertiesChanged",
                [](sd_bus_message* m, void* userdata, sd_bus_error*) {
                  const char* interface = nullptr;
                  sd_bus_message_read(m, "s", &interface);
                  sd_bus_message_enter_container(m, 'a', "{sv}");
                  while (sd_bus_message_enter_container(m, 'e', "sv") > 0) {
                    const char* name = nullptr;
                    sd_bus_message_read(m, "s", &name);
                    static_cast<std::vector<std::string>*>(userdata)->emplace_back(name);
                    sd_bus_message_skip(m, "v");
                    sd_bus_message_exit_container(m);
                  }
                  return 0;
                },
                &changed),
            0);

  const int files = 200;
  for (int i = 0; i < files; ++i) harness_.measure_file(fmt::format("burst{}", i), fmt::format("burst {}", i));
  uint64_t expected = 1 + files;
  bool reached = bus_->process_until([&] { return !counts.empty() && counts.back() == expected; }, 20s);
  ASSERT_TRUE(reached)
      << "last count " << (counts.empty() ? 0 : counts.back()) << ", expected " << expected;

  for (size_t i = 1; i < counts.size(); ++i) EXPECT_GT(counts[i], counts[i - 1]);
  EXPECT_LT(counts.size(), static_cast<size_t>(files) / 2) << "signals are coalesced under load";
  EXPECT_EQ(bus_->entry_count(), expected);
  EXPECT_NE(std::find(changed.begin(), changed.end(), "EntryCount"), changed.end());
  sd_bus_slot_unref(slot);
  sd_bus_slot_unref(properties_slot);
}

TEST_F(DBusService, PolicySourceChangeIsSignalled) {
  std::vector<std::string> changed;
  sd_bus_slot* slot = nullptr;
  ASSERT_GE(sd_bus_match_signal(
                bus_->get(), &slot, "org.imarot1", "/org/imarot1", "org.freedesktop.DBus.Properties",
                "PropertiesChanged",
                [](sd_bus_message* m, void* userdata, sd_bus_error*) {
                  const char* interface = nullptr;
                  sd_bus_message_read(m, "s", &interface);
                  sd_bus_message_enter_container(m, 'a', "{sv}");
                  while (sd_bus_message_enter_container(m, 'e', "sv") > 0) {
                    const char* name = nullptr;
                    sd_bus_message_read(m, "s", &name);
                    static_cast<std::vector<std::string>*>(userdata)->emplace_back(name);
                    sd_bus_message_skip(m, "v");
                    sd_bus_message_exit_container(m);
                  }
                  return 0;
                },
                &changed),
            0);
  ASSERT_EQ(::kill(harness_.daemon_pid(), SIGHUP), 0);
  EXPECT_TRUE(bus_->process_until(
      [&] { return std::find(changed.begin(), changed.end(), "PolicySource") != changed.end(); }, 10s));
  sd_bus_slot_unref(slot);
}

TEST_F(DBusService, ReaderGroupMayReadButNotReload) {
  CommandResult read = run_as(kReaderUid, {BUSCTL_PATH, "--address=" + harness_.address(), "call", "org.imarot1",
                                           "/org/imarot1", "org.imarot1.Manager", "ReadEntries", "uu", "0", "1"});
  EXPECT_EQ(read.exit_code, 0) << read.err;
  EXPECT_EQ(read.out.rfind("a(ussssayayay) 1 10 \"ima-ng\"", 0), 0u) << read.out;

  CommandResult property = run_as(kReaderUid, {BUSCTL_PATH, "--address=" + harness_.address(), "get-property",
                                               "org.imarot1", "/org/imarot1", "org.imarot1.Manager", "EntryCount"});
  EXPECT_EQ(property.exit_code, 0) << property.err;
  EXPECT_EQ(property.out, "t 1\n");

  CommandResult verify = run_as(kReaderUid, {BUSCTL_PATH, "--address=" + harness_.address(), "call", "org.imarot1",
                                             "/org/imarot1", "org.imarot1.Manager", "Verify", "a{sv}", "1", "banks",
                                             "as", "1", "sha256"});
  EXPECT_EQ(verify.exit_code, 0) << verify.err;
  EXPECT_EQ(verify.out.rfind("bta(ssusbttxa(ussstb)a(xs)a(xs)) true 1 1 \"tpm2\"", 0), 0u) << verify.out;

  CommandResult reload = run_as(kReaderUid, {BUSCTL_PATH, "--address=" + harness_.address(), "call", "org.imarot1",
                                             "/org/imarot1", "org.imarot1.Manager", "ReloadPolicy"});
  EXPECT_NE(reload.exit_code, 0);
  EXPECT_NE(reload.err.find("Access denied"), std::string::npos) << reload.err;
  EXPECT_TRUE(harness_.daemon_running());
}

TEST_F(DBusService, StrangerIsDeniedByBusPolicy) {
  CommandResult read = run_as(kStrangerUid, {BUSCTL_PATH, "--address=" + harness_.address(), "call", "org.imarot1",
                                             "/org/imarot1", "org.imarot1.Manager", "ReadEntries", "uu", "0", "1"});
  EXPECT_NE(read.exit_code, 0);
  EXPECT_NE(read.err.find("Access denied"), std::string::npos) << read.err;

  CommandResult verify = run_as(kStrangerUid, {BUSCTL_PATH, "--address=" + harness_.address(), "call", "org.imarot1",
                                               "/org/imarot1", "org.imarot1.Manager", "Verify", "a{sv}", "0"});
  EXPECT_NE(verify.exit_code, 0);
  EXPECT_NE(verify.err.find("Access denied"), std::string::npos) << verify.err;

  CommandResult property = run_as(kStrangerUid, {BUSCTL_PATH, "--address=" + harness_.address(), "get-property",
                                                 "org.imarot1", "/org/imarot1", "org.imarot1.Manager", "EntryCount"});
  EXPECT_NE(property.exit_code, 0);

  // Introspection stays open to everyone.
  CommandResult introspect =
      run_as(kStrangerUid, {BUSCTL_PATH, "--address=" + harness_.address(), "call", "org.imarot1", "/org/imarot1",
                            "org.freedesktop.DBus.Introspectable", "Introspect"});
  EXPECT_EQ(introspect.exit_code, 0) << introspect.err;
  EXPECT_NE(introspect.out.find("ReadEntries"), std::string::npos);
}

TEST_F(DBusService, DaemonDeniesReloadWhenBusAllowsIt) {
  // The test bus lets this uid send anything to org.imarot1, so the call
  // reaches imarotd, which must reject it on its own. dbus-send prints the
  // error's own message, which busctl replaces with "Access denied". A
  // rejection by the bus would read "Rejected send message".
  CommandResult reload = run_as(kUnrestrictedUid, {DBUS_SEND_PATH, "--bus=" + harness_.address(), "--print-reply",
                                                   "--dest=org.imarot1", "/org/imarot1",
                                                   "org.imarot1.Manager.ReloadPolicy"});
  EXPECT_NE(reload.exit_code, 0);
  EXPECT_NE(reload.err.find("Error org.freedesktop.DBus.Error.AccessDenied: ReloadPolicy needs root (effective uid "
                            "0); the caller runs as uid 2"),
            std::string::npos)
      << reload.err;

  // The same call through the bus policy alone is rejected by the bus.
  CommandResult stranger = run_as(kStrangerUid, {DBUS_SEND_PATH, "--bus=" + harness_.address(), "--print-reply",
                                                 "--dest=org.imarot1", "/org/imarot1",
                                                 "org.imarot1.Manager.ReloadPolicy"});
  EXPECT_NE(stranger.exit_code, 0);
  EXPECT_NE(stranger.err.find("Rejected send message"), std::string::npos) << stranger.err;

  // Reads are allowed to it, which shows the call did reach the daemon.
  CommandResult read = run_as(kUnrestrictedUid, {BUSCTL_PATH, "--address=" + harness_.address(), "call",
                                                 "org.imarot1", "/org/imarot1", "org.imarot1.Manager", "ReadEntries",
                                                 "uu", "0", "1"});
  EXPECT_EQ(read.exit_code, 0) << read.err;
  EXPECT_TRUE(harness_.daemon_running());
}

TEST_F(DBusService, MalformedCallsGetErrors) {
  struct Case {
    std::vector<std::string> arguments;
    std::string expected;
  };
  const Case cases[] = {
      {{"call", "org.imarot1", "/org/imarot1", "org.imarot1.Manager", "ReadEntries", "ss", "a", "b"},
       "Invalid arguments 'ss' to call org.imarot1.Manager.ReadEntries(), expecting 'uu'"},
      {{"call", "org.imarot1", "/org/imarot1", "org.imarot1.Manager", "ReadEntries", "u", "0"}, "expecting 'uu'"},
      {{"call", "org.imarot1", "/org/imarot1", "org.imarot1.Manager", "NoSuchMethod"}, "Unknown method"},
      {{"set-property", "org.imarot1", "/org/imarot1", "org.imarot1.Manager", "EntryCount", "t", "5"},
       "Property 'EntryCount' is not writable"},
      {{"get-property", "org.imarot1", "/org/imarot1", "org.imarot1.Manager", "NoSuchProperty"},
       "Unknown interface org.imarot1.Manager or property NoSuchProperty"},
      {{"call", "org.imarot1", "/org/imarot1/other", "org.imarot1.Manager", "ReadEntries", "uu", "0", "1"},
       "Unknown object"},
  };
  for (const Case& c : cases) {
    CommandResult result = busctl(harness_.address(), c.arguments);
    EXPECT_NE(result.exit_code, 0) << c.expected;
    EXPECT_NE(result.err.find(c.expected), std::string::npos) << result.err;
  }
  EXPECT_TRUE(harness_.daemon_running());
  EXPECT_EQ(bus_->entry_count(), 1u);
}

TEST(DBusServiceUnavailable, DaemonMeasuresWithoutBus) {
  DaemonHarness harness;
  HarnessOptions options;
  options.start_bus = false;
  options.tpm = false;
  options.dbus_setting = "unix:path=/nonexistent/imarot-test-bus.sock";
  auto started = harness.start(options);
  ASSERT_TRUE(started) << started.error().message;

  EXPECT_NE(harness.daemon_log().find("D-Bus service unavailable: cannot connect to the "
                                      "unix:path=/nonexistent/imarot-test-bus.sock bus"),
            std::string::npos)
      << harness.daemon_log();
  harness.measure_file("no-bus", "still measured");
  std::string ascii_path = harness.runtime_directory() + "/ascii_runtime_measurements";
  EXPECT_TRUE(wait_until(
      [&] { return imarot::test::read_text_file(ascii_path).find("/no-bus") != std::string::npos; }, 10s))
      << harness.daemon_log();
  EXPECT_TRUE(harness.daemon_running());
}

TEST(DBusServiceUnavailable, NoneDisablesService) {
  DaemonHarness harness;
  HarnessOptions options;
  options.tpm = false;
  options.dbus_setting = "none";
  auto started = harness.start(options);
  ASSERT_TRUE(started) << started.error().message;

  TestBus bus(harness.address());
  ASSERT_TRUE(bus.connected());
  auto reply = bus.call_interface("org.freedesktop.DBus.Peer", "Ping");
  EXPECT_FALSE(reply->ok());
  EXPECT_EQ(reply->error_name(), "org.freedesktop.DBus.Error.ServiceUnknown");
  EXPECT_EQ(harness.daemon_log().find("D-Bus"), std::string::npos) << harness.daemon_log();
}

TEST(DBusServiceUnavailable, ServiceAppearsWhenBusStarts) {
  // The daemon starts before its bus exists and takes the name on its
  // periodic retry, every 2 s, once the bus is there.
  DaemonHarness harness;
  HarnessOptions options;
  options.start_bus = false;
  options.tpm = false;
  auto started = harness.start(options);
  ASSERT_TRUE(started) << started.error().message;
  EXPECT_NE(harness.daemon_log().find("D-Bus service unavailable"), std::string::npos) << harness.daemon_log();

  auto bus_started = harness.start_bus();
  ASSERT_TRUE(bus_started) << bus_started.error().message;
  TestBus bus(harness.address());
  ASSERT_TRUE(bus.connected());
  auto bus_up = std::chrono::steady_clock::now();
  EXPECT_TRUE(wait_until([&] { return bus.call_interface("org.freedesktop.DBus.Peer", "Ping")->ok(); }, 20s))
      << harness.daemon_log();
  EXPECT_LT(std::chrono::steady_clock::now() - bus_up, 8s) << "the retry interval is 2 s";
  EXPECT_EQ(bus.entry_count(), 1u);
}

}  // namespace
}  // namespace imarotd::test
