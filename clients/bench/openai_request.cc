#include "clients/bench/openai_request.h"

#include "nlohmann/json.hpp"

namespace moeserve::bench {

const char* OpenAiPath(OpenAiEndpoint endpoint) {
  return endpoint == OpenAiEndpoint::kChatCompletions ? "/v1/chat/completions" : "/v1/completions";
}

absl::StatusOr<std::string> BuildOpenAiBody(const BenchPrompt& prompt,
                                            const OpenAiRequestOptions& options) {
  nlohmann::ordered_json body;
  body["model"] = options.model;
  if (options.endpoint == OpenAiEndpoint::kChatCompletions) {
    if (!prompt.token_ids.empty()) {
      return absl::InvalidArgumentError(
          "--backend openai-chat sends text: token-id prompts need --backend openai");
    }
    body["messages"] = nlohmann::ordered_json::array(
        {nlohmann::ordered_json{{"role", "user"}, {"content", prompt.text}}});
    body["max_completion_tokens"] = prompt.output_len;
  } else if (!prompt.token_ids.empty()) {
    body["prompt"] = prompt.token_ids;  // vLLM and llama.cpp take a token-id array
  } else {
    body["prompt"] = prompt.text;
  }
  body["max_tokens"] = prompt.output_len;
  const SamplingFlags& s = options.sampling;
  const auto set = [&body](const char* key, const auto& value) {
    if (value) body[key] = *value;
  };
  set("temperature", s.temperature);
  set("top_p", s.top_p);
  set("top_k", s.top_k);
  set("min_p", s.min_p);
  set("frequency_penalty", s.frequency_penalty);
  set("presence_penalty", s.presence_penalty);
  set("repetition_penalty", s.repetition_penalty);
  set("seed", s.seed);
  if (options.ignore_eos) body["ignore_eos"] = true;
  body["stream"] = true;
  body["stream_options"] = {{"include_usage", true}};
  return body.dump();
}

}  // namespace moeserve::bench
