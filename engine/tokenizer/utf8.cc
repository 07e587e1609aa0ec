#include "engine/tokenizer/utf8.h"

#include <cstdint>

namespace moeserve::engine {
namespace {

enum class Step { kComplete, kIncomplete, kInvalid };

// Examines the character starting at text[0] (Unicode Table 3-7 of well-formed sequences).
// kComplete: `length` bytes form a character. kIncomplete: all of text is a valid prefix.
// kInvalid: text[0, length) is the maximal invalid subpart (length >= 1).
Step Examine(std::string_view text, size_t& length) {
  const auto byte = [&](size_t i) { return static_cast<uint8_t>(text[i]); };
  const uint8_t b0 = byte(0);
  if (b0 < 0x80) {
    length = 1;
    return Step::kComplete;
  }
  size_t need;
  uint8_t lo = 0x80, hi = 0xBF;  // allowed range of the second byte
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    need = 2;
  } else if (b0 >= 0xE0 && b0 <= 0xEF) {
    need = 3;
    if (b0 == 0xE0) lo = 0xA0;
    if (b0 == 0xED) hi = 0x9F;  // no surrogates
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    need = 4;
    if (b0 == 0xF0) lo = 0x90;
    if (b0 == 0xF4) hi = 0x8F;  // <= U+10FFFF
  } else {
    length = 1;
    return Step::kInvalid;
  }
  for (size_t i = 1; i < need; ++i) {
    if (i >= text.size()) {
      length = text.size();
      return Step::kIncomplete;
    }
    const uint8_t b = byte(i);
    const bool ok = i == 1 ? (b >= lo && b <= hi) : (b >= 0x80 && b <= 0xBF);
    if (!ok) {
      length = i;
      return Step::kInvalid;
    }
  }
  length = need;
  return Step::kComplete;
}

// Decodes as much of `text` as is final; returns the number of bytes consumed.
size_t DecodeFinal(std::string_view text, std::string& out) {
  size_t pos = 0;
  while (pos < text.size()) {
    size_t length = 0;
    switch (Examine(text.substr(pos), length)) {
      case Step::kComplete:
        out.append(text.substr(pos, length));
        break;
      case Step::kInvalid:
        out.append(kUtf8Replacement);
        break;
      case Step::kIncomplete:
        return pos;
    }
    pos += length;
  }
  return pos;
}

}  // namespace

size_t FindInvalidUtf8(std::string_view text) {
  size_t pos = 0;
  while (pos < text.size()) {
    size_t length = 0;
    if (Examine(text.substr(pos), length) != Step::kComplete) return pos;
    pos += length;
  }
  return pos;
}

std::string LossyUtf8(std::string_view bytes) {
  Utf8StreamDecoder decoder;
  std::string out = decoder.Push(bytes);
  out += decoder.Finish();
  return out;
}

std::string Utf8StreamDecoder::Push(std::string_view bytes) {
  std::string out;
  if (pending_.empty()) {
    const size_t consumed = DecodeFinal(bytes, out);
    pending_.assign(bytes.substr(consumed));
    return out;
  }
  pending_.append(bytes);
  const size_t consumed = DecodeFinal(pending_, out);
  pending_.erase(0, consumed);
  return out;
}

std::string Utf8StreamDecoder::Finish() {
  if (pending_.empty()) return "";
  pending_.clear();
  return std::string(kUtf8Replacement);
}

}  // namespace moeserve::engine
