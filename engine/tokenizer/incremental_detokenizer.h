// Token ids → text deltas while a sequence is being generated.
//
// A byte-level BPE token may end inside a multi-byte character; the detokenizer holds such
// bytes back until the character completes, so every delta is valid UTF-8 and the deltas
// concatenated (plus Finish()) equal decoding the whole sequence at once, invalid bytes
// included (U+FFFD as in from_utf8_lossy). One per sequence, on the engine thread.
#pragma once

#include <cstdint>
#include <string>

#include "engine/tokenizer/tokenizer.h"
#include "engine/tokenizer/utf8.h"

namespace moeserve::engine {

class IncrementalDetokenizer {
 public:
  // `tokenizer` must outlive this object.
  IncrementalDetokenizer(const Tokenizer& tokenizer, bool skip_special_tokens);

  // The text that token_id completes (possibly empty).
  std::string Append(int32_t token_id);
  // Ends the sequence: bytes of an unfinished character become U+FFFD.
  std::string Finish();

 private:
  const Tokenizer& tokenizer_;
  bool skip_special_tokens_;
  Utf8StreamDecoder decoder_;
};

}  // namespace moeserve::engine
