// Extend throughput against one swtpm with sha1 and sha256 banks on a unix
// socket, measured three ways. The tpm2 backend goes through
// RotBackend::extend, which computes both template digests of each entry and
// sends one TPM2_PCR_Extend. The bare ESAPI loop calls Esys_PCR_Extend with
// fixed digests. The shell loop runs tpm2_pcrextend once per extend.
//
// Usage: bench_rot_extend [SECONDS_PER_RUN] [SHELL_ITERATIONS]
// (defaults 2 and 200). The backend and the ESAPI loop alternate for three
// rounds each and the best round counts, so a burst of load from other
// processes on the machine weighs less. Prints extends per second and the
// ratios against the targets of 0.8 times bare ESAPI and 50 times the shell
// loop. Runs for about 6 * SECONDS_PER_RUN plus the shell loop.
#include <tss2/tss2_esys.h>
#include <tss2/tss2_tctildr.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "bench_util.h"
#include "imarot/rot.h"
#include "rot_test_util.h"

namespace {

using imarot::HashAlgo;

constexpr uint32_t kPcr = 16;

double backend_rate(imarot::rot::RotBackend& backend, const std::vector<imarot::Entry>& entries, double seconds) {
  size_t count = 0;
  const double start = bench::now_seconds();
  double elapsed = 0;
  while (elapsed < seconds) {
    for (int i = 0; i < 64; ++i, ++count) {
      auto extended = backend.extend(kPcr, entries[count % entries.size()]);
      if (!extended) {
        std::fprintf(stderr, "bench_rot_extend: backend extend failed: %s\n", extended.error().message.c_str());
        std::exit(1);
      }
    }
    elapsed = bench::now_seconds() - start;
  }
  return static_cast<double>(count) / elapsed;
}

double esapi_rate(ESYS_CONTEXT* esys, double seconds) {
  TPML_DIGEST_VALUES values{};
  values.count = 2;
  values.digests[0].hashAlg = TPM2_ALG_SHA1;
  values.digests[1].hashAlg = TPM2_ALG_SHA256;
  std::fill_n(values.digests[0].digest.sha1, 20, uint8_t{0x11});
  std::fill_n(values.digests[1].digest.sha256, 32, uint8_t{0x22});
  size_t count = 0;
  const double start = bench::now_seconds();
  double elapsed = 0;
  while (elapsed < seconds) {
    for (int i = 0; i < 64; ++i, ++count) {
      TSS2_RC rc = Esys_PCR_Extend(esys, ESYS_TR_PCR16, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE, &values);
      if (rc != TSS2_RC_SUCCESS) {
        std::fprintf(stderr, "bench_rot_extend: Esys_PCR_Extend failed: 0x%x\n", rc);
        std::exit(1);
      }
    }
    elapsed = bench::now_seconds() - start;
  }
  return static_cast<double>(count) / elapsed;
}

}  // namespace

int main(int argc, char** argv) {
  const double seconds = argc > 1 ? std::atof(argv[1]) : 2.0;
  const int shell_iterations = argc > 2 ? std::atoi(argv[2]) : 200;
  if (seconds <= 0 || shell_iterations <= 0) {
    std::fprintf(stderr, "usage: bench_rot_extend [SECONDS_PER_RUN] [SHELL_ITERATIONS]\n");
    return 2;
  }
  ::setenv("TSS2_LOG", "all+none", 0);

  auto tools = imarot::test::SwtpmTools::find();
  if (!tools) {
    std::fprintf(stderr, "bench_rot_extend: %s\n", tools.error().message.c_str());
    return 1;
  }
  imarot::test::TempDir dir;
  auto swtpm = imarot::test::Swtpm::start(*tools, dir.path(), imarot::test::SwtpmOptions{.pcr_banks = "sha1,sha256"});
  if (!swtpm) {
    std::fprintf(stderr, "bench_rot_extend: %s\n", swtpm.error().message.c_str());
    return 1;
  }
  const std::string tcti = (*swtpm)->tcti();

  auto backend = imarot::rot::RotBackend::load("tpm2", imarot::test::tpm2_config(**swtpm),
                                                imarot::test::plugin_dir());
  if (!backend) {
    std::fprintf(stderr, "bench_rot_extend: %s\n", backend.error().message.c_str());
    return 1;
  }
  if ((*backend)->description().bank_algos() != std::vector<HashAlgo>{HashAlgo::sha1, HashAlgo::sha256}) {
    std::fprintf(stderr, "bench_rot_extend: swtpm did not come up with exactly the sha1 and sha256 banks\n");
    return 1;
  }

  TSS2_TCTI_CONTEXT* tcti_context = nullptr;
  ESYS_CONTEXT* esys = nullptr;
  if (Tss2_TctiLdr_Initialize(tcti.c_str(), &tcti_context) != TSS2_RC_SUCCESS ||
      Esys_Initialize(&esys, tcti_context, nullptr) != TSS2_RC_SUCCESS) {
    std::fprintf(stderr, "bench_rot_extend: cannot open ESAPI on %s\n", tcti.c_str());
    return 1;
  }

  const std::vector<imarot::Entry> entries = imarot::test::make_entries(kPcr, 4096);
  // Warm-up: the first commands pay for connection set-up and page faults.
  backend_rate(**backend, entries, 0.2);
  esapi_rate(esys, 0.2);

  double best_backend = 0;
  double best_esapi = 0;
  for (int round = 0; round < 3; ++round) {
    best_backend = std::max(best_backend, backend_rate(**backend, entries, seconds));
    best_esapi = std::max(best_esapi, esapi_rate(esys, seconds));
  }
  Esys_Finalize(&esys);
  Tss2_TctiLdr_Finalize(&tcti_context);
  backend->reset();

  // One tpm2_pcrextend process per extend, as a shell script would do it.
  std::string script = fmt::format(
      "i=0; while [ $i -lt {} ]; do {} -T '{}' {}:sha1={},sha256={} || exit 1; i=$((i+1)); done", shell_iterations,
      tools->tpm2_pcrextend, tcti, kPcr, std::string(40, 'a'), std::string(64, 'b'));
  double shell_seconds = bench::time_command({"/bin/sh", "-c", script});
  if (shell_seconds <= 0) {
    std::fprintf(stderr, "bench_rot_extend: the tpm2_pcrextend loop failed\n");
    return 1;
  }
  double shell = shell_iterations / shell_seconds;

  std::printf("swtpm over a unix socket, PCR %u, banks sha1+sha256, best of 3 runs of %.1f s\n", kPcr, seconds);
  std::printf("  %-52s %10.0f extends/s\n", "tpm2 backend (RotBackend::extend, digests included)", best_backend);
  std::printf("  %-52s %10.0f extends/s\n", "bare ESAPI loop (Esys_PCR_Extend)", best_esapi);
  std::printf("  %-52s %10.0f extends/s\n", fmt::format("shell loop of tpm2_pcrextend ({} runs)", shell_iterations).c_str(),
              shell);
  double versus_esapi = best_backend / best_esapi;
  double versus_shell = best_backend / shell;
  std::printf("  backend / bare ESAPI: %.2f (target >= 0.80: %s)\n", versus_esapi, versus_esapi >= 0.8 ? "met" : "MISSED");
  std::printf("  backend / shell loop: %.0fx (target >= 50x: %s)\n", versus_shell, versus_shell >= 50 ? "met" : "MISSED");
  return 0;
}
