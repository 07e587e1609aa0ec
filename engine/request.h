// What a caller submits to the engine and what comes back, as plain values.
//
// The server builds a GenerateRequest only after validating the gRPC message (ARCHITECTURE.md
// §4 step 2); the engine re-checks the limits it owns (context length, vocabulary, queue).
// TokenEvents are delivered to the request's TokenSink from the engine thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "engine/sampling/sampler.h"
#include "engine/sampling/sampling_params.h"
#include "engine/stop_checker.h"

namespace moeserve::engine {

using Clock = std::chrono::steady_clock;

struct GenerateRequest {
  std::string request_id;                 // unique among live requests
  std::vector<int32_t> prompt_token_ids;  // non-empty
  SamplingParams sampling;
  StopConditions stop;
  int32_t priority = 0;             // lower value is served first (vLLM)
  bool skip_special_tokens = true;  // in the streamed text
  Clock::time_point arrival_time = Clock::now();
};

struct Usage {
  int64_t prompt_tokens = 0;
  int64_t completion_tokens = 0;
  int64_t cached_tokens = 0;  // prompt tokens whose KV came from the prefix cache
};

struct RequestTimestamps {
  Clock::time_point queued;
  std::optional<Clock::time_point> scheduled;  // first time it ran
  std::optional<Clock::time_point> first_token;
  std::optional<Clock::time_point> finished;
};

struct GeneratedToken {
  int32_t token_id = 0;
  float logprob = 0.0f;                    // when requested (num_logprobs >= 0)
  std::vector<TokenLogprob> top_logprobs;  // when num_logprobs > 0
};

// One step's news for one request. The last event of a request has `finish` set.
struct TokenEvent {
  std::string request_id;
  std::vector<GeneratedToken> tokens;  // new tokens (usually one)
  std::string text_delta;              // valid UTF-8
  std::optional<FinishReason> finish;
  std::string matched_stop_string;
  std::optional<int32_t> matched_stop_token;
  std::string error_message;  // for FinishReason::kError
  Usage usage;                // cumulative so far
  RequestTimestamps timestamps;
};

// Receives a request's events. Called on the engine thread: must not block (queue and return).
class TokenSink {
 public:
  virtual ~TokenSink() = default;
  virtual void OnEvent(TokenEvent event) = 0;
};

}  // namespace moeserve::engine
