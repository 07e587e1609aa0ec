// The KJV byte-level BPE tokenizer the tests use (tests/data/tokenizers/kjv-bpe-8k), loaded once
// per fuzz process: targets that exercise encoding or request validation need a real tokenizer
// but should not pay for loading it on every input.
#pragma once

#include <string>

#include "engine/tokenizer/tokenizer.h"
#include "tests/fuzz/fuzz_target.h"

inline const moeserve::engine::Tokenizer& KjvTokenizer() {
  static const auto* tokenizer = [] {
    auto loaded = moeserve::engine::Tokenizer::Load(std::string(MOESERVE_SOURCE_DIR) +
                                                    "/tests/data/tokenizers/kjv-bpe-8k");
    FUZZ_CHECK(loaded.ok());
    return loaded->release();
  }();
  return *tokenizer;
}
