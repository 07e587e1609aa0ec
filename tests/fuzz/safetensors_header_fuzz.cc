// Fuzzes the safetensors header parser with whole files: 8-byte little-endian header length,
// header JSON, data. A header the parser accepts must describe tensors whose byte ranges lie in
// the data and do not overlap, with byte sizes matching their shapes.
#include <cstring>
#include <string_view>

#include "engine/io/safetensors.h"
#include "tests/fuzz/fuzz_target.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace moeserve::engine;
  if (size < 8) return 0;
  uint64_t header_length = 0;
  std::memcpy(&header_length, data, 8);
  if (header_length > size - 8) header_length = size - 8;
  const std::string_view header(reinterpret_cast<const char*>(data) + 8, header_length);
  const uint64_t data_size = size - 8 - header_length;
  absl::StatusOr<SafetensorsHeader> parsed = ParseSafetensorsHeader(header, data_size, "fuzz");
  if (!parsed.ok()) {
    FUZZ_CHECK(!parsed.status().message().empty());
    return 0;
  }
  uint64_t previous_end = 0;
  for (const TensorInfo& tensor : parsed->tensors) {
    FUZZ_CHECK(tensor.data_begin <= tensor.data_end);
    FUZZ_CHECK(tensor.data_end <= data_size);
    FUZZ_CHECK(tensor.data_begin >= previous_end || tensor.num_bytes() == 0);
    FUZZ_CHECK(static_cast<uint64_t>(tensor.num_elements()) * DTypeSize(tensor.dtype) ==
               tensor.num_bytes());
    if (tensor.num_bytes() > 0) previous_end = tensor.data_end;
  }
  return 0;
}
