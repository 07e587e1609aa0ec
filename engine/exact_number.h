// The shortest text that reads back as exactly the given number ("1.0000001", where StrCat's
// six significant digits print "1"): a message about an out-of-range value must show the value
// that was out of range (issue 21, row 8). Used by the loaders, request validation and flag
// checks.
#pragma once

#include <charconv>
#include <string>

namespace moeserve::engine {

template <typename Number>
std::string ExactNumber(Number value) {
  char text[64];
  const std::to_chars_result end = std::to_chars(text, text + sizeof(text), value);
  return std::string(text, end.ptr);
}

}  // namespace moeserve::engine
