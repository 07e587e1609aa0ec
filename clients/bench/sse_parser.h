// An incremental parser of a Server-Sent Events stream (the WHATWG "text/event-stream" format
// that OpenAI-compatible servers stream completions in).
//
// Bytes go in as they arrive from the network, split anywhere (inside a line, between CR and
// LF); whole events come out. Lines end in LF, CRLF or CR; a blank line ends an event; `data:`
// lines accumulate (joined with "\n"); `event:` names the event; lines starting with ':' are
// comments (keep-alives) and are skipped, as are `id:` and `retry:`. One extension: a line
// `error: {...}` (llama.cpp's server streams its errors that way, outside the standard fields)
// becomes an event named "error" carrying the value, so the caller sees the failure.
//
// Not thread-safe; one parser per stream.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace moeserve::bench {

struct SseEvent {
  std::string event;  // the `event:` field; empty for the default "message"
  std::string data;   // the `data:` lines joined with '\n'
};

class SseParser {
 public:
  // Parses `bytes` and appends every event they complete to `events`.
  void Feed(std::string_view bytes, std::vector<SseEvent>& events);

  // End of the stream: an event whose closing blank line never came is dispatched too
  // (lenient: some servers end the body right after the last `data:` line).
  void Finish(std::vector<SseEvent>& events);

 private:
  void ProcessLine(std::string_view line, std::vector<SseEvent>& events);
  void Dispatch(std::vector<SseEvent>& events);

  std::string line_;              // the current, unfinished line
  bool skip_lf_ = false;          // the last byte was a CR: a following LF belongs to it
  bool have_data_ = false;        // a `data:` line has been seen in the current event
  bool have_error_line_ = false;  // an `error:` line has been seen in the current event
  SseEvent pending_;
};

}  // namespace moeserve::bench
