#include "server/http/reasoning_parser.h"

#include <algorithm>

namespace moeserve::server {
namespace {

constexpr std::string_view kStart = "<think>";
constexpr std::string_view kEnd = "</think>";

// Length of the longest suffix of `text` that is a proper prefix of `tag`.
size_t PartialTagSuffix(std::string_view text, std::string_view tag) {
  for (size_t n = std::min(text.size(), tag.size() - 1); n > 0; --n) {
    if (text.substr(text.size() - n) == tag.substr(0, n)) return n;
  }
  return 0;
}

}  // namespace

ReasoningParser::Delta ReasoningParser::Feed(std::string_view text) {
  Delta delta;
  std::string buffer = std::move(held_);
  held_.clear();
  buffer.append(text.data(), text.size());
  if (!in_reasoning_) {
    delta.content = std::move(buffer);
    return delta;
  }
  if (!start_checked_) {
    // Leading whitespace is kept as reasoning, as vLLM does; only an exact leading tag goes.
    if (buffer.size() < kStart.size() && kStart.substr(0, buffer.size()) == buffer) {
      held_ = std::move(buffer);
      return delta;
    }
    start_checked_ = true;
    if (std::string_view(buffer).substr(0, kStart.size()) == kStart) buffer.erase(0, kStart.size());
  }
  const size_t end = buffer.find(kEnd);
  if (end != std::string::npos) {
    in_reasoning_ = false;
    delta.reasoning = buffer.substr(0, end);
    delta.content = buffer.substr(end + kEnd.size());
    return delta;
  }
  const size_t partial = PartialTagSuffix(buffer, kEnd);
  held_ = buffer.substr(buffer.size() - partial);
  buffer.resize(buffer.size() - partial);
  delta.reasoning = std::move(buffer);
  return delta;
}

ReasoningParser::Delta ReasoningParser::Finish() {
  Delta delta;
  if (in_reasoning_) {
    delta.reasoning = std::move(held_);
  } else {
    delta.content = std::move(held_);
  }
  held_.clear();
  return delta;
}

}  // namespace moeserve::server
