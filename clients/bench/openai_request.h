// The request bodies of the openai backends: what `vllm bench serve --backend openai` and
// `--backend openai-chat` send, so vLLM, llama.cpp's llama-server and our own HTTP front end
// see the same load as from vLLM's client.
//
// /v1/completions: {"model", "prompt" (text, or the token-id array of an id prompt), "max_tokens",
// sampling fields, "ignore_eos", "stream": true, "stream_options": {"include_usage": true}}.
// /v1/chat/completions: the prompt as one user message, and both "max_tokens" and
// "max_completion_tokens" (servers read one or the other; they are equal). Sampling fields
// (vLLM's names; top_k, min_p, repetition_penalty and ignore_eos are vLLM/llama.cpp extensions)
// are sent only when set, so the server's defaults apply otherwise.
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "clients/bench/dataset.h"
#include "clients/bench/sampling_flags.h"

namespace moeserve::bench {

enum class OpenAiEndpoint { kCompletions, kChatCompletions };

struct OpenAiRequestOptions {
  OpenAiEndpoint endpoint = OpenAiEndpoint::kCompletions;
  std::string model;
  SamplingFlags sampling;
  bool ignore_eos = false;
};

// The path under the base URL: "/v1/completions" or "/v1/chat/completions".
const char* OpenAiPath(OpenAiEndpoint endpoint);

// The JSON body for `prompt`; InvalidArgument for a token-id prompt on the chat endpoint.
absl::StatusOr<std::string> BuildOpenAiBody(const BenchPrompt& prompt,
                                            const OpenAiRequestOptions& options);

}  // namespace moeserve::bench
