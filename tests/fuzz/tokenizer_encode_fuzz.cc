// Fuzzes encoding with a real byte-level BPE tokenizer (the KJV one the tests use). Valid UTF-8
// must encode, every id must be in the vocabulary, and decoding without special tokens must give
// back exactly the input bytes; invalid UTF-8 must be refused, not encoded.
#include <memory>
#include <string>
#include <string_view>

#include "engine/tokenizer/tokenizer.h"
#include "engine/tokenizer/utf8.h"
#include "tests/fuzz/fuzz_target.h"
#include "tests/fuzz/kjv_tokenizer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const moeserve::engine::Tokenizer& tokenizer = KjvTokenizer();
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  absl::StatusOr<std::vector<int32_t>> ids = tokenizer.Encode(text, false);
  if (moeserve::engine::FindInvalidUtf8(text) != text.size()) {
    FUZZ_CHECK(!ids.ok());
    return 0;
  }
  FUZZ_CHECK(ids.ok());
  for (int32_t id : *ids) FUZZ_CHECK(id >= 0 && id < tokenizer.vocab_size());
  FUZZ_CHECK(tokenizer.Decode(*ids, false) == text);
  return 0;
}
