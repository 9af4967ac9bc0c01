// Classification of TSS2 response codes into RoT plugin statuses.
#pragma once

#include <tss2/tss2_common.h>

#include <string>

#include "imarot/rot.h"

namespace imarot::tpm2 {

struct RcClass {
  rot::Status status = rot::Status::failed;
  // The failure is in the connection or the software stack, not a TPM
  // response: the ESAPI context has to be rebuilt, and a command that was
  // being sent may or may not have reached the TPM.
  bool transport = false;
};

// Classifies `rc` as returned by an Esys_* call or the TCTI loader.
// TPM_RC_RETRY, YIELDED, TESTING and other TPM warnings that clear by
// themselves are Status::retry. TPM_RC_LOCALITY is read_only, and a
// parameter, handle or session error is invalid. Connection failures are
// unavailable with `transport` set.
RcClass classify_rc(TSS2_RC rc);

// Tss2_RC_Decode's text with the code in hex, for example
// "tpm:warn(2.0): bad locality (TSS2_RC 0x907)".
std::string describe_rc(TSS2_RC rc);

}  // namespace imarot::tpm2
