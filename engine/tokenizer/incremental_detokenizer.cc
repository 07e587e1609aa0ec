#include "engine/tokenizer/incremental_detokenizer.h"

namespace moeserve::engine {

IncrementalDetokenizer::IncrementalDetokenizer(const Tokenizer& tokenizer, bool skip_special_tokens)
    : tokenizer_(tokenizer), skip_special_tokens_(skip_special_tokens) {}

std::string IncrementalDetokenizer::Append(int32_t token_id) {
  if (skip_special_tokens_ && tokenizer_.IsSpecial(token_id)) return "";
  return decoder_.Push(tokenizer_.TokenBytes(token_id));
}

std::string IncrementalDetokenizer::Finish() { return decoder_.Finish(); }

}  // namespace moeserve::engine
