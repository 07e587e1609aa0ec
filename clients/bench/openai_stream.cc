#include "clients/bench/openai_stream.h"

#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"

namespace moeserve::bench {
namespace {

// A non-200 body is read only for its error message; more than this is not worth keeping.
constexpr size_t kMaxErrorBody = 64 * 1024;
// How much of an unreadable body or event goes into a record's error.
constexpr size_t kQuotedPrefix = 200;

// (absl's string_view is not std's in Debian's build of Abseil.)
std::string_view Trim(std::string_view text) {
  const size_t begin = text.find_first_not_of(" \t\r\n");
  if (begin == std::string_view::npos) return {};
  return text.substr(begin, text.find_last_not_of(" \t\r\n") - begin + 1);
}

std::string Quote(std::string_view text) {
  text = Trim(text);
  if (text.size() <= kQuotedPrefix) return std::string(text);
  return std::string(text.substr(0, kQuotedPrefix)) + "...";
}

// The message inside a parsed error body; empty when it has none.
std::string MessageOf(const nlohmann::json& body) {
  if (!body.is_object()) return "";
  if (body.contains("error")) {
    const nlohmann::json& error = body["error"];
    if (error.is_string()) return error.get<std::string>();
    if (error.is_object() && error.contains("message") && error["message"].is_string()) {
      return error["message"].get<std::string>();
    }
    if (error.is_object()) return error.dump();
  }
  if (body.contains("detail")) {
    return body["detail"].is_string() ? body["detail"].get<std::string>() : body["detail"].dump();
  }
  if (body.contains("message") && body["message"].is_string()) {
    return body["message"].get<std::string>();
  }
  return "";
}

// The status code name of a streamed error: vLLM puts the HTTP status in error.code.
std::string StreamErrorCode(const nlohmann::json& body) {
  if (body.is_object() && body.contains("error") && body["error"].is_object()) {
    const nlohmann::json& code = body["error"].contains("code") ? body["error"]["code"] : nullptr;
    if (code.is_number_integer()) return absl::StrCat("HTTP_", code.get<int64_t>());
  }
  return "STREAM_ERROR";
}

// The text a chunk adds: completions carry choices[0].text, chat choices[0].delta.content
// (reasoning models stream their thinking as delta.reasoning_content or delta.reasoning).
std::string ChunkText(const nlohmann::json& choice) {
  if (choice.contains("text") && choice["text"].is_string()) return choice["text"];
  std::string text;
  if (choice.contains("delta") && choice["delta"].is_object()) {
    const nlohmann::json& delta = choice["delta"];
    for (const char* key : {"content", "reasoning_content", "reasoning"}) {
      if (delta.contains(key) && delta[key].is_string()) text += delta[key].get<std::string>();
    }
  }
  return text;
}

int64_t IntOr(const nlohmann::json& object, const char* key, int64_t otherwise) {
  if (!object.is_object() || !object.contains(key) || !object[key].is_number_integer()) {
    return otherwise;
  }
  return object[key].get<int64_t>();
}

}  // namespace

std::string OpenAiErrorMessage(std::string_view body) {
  const nlohmann::json parsed = nlohmann::json::parse(body, nullptr, /*allow_exceptions=*/false);
  std::string message = MessageOf(parsed);
  return message.empty() ? Quote(body) : message;
}

OpenAiStreamReader::OpenAiStreamReader(RequestRecord* record, Clock::time_point start,
                                       Clock::time_point run_start)
    : record_(record), start_(start), run_start_(run_start) {}

double OpenAiStreamReader::SecondsSinceRunStart(Clock::time_point t) const {
  return std::chrono::duration<double>(t - run_start_).count();
}

void OpenAiStreamReader::Fail(std::string code, std::string message) {
  if (failed()) return;
  failure_code_ = std::move(code);
  failure_message_ = std::move(message);
}

bool OpenAiStreamReader::OnBody(long http_status, std::string_view bytes, Clock::time_point now) {
  if (failed()) return false;
  if (http_status != 200) {
    error_body_.append(
        bytes.substr(0, kMaxErrorBody - std::min(kMaxErrorBody, error_body_.size())));
    return true;
  }
  std::vector<SseEvent> events;
  parser_.Feed(bytes, events);
  for (const SseEvent& event : events) {
    if (!OnEvent(event, now)) return false;
  }
  return true;
}

bool OpenAiStreamReader::OnEvent(const SseEvent& event, Clock::time_point now) {
  if (failed()) return false;
  const std::string_view data = Trim(event.data);
  if (data == "[DONE]") {
    if (!done_received_) done_received_ = now;
    return true;
  }
  if (done_received_) {
    Fail("PROTOCOL_ERROR", absl::StrCat("an event arrived after [DONE]: ", Quote(data)));
    return false;
  }
  const nlohmann::json chunk = nlohmann::json::parse(data, nullptr, /*allow_exceptions=*/false);
  if (event.event == "error") {
    const std::string message = MessageOf(chunk);
    Fail(StreamErrorCode(chunk), message.empty() ? Quote(data) : message);
    return false;
  }
  if (chunk.is_discarded()) {
    Fail("PROTOCOL_ERROR", absl::StrCat("malformed JSON in a stream event: ", Quote(data)));
    return false;
  }
  if (!chunk.is_object()) {
    Fail("PROTOCOL_ERROR", absl::StrCat("a stream event is not a JSON object: ", Quote(data)));
    return false;
  }
  if (chunk.contains("error") && !chunk["error"].is_null()) {
    Fail(StreamErrorCode(chunk), MessageOf(chunk));
    return false;
  }
  if (chunk.contains("choices") && chunk["choices"].is_array() && !chunk["choices"].empty() &&
      chunk["choices"][0].is_object()) {
    const nlohmann::json& choice = chunk["choices"][0];
    if (!ChunkText(choice).empty()) {
      // As the gRPC path: the first chunk with output ends TTFT; each later one adds an ITL.
      if (!last_content_) {
        record_->ttft = std::chrono::duration<double>(now - start_).count();
      } else {
        record_->itl.push_back(std::chrono::duration<double>(now - *last_content_).count());
      }
      last_content_ = now;
      record_->output_tokens = ++content_chunks_;
      record_->token_message_times.push_back(SecondsSinceRunStart(now));
      record_->token_message_counts.push_back(1);
    }
    if (choice.contains("finish_reason") && choice["finish_reason"].is_string()) {
      record_->finish_reason = choice["finish_reason"].get<std::string>();
    }
  }
  if (chunk.contains("usage") && chunk["usage"].is_object()) {
    const nlohmann::json& usage = chunk["usage"];
    usage_seen_ = true;
    record_->server_prompt_tokens = IntOr(usage, "prompt_tokens", 0);
    record_->server_completion_tokens = IntOr(usage, "completion_tokens", 0);
    if (usage.contains("prompt_tokens_details")) {
      record_->server_cached_tokens = IntOr(usage["prompt_tokens_details"], "cached_tokens", 0);
    }
  }
  return true;
}

void OpenAiStreamReader::Finish(long http_status, const std::string& transport_code,
                                const std::string& transport_error, Clock::time_point now) {
  if (http_status == 200 && !failed()) {
    std::vector<SseEvent> events;
    parser_.Finish(events);
    for (const SseEvent& event : events) {
      if (!OnEvent(event, now)) break;
    }
  }
  const Clock::time_point end = done_received_.value_or(now);
  record_->latency = std::chrono::duration<double>(end - start_).count();
  record_->success = false;
  if (failed()) {
    record_->status_code = failure_code_;
    record_->error = failure_message_;
  } else if (http_status != 200 && http_status != 0) {
    record_->status_code = absl::StrCat("HTTP_", http_status);
    record_->error = error_body_.empty() ? absl::StrCat("HTTP status ", http_status)
                                         : OpenAiErrorMessage(error_body_);
  } else if (!transport_code.empty() && !done_received_) {
    record_->status_code = transport_code;
    record_->error = transport_error;
  } else if (!done_received_ && record_->finish_reason.empty()) {
    record_->status_code = "INCOMPLETE_STREAM";
    record_->error = "the stream ended without data: [DONE] or a finish_reason";
  } else {
    record_->success = true;
    record_->status_code = "OK";
    record_->error.clear();
    // The server's counts are the truth: tokens per chunk vary, text prompts are tokenized
    // there. Without usage, one chunk counts as one token and is also the "server" count.
    if (usage_seen_) {
      record_->output_tokens = record_->server_completion_tokens;
    } else {
      record_->server_completion_tokens = record_->output_tokens;
    }
    if (record_->server_prompt_tokens > 0) record_->prompt_len = record_->server_prompt_tokens;
    // Output that never carried text (every token decoded to nothing yet) arrived, as far as
    // the client can tell, at the end.
    if (!last_content_) record_->ttft = record_->latency;
  }
}

}  // namespace moeserve::bench
