// Writes tokenizer.json and tokenizer_config.json next to a generated checkpoint, so every
// checkpoint moeserve-make-model produces can be served with text.
//
// The tokenizer is the byte-level BPE trained on the King James Bible with DeepSeek-V3's
// pre-tokenizer (tools/oracle/train_tokenizer.py; tests/data/tokenizers/kjv-bpe-8k), embedded
// in the binary. For models with a smaller vocabulary it is cut down to vocab_size ids: BPE
// merges are ordered and every token is built before any merge uses it, so keeping the
// first merges (and the tokens they create) yields a valid, smaller BPE.
#pragma once

#include <string>

#include "absl/status/status.h"
#include "engine/model/model_config.h"

namespace moeserve::tools {

// Special tokens of the embedded tokenizer (DeepSeek-V3's spellings and ids).
inline constexpr int64_t kTokenizerBosId = 0;
inline constexpr int64_t kTokenizerEosId = 1;
// 3 special tokens + 256 byte symbols: the smallest vocabulary a byte-level BPE can have.
inline constexpr int64_t kMinTokenizerVocab = 259;

absl::Status WriteTokenizerFiles(int64_t vocab_size, const std::string& out_dir);

}  // namespace moeserve::tools
