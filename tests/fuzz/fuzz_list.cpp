// Fuzzes the binary list parser. Any input either parses or yields an error
// with an offset inside the input. A list that parses serializes back to the
// same bytes and prints as ascii without fault.
#include <cstdint>
#include <cstdlib>

#include "imarot/measurement_list.h"
#include "imarot/replay.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  imarot::ByteView input(data, size);
  imarot::ParsedList list = imarot::parse_binary_list(input);

  if (list.error) {
    if (list.error->offset >= size) std::abort();
    if (list.error->entry_index != list.entries.size()) std::abort();
    (void)imarot::format_parse_error(*list.error);
    return 0;
  }
  imarot::Bytes again = imarot::serialize_binary(list.entries);
  if (again.size() != size || !std::equal(again.begin(), again.end(), data)) std::abort();
  (void)imarot::serialize_ascii(list.entries);

  imarot::RegisterValues reference;
  reference.emplace(imarot::RegisterId{10, imarot::HashAlgo::sha256}, imarot::Digest::zeros(32));
  (void)imarot::verify_list(list, reference, {});
  return 0;
}
