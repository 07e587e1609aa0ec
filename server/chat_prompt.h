// A conversation → the prompt text, with the model's chat template: the one step both front
// ends share for chat input (gRPC's GenerateRequest.chat in request_validation.cc, HTTP's
// /v1/chat/completions and /tokenize in server/http/openai_service.cc).
//
// Errors are InvalidArgument: the model has no template, the template fails on these
// messages (its line named) or raises (its own message), or continue_final_message cannot
// find the last message in the rendered text. Thread-safe (the template is immutable).
#pragma once

#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "engine/chat/chat_template.h"
#include "nlohmann/json.hpp"

namespace moeserve::server {

struct ChatPromptOptions {
  bool add_generation_prompt = true;
  // vLLM's: the prompt ends where the last message's text ends, so the model continues that
  // message instead of starting a new turn (needs add_generation_prompt false).
  bool continue_final_message = false;
  std::optional<nlohmann::ordered_json> tools;  // a list of tool schemas
  nlohmann::ordered_json template_kwargs = nlohmann::ordered_json::object();
};

// `chat_template` may be null (the model has none): then the error says how to give one.
absl::StatusOr<std::string> RenderChatPrompt(const engine::ChatTemplate* chat_template,
                                             const nlohmann::ordered_json& messages,
                                             const ChatPromptOptions& options);

}  // namespace moeserve::server
