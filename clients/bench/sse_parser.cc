#include "clients/bench/sse_parser.h"

#include <utility>

namespace moeserve::bench {

void SseParser::Feed(std::string_view bytes, std::vector<SseEvent>& events) {
  for (const char c : bytes) {
    if (skip_lf_) {
      skip_lf_ = false;
      if (c == '\n') continue;
    }
    if (c == '\r' || c == '\n') {
      skip_lf_ = c == '\r';
      ProcessLine(line_, events);
      line_.clear();
    } else {
      line_.push_back(c);
    }
  }
}

void SseParser::Finish(std::vector<SseEvent>& events) {
  if (!line_.empty()) ProcessLine(line_, events);
  line_.clear();
  Dispatch(events);
}

void SseParser::ProcessLine(std::string_view line, std::vector<SseEvent>& events) {
  if (line.empty()) {
    Dispatch(events);
    return;
  }
  if (line.front() == ':') return;  // a comment, e.g. ": keep-alive"
  std::string_view field = line;
  std::string_view value;
  if (const size_t colon = line.find(':'); colon != std::string_view::npos) {
    field = line.substr(0, colon);
    value = line.substr(colon + 1);
    if (!value.empty() && value.front() == ' ') value.remove_prefix(1);  // one space, per spec
  }
  if (field == "data") {
    if (have_data_) pending_.data.push_back('\n');
    pending_.data.append(value);
    have_data_ = true;
  } else if (field == "event") {
    pending_.event.assign(value);
  } else if (field == "error") {
    if (have_data_) pending_.data.push_back('\n');
    pending_.data.append(value);
    have_data_ = true;
    have_error_line_ = true;
  }
  // id, retry and unknown fields are ignored, as the standard says.
}

void SseParser::Dispatch(std::vector<SseEvent>& events) {
  // The standard drops an event without data (e.g. a lone `event:` line).
  if (have_data_) {
    if (have_error_line_) pending_.event = "error";
    events.push_back(std::move(pending_));
  }
  pending_ = SseEvent{};
  have_data_ = false;
  have_error_line_ = false;
}

}  // namespace moeserve::bench
