// UTF-8 validity, incremental decoding and lossy repair.
//
// Byte-level BPE tokens are arbitrary byte strings: one token may end in the middle of a
// character. The incremental detokenizer feeds token bytes to Utf8StreamDecoder, which emits
// only complete characters and replaces invalid sequences with U+FFFD exactly as Rust's
// String::from_utf8_lossy does (one replacement per maximal invalid subpart), so streamed
// text equals HF tokenizers' decode of the whole sequence.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace moeserve::engine {

inline constexpr std::string_view kUtf8Replacement = "\xEF\xBF\xBD";  // U+FFFD

// Offset of the first byte that makes `text` invalid UTF-8, or text.size() when it is valid.
size_t FindInvalidUtf8(std::string_view text);

// from_utf8_lossy: valid characters copied, each maximal invalid subpart → U+FFFD.
std::string LossyUtf8(std::string_view bytes);

class Utf8StreamDecoder {
 public:
  // Appends bytes; returns the text that is now final (complete characters and replacements),
  // holding back a trailing sequence that may still become a valid character.
  std::string Push(std::string_view bytes);
  // Ends the stream: a held incomplete sequence becomes one U+FFFD.
  std::string Finish();
  bool has_pending() const { return !pending_.empty(); }

 private:
  std::string pending_;  // at most 3 bytes: a valid but incomplete prefix of a character
};

}  // namespace moeserve::engine
