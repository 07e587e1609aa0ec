// OpenAI request bodies → moeserve.v1 requests, so that the HTTP API shares the gRPC API's one
// validation path (server/request_validation.h) and the engine sees the same requests.
//
// openai_service.cc parses a body here (JSON syntax and types: "temperature must be a number,
// got string"), renders chat messages with the chat template, then runs ValidateGenerateRequest
// on each prompt and maps its messages back to OpenAI's field names (OpenAiFieldMessage).
// Unknown fields are ignored, as OpenAI's API does; fields whose meaning we do not implement
// (echo, best_of > n, suffix) are refused rather than silently ignored. Thread-safe: pure.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "moeserve/v1/moeserve.pb.h"
#include "nlohmann/json.hpp"
#include "server/request_validation.h"

namespace moeserve::server {

// Choices one request may ask for (n), and prompts one completion request may carry.
inline constexpr int kMaxChoices = 128;
inline constexpr size_t kMaxPromptsPerRequest = 256;
// Engine requests (prompts × n) one HTTP request may start: beyond it one client would fill
// the engine's queue by itself.
inline constexpr size_t kMaxSequencesPerRequest = 512;

enum class OpenAiApi { kCompletions, kChat };

struct OpenAiRequest {
  OpenAiApi api = OpenAiApi::kCompletions;
  std::string model;  // as given; empty when absent
  // One per prompt (completions accept a list): the input and sampling_params, no request id.
  // For chat, the single entry's text is filled once the messages are rendered.
  std::vector<moeserve::v1::GenerateRequest> prompts;
  int n = 1;
  bool stream = false;
  bool include_usage = false;  // stream_options.include_usage
  // Log probabilities: -1 none, else the number of alternatives per token (0 = only the
  // chosen token's). Completions: `logprobs`; chat: `logprobs: true` + `top_logprobs`.
  int logprobs = -1;

  // Chat only.
  // Ordered as sent: the template's tojson must print keys in the client's order, as Python's
  // json.loads keeps them.
  nlohmann::ordered_json messages;  // validated: roles and text content
  std::optional<nlohmann::ordered_json> tools;
  nlohmann::ordered_json chat_template_kwargs = nlohmann::ordered_json::object();
  bool add_generation_prompt = true;
  bool continue_final_message = false;
};

// POST /v1/completions and /v1/chat/completions bodies.
absl::StatusOr<OpenAiRequest> ParseCompletionRequest(std::string_view body);
absl::StatusOr<OpenAiRequest> ParseChatRequest(std::string_view body);

// A validation message of ValidateGenerateRequest ("sampling_params.top_p must be ...") in the
// OpenAI request's terms ("top_p must be ..."), and the field it names (for the error's
// `param`).
struct OpenAiFieldMessage {
  std::string message;
  std::string param;
};
OpenAiFieldMessage ToOpenAiFieldMessage(std::string_view message, OpenAiApi api,
                                        bool several_prompts, size_t prompt_index);

// The JSON body of a request, or InvalidArgument naming the syntax error's position.
absl::StatusOr<nlohmann::json> ParseJsonObject(std::string_view body);

}  // namespace moeserve::server
