// Fuzzes config.json parsing. An accepted config must survive a round trip through
// ModelConfigToJson unchanged: what we print we must be able to read back as the same model.
#include <string_view>

#include "engine/model/model_config.h"
#include "tests/fuzz/fuzz_target.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace moeserve::engine;
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  absl::StatusOr<ModelConfig> config = ParseModelConfig(text, "fuzz/config.json");
  if (!config.ok()) {
    FUZZ_CHECK(!config.status().message().empty());
    return 0;
  }
  const std::string printed = ModelConfigToJson(*config);
  absl::StatusOr<ModelConfig> again = ParseModelConfig(printed, "round-trip");
  FUZZ_CHECK(again.ok());
  FUZZ_CHECK(ModelConfigToJson(*again) == printed);
  return 0;
}
