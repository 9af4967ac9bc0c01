// Loading RoT plugins by name: every way a plugin or its config can be wrong
// gets its own clear error. None of these tests reaches a TPM.
#include <gtest/gtest.h>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <cstdlib>

#include "imarot/rot.h"
#include "imarot/rot_backend_set.h"
#include "imarot/rot_plugin.h"
#include "rot_test_util.h"

namespace imarot::test {
namespace {

using rot::RotBackend;
using rot::Status;

TEST(PluginLoader, UnknownNameListsAvailablePlugins) {
  auto backend = RotBackend::load("nosuch", "{}", plugin_dir());
  ASSERT_FALSE(backend);
  EXPECT_EQ(backend.error().status, Status::invalid);
  EXPECT_NE(backend.error().message.find("no RoT backend named 'nosuch'"), std::string::npos) << backend.error().message;
  EXPECT_NE(backend.error().message.find("imarot-rot-nosuch.so"), std::string::npos) << backend.error().message;
  EXPECT_NE(backend.error().message.find("available: "), std::string::npos) << backend.error().message;
  EXPECT_NE(backend.error().message.find("tpm2"), std::string::npos) << backend.error().message;
}

TEST(PluginLoader, EmptyDirectorySaysSo) {
  TempDir dir;
  auto backend = RotBackend::load("tpm2", "{}", dir.path());
  ASSERT_FALSE(backend);
  EXPECT_NE(backend.error().message.find("contains no plugins"), std::string::npos) << backend.error().message;
}

TEST(PluginLoader, MissingDirectoryIsNamed) {
  TempDir dir;
  std::string missing = dir.file("no-such-dir");
  auto backend = RotBackend::load("tpm2", "{}", missing);
  ASSERT_FALSE(backend);
  EXPECT_EQ(backend.error().status, Status::invalid);
  EXPECT_NE(backend.error().message.find(missing), std::string::npos) << backend.error().message;
  EXPECT_NE(backend.error().message.find("does not exist"), std::string::npos) << backend.error().message;
}

TEST(PluginLoader, WrongAbiVersionNamesBothVersions) {
  auto backend = RotBackend::load("wrongabi", "{}", test_plugin_dir());
  ASSERT_FALSE(backend);
  const std::string& message = backend.error().message;
  EXPECT_NE(message.find("ABI version 99"), std::string::npos) << message;
  EXPECT_NE(message.find(fmt::format("uses version {}", IMAROT_ROT_ABI_VERSION)), std::string::npos) << message;
  EXPECT_NE(message.find("imarot-rot-wrongabi.so"), std::string::npos) << message;
}

TEST(PluginLoader, MissingEntrySymbolRejected) {
  auto backend = RotBackend::load("noentry", "{}", test_plugin_dir());
  ASSERT_FALSE(backend);
  EXPECT_NE(backend.error().message.find("does not export imarot_rot_plugin()"), std::string::npos)
      << backend.error().message;
}

TEST(PluginLoader, TableNameMustMatchFileName) {
  auto backend = RotBackend::load("misnamed", "{}", test_plugin_dir());
  ASSERT_FALSE(backend);
  EXPECT_NE(backend.error().message.find("names itself 'other', not 'misnamed'"), std::string::npos)
      << backend.error().message;
}

TEST(PluginLoader, TruncatedTableRejected) {
  auto backend = RotBackend::load("shorttable", "{}", test_plugin_dir());
  ASSERT_FALSE(backend);
  EXPECT_NE(backend.error().message.find("operations table is 16 bytes"), std::string::npos)
      << backend.error().message;
}

TEST(PluginLoader, FileThatIsNotALibraryRejected) {
  TempDir dir;
  write_text_file(dir.file("imarot-rot-garbage.so"), "this is not an ELF file\n");
  auto backend = RotBackend::load("garbage", "{}", dir.path());
  ASSERT_FALSE(backend);
  EXPECT_NE(backend.error().message.find("cannot load RoT plugin"), std::string::npos) << backend.error().message;
  EXPECT_NE(backend.error().message.find(dir.file("imarot-rot-garbage.so")), std::string::npos)
      << backend.error().message;
}

TEST(PluginLoader, BrokenJsonConfigGivesPosition) {
  auto backend = RotBackend::load("tpm2", "{\"tcti\": ", plugin_dir());
  ASSERT_FALSE(backend);
  EXPECT_EQ(backend.error().status, Status::invalid);
  const std::string& message = backend.error().message;
  EXPECT_NE(message.find("config of backend 'tpm2' is not valid JSON"), std::string::npos) << message;
  EXPECT_NE(message.find("line 1, column 10"), std::string::npos) << message;
  EXPECT_EQ(message.find("json.exception"), std::string::npos) << message;
}

TEST(PluginLoader, ConfigMustBeAnObject) {
  auto backend = RotBackend::load("tpm2", "[\"device:/dev/tpmrm0\"]", plugin_dir());
  ASSERT_FALSE(backend);
  EXPECT_NE(backend.error().message.find("must be a JSON object, got array"), std::string::npos)
      << backend.error().message;
}

TEST(PluginLoader, PluginRejectsUnknownConfigKey) {
  auto backend = RotBackend::load("tpm2", R"({"tctl": "swtpm:path=/nonexistent"})", plugin_dir());
  ASSERT_FALSE(backend);
  EXPECT_EQ(backend.error().status, Status::invalid);
  EXPECT_NE(backend.error().message.find("unknown key 'tctl'"), std::string::npos) << backend.error().message;
}

TEST(PluginLoader, PluginRejectsWrongValueType) {
  auto backend = RotBackend::load("tpm2", R"({"tcti": 2321})", plugin_dir());
  ASSERT_FALSE(backend);
  EXPECT_EQ(backend.error().status, Status::invalid);
  EXPECT_NE(backend.error().message.find("tcti: expected a TCTI string"), std::string::npos) << backend.error().message;
}

TEST(PluginLoader, NameWithPathRejected) {
  auto backend = RotBackend::load("../tpm2", "{}", plugin_dir());
  ASSERT_FALSE(backend);
  EXPECT_NE(backend.error().message.find("invalid backend name '../tpm2'"), std::string::npos)
      << backend.error().message;
}

TEST(PluginLoader, ListsBuiltPlugins) {
  std::vector<std::string> names = rot::list_plugins(plugin_dir());
  EXPECT_NE(std::find(names.begin(), names.end(), "tpm2"), names.end());
  std::vector<std::string> malformed = rot::list_plugins(test_plugin_dir());
  EXPECT_EQ(malformed, (std::vector<std::string>{"misnamed", "noentry", "shorttable", "wrongabi"}));
}

TEST(PluginLoader, DefaultDirectoryFollowsEnvironment) {
  const char* saved = std::getenv("IMAROTD_PLUGIN_DIR");
  std::string saved_value = saved != nullptr ? saved : "";

  ::setenv("IMAROTD_PLUGIN_DIR", "/opt/imarot-plugins", 1);
  EXPECT_EQ(rot::default_plugin_dir(), "/opt/imarot-plugins");
  ::unsetenv("IMAROTD_PLUGIN_DIR");
  EXPECT_TRUE(rot::default_plugin_dir().ends_with("/imarotd/rot")) << rot::default_plugin_dir();

  if (saved != nullptr) ::setenv("IMAROTD_PLUGIN_DIR", saved_value.c_str(), 1);
}

TEST(RotConfig, ParsesBackends) {
  auto config = rot::parse_rot_config(
      R"({"plugin_dir": "/usr/lib/imarotd/rot", "backends": [
            {"backend": "tpm2", "register": 11, "config": {"tcti": "device:/dev/tpmrm0"}},
            {"backend": "tdx", "id": "rtmr"}]})",
      "imarotd.json");
  ASSERT_TRUE(config) << config.error().message;
  EXPECT_EQ(config->plugin_dir, "/usr/lib/imarotd/rot");
  ASSERT_EQ(config->backends.size(), 2u);
  EXPECT_EQ(config->backends[0].backend, "tpm2");
  EXPECT_EQ(config->backends[0].id, "tpm2");
  EXPECT_EQ(config->backends[0].register_index, 11u);
  EXPECT_EQ(nlohmann::json::parse(config->backends[0].config_json), nlohmann::json({{"tcti", "device:/dev/tpmrm0"}}));
  EXPECT_EQ(config->backends[1].id, "rtmr");
  EXPECT_FALSE(config->backends[1].register_index);
  EXPECT_EQ(config->backends[1].config_json, "{}");
}

TEST(RotConfig, BareArrayAccepted) {
  auto config = rot::parse_rot_config(R"([{"backend": "tpm2"}])", "inline");
  ASSERT_TRUE(config) << config.error().message;
  ASSERT_EQ(config->backends.size(), 1u);
  EXPECT_FALSE(config->plugin_dir);
}

TEST(RotConfig, ErrorsNameTheKey) {
  struct Case {
    const char* json;
    const char* expected;
  };
  const Case cases[] = {
      {R"({"backends": [{"backend": "tpm2", "register": "ten"}]})", "backends[0].register: expected a register number"},
      {R"({"backends": [{"backend": "tpm2", "register": -1}]})", "backends[0].register: expected a register number"},
      {R"({"backends": [{"register": 10}]})", "backends[0]: missing \"backend\""},
      {R"({"backends": [{"backend": "tpm2", "pcr": 10}]})", "backends[0]: unknown key 'pcr'"},
      {R"({"backends": [{"backend": "tpm2"}, {"backend": "tpm2"}]})", "id 'tpm2' is used twice"},
      {R"({"backends": [{"backend": "tpm2", "config": "tcti"}]})", "backends[0].config: expected an object"},
      {R"({"backend": "tpm2"})", "unknown key 'backend'"},
      {R"({"plugin_dir": "/x"})", "missing \"backends\""},
      {R"({"backends": {"backend": "tpm2"}})", "backends: expected an array"},
      {R"({"backends": [)", "invalid JSON"},
  };
  for (const Case& c : cases) {
    auto config = rot::parse_rot_config(c.json, "imarotd.json");
    ASSERT_FALSE(config) << c.json;
    EXPECT_NE(config.error().message.find(c.expected), std::string::npos) << config.error().message;
    EXPECT_TRUE(config.error().message.starts_with("imarotd.json: ")) << config.error().message;
  }
}

}  // namespace
}  // namespace imarot::test
