// Reads one streamed OpenAI-compatible response (/v1/completions or /v1/chat/completions with
// "stream": true) into a RequestRecord, with the metric definitions of the gRPC path and of
// `vllm bench serve`'s openai backends.
//
// HTTP 200: the body is Server-Sent Events (sse_parser.h). Each `data: {json}` chunk is
// interpreted: a chunk whose choices[0].text (completions) or choices[0].delta.content /
// .reasoning_content / .reasoning (chat) is non-empty is a content chunk: the first starts the
// TTFT clock's end, each later one adds an ITL gap; choices[0].finish_reason is kept; a `usage`
// object gives the token counts (stream_options.include_usage). `data: [DONE]` ends the
// stream and its arrival is the end of E2EL. An event carrying {"error": {...}} (or the
// `event: error` / llama.cpp `error:` form) fails the request with the server's message;
// data that is not JSON fails it as PROTOCOL_ERROR. Any other status: the body is the error,
// read as OpenAI's {"error": {"message", "type", "code"}} (or FastAPI's {"detail": ..}).
//
// Output tokens are usage.completion_tokens when the server sent usage, else the number of
// content chunks (one token per chunk, as most servers stream). Status codes in the record:
// OK, HTTP_<status> (also for a streamed error carrying a numeric code), STREAM_ERROR,
// PROTOCOL_ERROR, INCOMPLETE_STREAM (the body ended without [DONE] or a finish_reason), or the
// transport's code (DEADLINE_EXCEEDED, UNAVAILABLE, CANCELLED, TRANSPORT_ERROR).
//
// Not thread-safe: one reader per request, driven by the thread that receives its bytes.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "clients/bench/backend.h"
#include "clients/bench/request_record.h"
#include "clients/bench/sse_parser.h"

namespace moeserve::bench {

class OpenAiStreamReader {
 public:
  // `start` is when the request was sent; `run_start` is time zero of the record's times.
  OpenAiStreamReader(RequestRecord* record, Clock::time_point start, Clock::time_point run_start);

  // Bytes of the response body that arrived at `now`, with the response's HTTP status. Returns
  // false when the rest of the stream is of no use (a malformed or error event): the caller
  // may abort the transfer; Finish still has to be called.
  bool OnBody(long http_status, std::string_view bytes, Clock::time_point now);

  // The transfer is over at `now`. `transport_code` is empty when the body arrived whole, else
  // the failure's status code name with `transport_error` saying what happened.
  void Finish(long http_status, const std::string& transport_code,
              const std::string& transport_error, Clock::time_point now);

  bool failed() const { return !failure_code_.empty(); }

 private:
  // Returns false after a failure.
  bool OnEvent(const SseEvent& event, Clock::time_point now);
  void Fail(std::string code, std::string message);
  double SecondsSinceRunStart(Clock::time_point t) const;

  RequestRecord* const record_;
  const Clock::time_point start_;
  const Clock::time_point run_start_;
  SseParser parser_;
  std::string error_body_;  // the body of a non-200 response (bounded)
  std::optional<Clock::time_point> last_content_;
  std::optional<Clock::time_point> done_received_;
  int64_t content_chunks_ = 0;
  bool usage_seen_ = false;
  std::string failure_code_;  // set by the first failure; later events are ignored
  std::string failure_message_;
};

// The message of an OpenAI-style error body: error.message (or a string `error`, FastAPI's
// `detail`, a top-level `message`), else the start of the body itself.
std::string OpenAiErrorMessage(std::string_view body);

}  // namespace moeserve::bench
