#include "tpm2_rc.h"

#include <tss2/tss2_rc.h>
#include <tss2/tss2_tpm2_types.h>

#include <fmt/format.h>

namespace imarot::tpm2 {

using rot::Status;

namespace {

RcClass classify_tpm(TSS2_RC code) {
  // Format-1 codes point at a handle, session or parameter of the command:
  // the request itself is wrong.
  if ((code & TPM2_RC_FMT1) != 0) return {Status::invalid, false};
  switch (code) {
    case TPM2_RC_RETRY:
    case TPM2_RC_YIELDED:
    case TPM2_RC_TESTING:
    case TPM2_RC_CANCELED:
    case TPM2_RC_NV_RATE:
    case TPM2_RC_NV_UNAVAILABLE:
    case TPM2_RC_MEMORY:
    case TPM2_RC_OBJECT_MEMORY:
    case TPM2_RC_SESSION_MEMORY:
    case TPM2_RC_CONTEXT_GAP:
      return {Status::retry, false};
    case TPM2_RC_LOCALITY:
      return {Status::read_only, false};
    case TPM2_RC_INITIALIZE:
      // Not started yet (no TPM2_Startup): firmware or the emulator's
      // start-up flags have to do that, so it may change later.
      return {Status::unavailable, false};
    default:
      return {Status::failed, false};
  }
}

}  // namespace

RcClass classify_rc(TSS2_RC rc) {
  const TSS2_RC layer = rc & TSS2_RC_LAYER_MASK;
  const TSS2_RC code = rc & ~TSS2_RC_LAYER_MASK;
  if (layer == TSS2_TPM_RC_LAYER || layer == TSS2_RESMGR_TPM_RC_LAYER) return classify_tpm(code);

  if (layer == TSS2_TCTI_RC_LAYER || layer == TSS2_ESAPI_RC_LAYER || layer == TSS2_SYS_RC_LAYER) {
    switch (code) {
      case TSS2_BASE_RC_TRY_AGAIN:
        return {Status::retry, false};
      case TSS2_BASE_RC_NOT_PERMITTED:
        return {Status::invalid, false};
      case TSS2_BASE_RC_IO_ERROR:
      case TSS2_BASE_RC_NO_CONNECTION:
        return {Status::unavailable, true};
      default:
        // Anything else leaves the ESAPI context in an unknown state.
        return {Status::failed, true};
    }
  }
  // A resource manager (tpm2-abrmd) that failed, or a layer this code does
  // not know: the connection is rebuilt.
  return {Status::unavailable, true};
}

std::string describe_rc(TSS2_RC rc) { return fmt::format("{} (TSS2_RC 0x{:x})", Tss2_RC_Decode(rc), rc); }

}  // namespace imarot::tpm2
