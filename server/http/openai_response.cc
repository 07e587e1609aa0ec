#include "server/http/openai_response.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "engine/tokenizer/utf8.h"

namespace moeserve::server {
namespace {

using Json = nlohmann::json;

// JSON has no -inf; vLLM reports impossible tokens as -9999.
double FiniteLogprob(float logprob) {
  return std::isfinite(logprob) ? static_cast<double>(logprob) : -9999.0;
}

Json ByteValues(const std::string& bytes) {
  Json out = Json::array();
  for (unsigned char c : bytes) out.push_back(static_cast<int>(c));
  return out;
}

}  // namespace

std::string TokenText(const engine::Tokenizer& tokenizer, int32_t token_id) {
  std::string bytes = tokenizer.TokenBytes(token_id);
  std::string out;
  std::string_view rest(bytes);
  while (!rest.empty()) {
    const size_t bad = engine::FindInvalidUtf8(rest);
    out.append(rest.substr(0, bad));
    if (bad == rest.size()) break;
    out.append("\xEF\xBF\xBD");
    rest.remove_prefix(bad + 1);
  }
  return out;
}

Json CompletionLogprobs(const std::vector<engine::GeneratedToken>& tokens,
                        const engine::Tokenizer& tokenizer, int num_alternatives,
                        int64_t* text_offset) {
  Json out = {{"tokens", Json::array()},
              {"token_logprobs", Json::array()},
              {"top_logprobs", num_alternatives > 0 ? Json::array() : Json(nullptr)},
              {"text_offset", Json::array()}};
  for (const engine::GeneratedToken& token : tokens) {
    const std::string text = TokenText(tokenizer, token.token_id);
    out["tokens"].push_back(text);
    out["token_logprobs"].push_back(FiniteLogprob(token.logprob));
    out["text_offset"].push_back(*text_offset);
    *text_offset += static_cast<int64_t>(text.size());
    if (num_alternatives > 0) {
      Json top = Json::object();
      for (const engine::TokenLogprob& alternative : token.top_logprobs) {
        top[TokenText(tokenizer, alternative.token_id)] = FiniteLogprob(alternative.logprob);
      }
      out["top_logprobs"].push_back(std::move(top));
    }
  }
  return out;
}

void AppendChatLogprobs(const std::vector<engine::GeneratedToken>& tokens,
                        const engine::Tokenizer& tokenizer, Json& content) {
  for (const engine::GeneratedToken& token : tokens) {
    const std::string bytes = tokenizer.TokenBytes(token.token_id);
    Json entry = {{"token", TokenText(tokenizer, token.token_id)},
                  {"logprob", FiniteLogprob(token.logprob)},
                  {"bytes", ByteValues(bytes)},
                  {"top_logprobs", Json::array()}};
    for (const engine::TokenLogprob& alternative : token.top_logprobs) {
      entry["top_logprobs"].push_back(
          {{"token", TokenText(tokenizer, alternative.token_id)},
           {"logprob", FiniteLogprob(alternative.logprob)},
           {"bytes", ByteValues(tokenizer.TokenBytes(alternative.token_id))}});
    }
    content.push_back(std::move(entry));
  }
}

Json UsageJson(int64_t prompt_tokens, int64_t completion_tokens, int64_t cached_tokens) {
  return {{"prompt_tokens", prompt_tokens},
          {"completion_tokens", completion_tokens},
          {"total_tokens", prompt_tokens + completion_tokens},
          {"prompt_tokens_details", {{"cached_tokens", cached_tokens}}}};
}

std::string DumpJson(const Json& value) {
  return value.dump(-1, ' ', false, Json::error_handler_t::replace);
}

std::string SseEvent(const Json& payload) {
  return absl::StrCat("data: ", DumpJson(payload), "\n\n");
}

}  // namespace moeserve::server
