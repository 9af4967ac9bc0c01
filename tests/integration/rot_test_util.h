// Shared pieces of the root-of-trust integration tests: measurement list
// entries, tpm2-tools runs against a test swtpm, plugin directories.
#pragma once

#include <map>
#include <set>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "imarot/measurement_list.h"
#include "imarot/replay.h"
#include "imarot/rot.h"
#include "swtpm.h"

namespace imarot::test {

// The tpm2 plugin and the rest of the build tree's plugins.
inline std::string plugin_dir() { return IMAROT_PLUGIN_BUILD_DIR; }
// Deliberately malformed plugins built for the loader tests.
inline std::string test_plugin_dir() { return IMAROT_TEST_PLUGIN_DIR; }

// `count` entries for register `pcr`, numbered from `first`: ima-ng entries
// with varied names, an ima-sig entry with a signature every seventh, and a
// violation every fifth.
std::vector<Entry> make_entries(uint32_t pcr, size_t count, size_t first = 0);

// The first entry of a kernel list: ima-ng "boot_aggregate" with `aggregate`.
Entry boot_aggregate_entry(uint32_t pcr, const rot::BootAggregate& aggregate);

// A swtpm shared by the tests of one suite: started in SetUpTestSuite,
// stopped in TearDownTestSuite. When it could not start, `error` explains
// why, and the tests fail with that message.
struct SuiteSwtpm {
  SwtpmTools tools;
  std::unique_ptr<TempDir> dir;
  std::unique_ptr<Swtpm> swtpm;
  std::string error;

  void start(SwtpmOptions options = {});
  void stop();
};

// The tpm2 backend's config for a swtpm.
std::string tpm2_config(const Swtpm& swtpm);

// Output of tpm2_pcrread, parsed.
struct PcrDump {
  RegisterValues values;
  std::vector<HashAlgo> banks;        // in output order
  std::set<HashAlgo> empty_banks;     // banks printed without values
};

// Parses both tpm2_pcrread layouts: "  sha1:" / "    10: 0xHEX" (tpm2-tools
// 5) and "sha1 :" / "  10 : HEX" (older manual pages).
Result<PcrDump> parse_pcrread(const std::string& text);

// Runs `tpm2_pcrread -T TCTI SELECTION` and parses its output.
Result<PcrDump> pcrread(const SwtpmTools& tools, const std::string& tcti, const std::string& selection);

// Runs `tpm2_pcrextend -T TCTI PCR:BANK=HEX[,BANK=HEX...]`.
Result<void> pcrextend(const SwtpmTools& tools, const std::string& tcti, uint32_t pcr,
                       const std::vector<std::pair<HashAlgo, Digest>>& digests);

// "sha1:10+sha256:10" for the banks and registers given.
std::string pcr_selection(const std::vector<HashAlgo>& banks, const std::vector<uint32_t>& pcrs);

}  // namespace imarot::test
