#include "server/http/openai_job.h"

#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "server/http/openai_response.h"
#include "server/logging.h"

namespace moeserve::server {
namespace {

using Json = nlohmann::json;

int HttpStatusOf(const absl::Status& status) {
  switch (status.code()) {
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kOutOfRange:
    case absl::StatusCode::kFailedPrecondition:
      return 400;
    case absl::StatusCode::kAlreadyExists:
      return 409;
    case absl::StatusCode::kResourceExhausted:
      return 429;
    case absl::StatusCode::kUnavailable:
      return 503;
    default:
      return 500;
  }
}

}  // namespace

void OpenAiJob::Run(std::shared_ptr<HttpExchange> exchange, Params params,
                    std::vector<engine::GenerateRequest> requests) {
  const size_t num_choices = requests.size();
  auto* job = new OpenAiJob(std::move(exchange), std::move(params), num_choices);
  job->serial_ = job->params_.registry->Add(job);
  job->Submit(std::move(requests));
}

OpenAiJob::OpenAiJob(std::shared_ptr<HttpExchange> exchange, Params params, size_t num_choices)
    : exchange_(std::move(exchange)),
      params_(std::move(params)),
      choices_(num_choices),
      holds_(static_cast<int>(num_choices) + 1),
      unfinished_(static_cast<int>(num_choices)) {
  for (Choice& choice : choices_) {
    choice.logprobs = params_.api == OpenAiApi::kChat ? Json::array() : Json(nullptr);
  }
}

void OpenAiJob::Submit(std::vector<engine::GenerateRequest> requests) {
  absl::Status failure;
  size_t submitted = 0;
  for (; submitted < requests.size(); ++submitted) {
    absl::StatusOr<engine::RequestHandle> handle =
        params_.backend->engine->Submit(std::move(requests[submitted]), this);
    if (!handle.ok()) {
      failure = handle.status();
      break;
    }
    std::lock_guard lock(mu_);
    Choice& choice = choices_[submitted];
    choice.submitted = true;
    if (choice.final_seen) {
      handle->Detach();  // already over: the id may be reused from now on
    } else {
      choice.handle = *std::move(handle);
      if (client_gone_ || failed_) choice.handle.Cancel();
    }
  }

  std::unique_lock lock(mu_);
  if (!failure.ok()) {
    LogDebug(absl::StrCat(params_.id, ": ", failure.ToString()));
    failed_ = true;
    for (Choice& choice : choices_) {
      if (choice.submitted && !choice.final_seen) choice.handle.Cancel();
    }
    exchange_->Respond(JsonError(HttpStatusOf(failure), std::string(failure.message())));
    const int never_submitted = static_cast<int>(requests.size() - submitted);
    unfinished_ -= never_submitted;
    ReleaseLocked(lock, never_submitted + 1);
    return;
  }
  if (params_.stream) {
    started_ = true;
    exchange_->StartStream(200, "text/event-stream");
    if (!unsent_.empty()) exchange_->Write(std::exchange(unsent_, {}));
    if (unfinished_ == 0) exchange_->CloseStream();
  }
  // Registered last: the callback may run at once (the client already left).
  lock.unlock();
  // Through the registry: the job may be gone by the time the client leaves.
  exchange_->OnClientGone(
      [registry = params_.registry, serial = serial_] { registry->Cancel(serial); });
  lock.lock();
  ReleaseLocked(lock);
}

void OpenAiJob::CancelAll() {
  std::lock_guard lock(mu_);
  client_gone_ = true;
  for (Choice& choice : choices_) {
    if (choice.submitted && !choice.final_seen) choice.handle.Cancel();
  }
}

int OpenAiJob::ChoiceIndex(const std::string& request_id) const {
  const size_t dash = request_id.rfind('-');
  int index = -1;
  if (dash == std::string::npos || !absl::SimpleAtoi(request_id.substr(dash + 1), &index)) {
    return -1;
  }
  return index >= 0 && index < static_cast<int>(choices_.size()) ? index : -1;
}

void OpenAiJob::OnEvent(engine::TokenEvent event) {
  std::unique_lock lock(mu_);
  const int index = ChoiceIndex(event.request_id);
  if (index < 0) return;
  Choice& choice = choices_[index];
  const bool last = event.finish.has_value();
  choice.prompt_tokens = event.usage.prompt_tokens;
  choice.completion_tokens = event.usage.completion_tokens;
  choice.cached_tokens = event.usage.cached_tokens;
  if (last) {
    choice.final_seen = true;
    choice.finish = event.finish;
    choice.error = event.error_message;
    choice.handle.Detach();
    --unfinished_;
  }
  if (!failed_ && !client_gone_) {
    if (params_.stream) {
      WriteLocked(StreamChunksLocked(index, event));
    } else {
      AccumulateLocked(index, event);
    }
    if (unfinished_ == 0) CompleteLocked();
  }
  if (last) {
    ReleaseLocked(lock);
  }
}

void OpenAiJob::WriteLocked(std::string bytes) {
  if (bytes.empty()) return;
  if (!started_) {
    unsent_ += bytes;
    return;
  }
  if (!exchange_->Write(bytes)) {
    // The client left: nobody reads the rest. (OnClientGone cancels too; this is earlier.)
    client_gone_ = true;
    for (Choice& choice : choices_) {
      if (choice.submitted && !choice.final_seen) choice.handle.Cancel();
    }
  }
}

Json OpenAiJob::ChunkBase() const {
  return {{"id", params_.id},
          {"object", params_.api == OpenAiApi::kChat ? "chat.completion.chunk" : "text_completion"},
          {"created", params_.created},
          {"model", params_.model_name}};
}

std::string OpenAiJob::StreamChunksLocked(int index, const engine::TokenEvent& event) {
  Choice& choice = choices_[index];
  const engine::Tokenizer& tokenizer = *params_.backend->tokenizer;
  const bool last = event.finish.has_value();
  if (last && *event.finish == engine::FinishReason::kError) {
    const std::string message =
        event.error_message.empty() ? "the engine failed the request" : event.error_message;
    return SseEvent(Json::parse(JsonError(500, message).body));
  }
  Json chunk = ChunkBase();
  Json c = {{"index", index}, {"logprobs", nullptr}, {"finish_reason", nullptr}};
  const bool has_logprobs = params_.logprobs >= 0 && !event.tokens.empty();
  if (params_.api == OpenAiApi::kCompletions) {
    c["text"] = event.text_delta;
    if (has_logprobs) {
      c["logprobs"] =
          CompletionLogprobs(event.tokens, tokenizer, params_.logprobs, &choice.text_offset);
    }
    if (event.text_delta.empty() && !has_logprobs && !last) return "";
  } else {
    Json delta = Json::object();
    if (!choice.role_sent) {
      delta["role"] = "assistant";
      choice.role_sent = true;
    }
    if (params_.parse_reasoning) {
      ReasoningParser::Delta split = choice.parser.Feed(event.text_delta);
      if (last) {
        ReasoningParser::Delta rest = choice.parser.Finish();
        split.reasoning += rest.reasoning;
        split.content += rest.content;
      }
      if (!split.reasoning.empty()) delta["reasoning_content"] = split.reasoning;
      if (!split.content.empty()) delta["content"] = split.content;
    } else if (!event.text_delta.empty()) {
      delta["content"] = event.text_delta;
    }
    if (delta.contains("role") && !delta.contains("content") &&
        !delta.contains("reasoning_content")) {
      delta["content"] = "";
    }
    if (has_logprobs) {
      Json content = Json::array();
      AppendChatLogprobs(event.tokens, tokenizer, content);
      c["logprobs"] = {{"content", std::move(content)}};
    }
    if (delta.empty() && !has_logprobs && !last) return "";
    c["delta"] = std::move(delta);
  }
  if (last) c["finish_reason"] = std::string(engine::FinishReasonName(*event.finish));
  chunk["choices"] = Json::array({std::move(c)});
  return SseEvent(chunk);
}

void OpenAiJob::AccumulateLocked(int index, const engine::TokenEvent& event) {
  Choice& choice = choices_[index];
  const engine::Tokenizer& tokenizer = *params_.backend->tokenizer;
  if (params_.api == OpenAiApi::kChat && params_.parse_reasoning) {
    ReasoningParser::Delta split = choice.parser.Feed(event.text_delta);
    if (event.finish) {
      ReasoningParser::Delta rest = choice.parser.Finish();
      split.reasoning += rest.reasoning;
      split.content += rest.content;
    }
    choice.reasoning += split.reasoning;
    choice.text += split.content;
  } else {
    choice.text += event.text_delta;
  }
  if (params_.logprobs < 0 || event.tokens.empty()) return;
  if (params_.api == OpenAiApi::kChat) {
    AppendChatLogprobs(event.tokens, tokenizer, choice.logprobs);
    return;
  }
  Json piece = CompletionLogprobs(event.tokens, tokenizer, params_.logprobs, &choice.text_offset);
  if (choice.logprobs.is_null()) {
    choice.logprobs = std::move(piece);
    return;
  }
  for (const char* key : {"tokens", "token_logprobs", "top_logprobs", "text_offset"}) {
    if (piece[key].is_array()) {
      for (Json& item : piece[key]) choice.logprobs[key].push_back(std::move(item));
    }
  }
}

Json OpenAiJob::UsageLocked() const {
  // The prompt counts once per prompt, not once per choice (OpenAI's usage).
  int64_t prompt = 0, completion = 0, cached = 0;
  for (size_t i = 0; i < choices_.size(); ++i) {
    completion += choices_[i].completion_tokens;
    if (i % static_cast<size_t>(params_.n) == 0) {
      prompt += choices_[i].prompt_tokens;
      cached += choices_[i].cached_tokens;
    }
  }
  return UsageJson(prompt, completion, cached);
}

void OpenAiJob::CompleteLocked() {
  if (params_.stream) {
    std::string tail;
    if (params_.include_usage) {
      Json usage = ChunkBase();
      usage["choices"] = Json::array();
      usage["usage"] = UsageLocked();
      tail += SseEvent(usage);
    }
    tail += kSseDone;
    WriteLocked(std::move(tail));
    if (started_) exchange_->CloseStream();
    return;
  }
  Json body = {{"id", params_.id},
               {"object", params_.api == OpenAiApi::kChat ? "chat.completion" : "text_completion"},
               {"created", params_.created},
               {"model", params_.model_name},
               {"choices", Json::array()}};
  for (size_t i = 0; i < choices_.size(); ++i) {
    const Choice& choice = choices_[i];
    if (choice.finish == engine::FinishReason::kError) {
      exchange_->Respond(
          JsonError(500, choice.error.empty() ? "the engine failed the request" : choice.error));
      return;
    }
    Json c = {{"index", i},
              {"finish_reason", std::string(engine::FinishReasonName(*choice.finish))},
              {"logprobs", nullptr}};
    if (params_.api == OpenAiApi::kChat) {
      Json message = {{"role", "assistant"}, {"content", choice.text}};
      if (params_.parse_reasoning) {
        message["reasoning_content"] = choice.reasoning;
        // An output that never closed its thinking has no answer (vLLM: content null).
        if (!choice.parser.reasoning_ended()) message["content"] = nullptr;
      }
      c["message"] = std::move(message);
      if (params_.logprobs >= 0) c["logprobs"] = {{"content", choice.logprobs}};
    } else {
      c["text"] = choice.text;
      if (params_.logprobs >= 0) c["logprobs"] = choice.logprobs;
    }
    body["choices"].push_back(std::move(c));
  }
  body["usage"] = UsageLocked();
  exchange_->Respond({.status = 200, .content_type = "application/json", .body = DumpJson(body)});
}

void OpenAiJob::ReleaseLocked(std::unique_lock<std::mutex>& lock, int holds) {
  holds_ -= holds;
  const bool last = holds_ == 0;
  lock.unlock();
  if (!last) return;
  params_.registry->Remove(serial_);
  delete this;
}

uint64_t OpenAiJobRegistry::Add(OpenAiJob* job) {
  std::lock_guard lock(mu_);
  const uint64_t serial = next_serial_++;
  jobs_[serial] = job;
  return serial;
}

void OpenAiJobRegistry::Remove(uint64_t serial) {
  std::lock_guard lock(mu_);
  jobs_.erase(serial);
}

void OpenAiJobRegistry::Cancel(uint64_t serial) {
  std::lock_guard lock(mu_);
  if (auto it = jobs_.find(serial); it != jobs_.end()) it->second->CancelAll();
}

void OpenAiJobRegistry::CancelAll() {
  std::lock_guard lock(mu_);
  for (auto& [serial, job] : jobs_) job->CancelAll();
}

size_t OpenAiJobRegistry::size() const {
  std::lock_guard lock(mu_);
  return jobs_.size();
}

}  // namespace moeserve::server
