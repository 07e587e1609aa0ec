// The pieces of OpenAI response bodies: log probabilities in the completions and the chat
// shapes, usage, Server-Sent Events framing, finish reasons, ids.
//
// openai_job.cc assembles chunks and whole responses from these; the shapes follow OpenAI's API
// reference (and vLLM where OpenAI is silent: logprobs of -inf as -9999; finish reasons are the
// engine's names, engine::FinishReasonName, whose "abort" is vLLM's word for a cancelled request).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "engine/request.h"
#include "engine/tokenizer/tokenizer.h"
#include "nlohmann/json.hpp"

namespace moeserve::server {

// One token as text: its bytes, with any invalid UTF-8 (a token holding part of a character)
// replaced by U+FFFD, as OpenAI and vLLM show such tokens.
std::string TokenText(const engine::Tokenizer& tokenizer, int32_t token_id);

// /v1/completions `logprobs` for `tokens`: tokens, token_logprobs, top_logprobs (null unless
// alternatives were asked for), text_offset counted on from `*text_offset` (advanced).
nlohmann::json CompletionLogprobs(const std::vector<engine::GeneratedToken>& tokens,
                                  const engine::Tokenizer& tokenizer, int num_alternatives,
                                  int64_t* text_offset);
// /v1/chat/completions `logprobs.content` entries for `tokens` (appended to `content`).
void AppendChatLogprobs(const std::vector<engine::GeneratedToken>& tokens,
                        const engine::Tokenizer& tokenizer, nlohmann::json& content);

nlohmann::json UsageJson(int64_t prompt_tokens, int64_t completion_tokens, int64_t cached_tokens);

// `data: <json>\n\n`; invalid UTF-8 in strings is replaced, never thrown on.
std::string SseEvent(const nlohmann::json& payload);
inline constexpr std::string_view kSseDone = "data: [DONE]\n\n";

// Compact JSON, invalid UTF-8 replaced.
std::string DumpJson(const nlohmann::json& value);

}  // namespace moeserve::server
