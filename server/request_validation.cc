#include "server/request_validation.h"

#include <algorithm>
#include <cmath>
#include <optional>
#include <string_view>
#include <utility>

#include "absl/strings/str_cat.h"
#include "engine/exact_number.h"
#include "engine/sampling/sampling_params.h"
#include "engine/status_macros.h"
#include "engine/stop_checker.h"
#include "engine/tokenizer/utf8.h"
#include "google/protobuf/unknown_field_set.h"
#include "nlohmann/json.hpp"
#include "server/chat_prompt.h"

namespace moeserve::server {
namespace {

namespace v1 = moeserve::v1;

absl::Status Invalid(const std::string& message) { return absl::InvalidArgumentError(message); }

absl::string_view ToAbsl(std::string_view s) { return absl::string_view(s.data(), s.size()); }

// A field this server's proto does not have: a newer client's, or a client built from another
// proto. Refusing it beats silently ignoring a setting the client believes applies.
absl::Status CheckNoUnknownFields(const google::protobuf::Message& message, std::string_view path) {
  const google::protobuf::UnknownFieldSet& unknown =
      message.GetReflection()->GetUnknownFields(message);
  if (unknown.empty()) return absl::OkStatus();
  return Invalid(absl::StrCat(ToAbsl(path), ": unknown field number ", unknown.field(0).number(),
                              " (not in moeserve.v1.", message.GetDescriptor()->name(),
                              "; is the client's proto newer than the server's?)"));
}

absl::Status CheckUtf8(std::string_view text, std::string_view field) {
  const size_t bad = engine::FindInvalidUtf8(text);
  if (bad == text.size()) return absl::OkStatus();
  return Invalid(absl::StrCat(ToAbsl(field), " is not valid UTF-8 (byte offset ", bad, ")"));
}

bool InClosedRange(float x, float lo, float hi) { return std::isfinite(x) && x >= lo && x <= hi; }

absl::Status CheckTokenId(uint32_t id, int64_t vocab_size, const std::string& field) {
  if (static_cast<int64_t>(id) < vocab_size) return absl::OkStatus();
  return Invalid(absl::StrCat(field, " = ", id, " is out of range [0, ", vocab_size, ")"));
}

// A JSON text field of chat input: empty = absent, else it must parse (and be `kind`).
absl::StatusOr<std::optional<nlohmann::ordered_json>> ParseJsonField(const std::string& text,
                                                                     const std::string& field,
                                                                     bool want_array) {
  if (text.empty()) return std::optional<nlohmann::ordered_json>();
  nlohmann::ordered_json value = nlohmann::ordered_json::parse(text, nullptr, false);
  if (value.is_discarded()) return Invalid(absl::StrCat(field, " is not valid JSON"));
  if (want_array ? !value.is_array() : !value.is_object()) {
    return Invalid(absl::StrCat(field, " must be a JSON ", want_array ? "array" : "object"));
  }
  return std::optional<nlohmann::ordered_json>(std::move(value));
}

// GenerateRequest.chat → the prompt text its template renders.
absl::StatusOr<std::string> RenderChatInput(const v1::ChatInput& chat,
                                            const RequestLimits& limits) {
  MOESERVE_RETURN_IF_ERROR(CheckNoUnknownFields(chat, "chat"));
  if (chat.messages().empty()) return Invalid("chat.messages must not be empty");
  if (chat.messages().size() > static_cast<int>(kMaxChatMessages)) {
    return Invalid(absl::StrCat("chat.messages: at most ", kMaxChatMessages, " messages, got ",
                                chat.messages().size()));
  }
  nlohmann::ordered_json messages = nlohmann::ordered_json::array();
  for (int i = 0; i < chat.messages().size(); ++i) {
    const v1::ChatMessage& m = chat.messages(i);
    const std::string field = absl::StrCat("chat.messages[", i, "]");
    MOESERVE_RETURN_IF_ERROR(CheckNoUnknownFields(m, field));
    if (m.role() != "system" && m.role() != "user" && m.role() != "assistant" &&
        m.role() != "tool") {
      return Invalid(absl::StrCat(field, ".role must be system, user, assistant or tool, got \"",
                                  m.role(), "\""));
    }
    nlohmann::ordered_json message = {{"role", m.role()}, {"content", m.content()}};
    for (const auto& [name, value] :
         {std::pair<const char*, const std::string*>{"content", &m.content()},
          {"name", &m.name()},
          {"tool_call_id", &m.tool_call_id()},
          {"reasoning_content", &m.reasoning_content()}}) {
      MOESERVE_RETURN_IF_ERROR(CheckUtf8(*value, absl::StrCat(field, ".", name)));
      if (!value->empty() && std::string_view(name) != "content") message[name] = *value;
    }
    MOESERVE_ASSIGN_OR_RETURN(
        std::optional<nlohmann::ordered_json> tool_calls,
        ParseJsonField(m.tool_calls_json(), field + ".tool_calls_json", /*want_array=*/true));
    if (tool_calls) message["tool_calls"] = *std::move(tool_calls);
    messages.push_back(std::move(message));
  }
  ChatPromptOptions options;
  options.add_generation_prompt =
      chat.has_add_generation_prompt() ? chat.add_generation_prompt() : true;
  MOESERVE_ASSIGN_OR_RETURN(options.tools,
                            ParseJsonField(chat.tools_json(), "chat.tools_json", true));
  MOESERVE_ASSIGN_OR_RETURN(
      std::optional<nlohmann::ordered_json> kwargs,
      ParseJsonField(chat.chat_template_kwargs_json(), "chat.chat_template_kwargs_json", false));
  if (kwargs) options.template_kwargs = *std::move(kwargs);
  absl::StatusOr<std::string> text = RenderChatPrompt(limits.chat_template, messages, options);
  if (!text.ok()) return Invalid(absl::StrCat("chat: ", text.status().message()));
  return text;
}

// The prompt's token ids and the name of the field they came from (for errors).
struct Prompt {
  std::vector<int32_t> token_ids;
  const char* field = "";
};

absl::StatusOr<std::vector<int32_t>> TokenizePrompt(const std::string& text, bool add_special,
                                                    const char* field,
                                                    const engine::Tokenizer& tokenizer,
                                                    const RequestLimits& limits) {
  absl::StatusOr<std::vector<int32_t>> ids = tokenizer.Encode(text, add_special);
  if (!ids.ok()) return Invalid(absl::StrCat(field, ": ", ids.status().message()));
  if (ids->empty()) return Invalid(absl::StrCat(field, " encodes to no tokens"));
  for (size_t i = 0; i < ids->size(); ++i) {
    // A tokenizer with ids beyond the model's embedding would fail in the forward pass.
    if ((*ids)[i] < 0 || (*ids)[i] >= limits.vocab_size) {
      return Invalid(absl::StrCat(field, ": token ", (*ids)[i], " at position ", i,
                                  " is outside the model's vocabulary [0, ", limits.vocab_size,
                                  ")"));
    }
  }
  return ids;
}

absl::StatusOr<Prompt> ValidateInput(const v1::GenerateRequest& r,
                                     const engine::Tokenizer& tokenizer,
                                     const RequestLimits& limits) {
  Prompt prompt;
  switch (r.input_case()) {
    case v1::GenerateRequest::kText: {
      prompt.field = "text";
      if (r.text().empty()) return Invalid("text must not be empty");
      MOESERVE_RETURN_IF_ERROR(CheckUtf8(r.text(), "text"));
      const bool add_special = r.has_add_special_tokens() ? r.add_special_tokens() : true;
      MOESERVE_ASSIGN_OR_RETURN(prompt.token_ids,
                                TokenizePrompt(r.text(), add_special, "text", tokenizer, limits));
      break;
    }
    case v1::GenerateRequest::kTokenized: {
      prompt.field = "tokenized.input_ids";
      const v1::TokenizedInput& t = r.tokenized();
      MOESERVE_RETURN_IF_ERROR(CheckNoUnknownFields(t, "tokenized"));
      MOESERVE_RETURN_IF_ERROR(CheckUtf8(t.original_text(), "tokenized.original_text"));
      if (t.input_ids().empty()) return Invalid("tokenized.input_ids must not be empty");
      prompt.token_ids.reserve(t.input_ids().size());
      for (int i = 0; i < t.input_ids().size(); ++i) {
        MOESERVE_RETURN_IF_ERROR(CheckTokenId(t.input_ids(i), limits.vocab_size,
                                              absl::StrCat("tokenized.input_ids[", i, "]")));
        prompt.token_ids.push_back(static_cast<int32_t>(t.input_ids(i)));
      }
      break;
    }
    case v1::GenerateRequest::kChat: {
      prompt.field = "chat";
      MOESERVE_ASSIGN_OR_RETURN(std::string text, RenderChatInput(r.chat(), limits));
      // The template wrote BOS and the other special tokens itself.
      const bool add_special = r.has_add_special_tokens() ? r.add_special_tokens() : false;
      MOESERVE_ASSIGN_OR_RETURN(prompt.token_ids,
                                TokenizePrompt(text, add_special, "chat", tokenizer, limits));
      break;
    }
    case v1::GenerateRequest::INPUT_NOT_SET:
      return Invalid("input: exactly one of text, tokenized or chat must be set");
  }
  const int64_t length = static_cast<int64_t>(prompt.token_ids.size());
  if (length >= limits.max_model_len) {
    return Invalid(absl::StrCat(prompt.field, ": the prompt has ", length,
                                " tokens; the context length ", limits.max_model_len,
                                " leaves no room to generate"));
  }
  return prompt;
}

absl::Status ValidateSampling(const v1::SamplingParams& p, int64_t vocab_size,
                              const engine::GenerationDefaults& defaults,
                              engine::SamplingParams& s) {
  MOESERVE_RETURN_IF_ERROR(CheckNoUnknownFields(p, "sampling_params"));
  // An unset field takes the checkpoint's generation_config.json value, else the plain default.
  s.temperature = p.has_temperature() ? p.temperature() : defaults.temperature.value_or(1.0f);
  if (!std::isfinite(s.temperature) || s.temperature < 0.0f) {
    return Invalid(absl::StrCat("sampling_params.temperature must be finite and >= 0, got ",
                                engine::ExactNumber(s.temperature)));
  }
  s.top_p = p.has_top_p() ? p.top_p() : defaults.top_p.value_or(1.0f);
  if (!(s.top_p > 0.0f && s.top_p <= 1.0f)) {  // written so that NaN fails
    return Invalid(absl::StrCat("sampling_params.top_p must be in (0, 1], got ",
                                engine::ExactNumber(s.top_p)));
  }
  s.top_k = p.has_top_k() ? p.top_k() : defaults.top_k.value_or(-1);
  if (s.top_k != -1 && s.top_k < 1) {
    return Invalid(
        absl::StrCat("sampling_params.top_k must be -1 (disabled) or >= 1, got ", s.top_k));
  }
  s.min_p = p.has_min_p() ? p.min_p() : defaults.min_p.value_or(0.0f);
  if (!InClosedRange(s.min_p, 0.0f, 1.0f)) {
    return Invalid(absl::StrCat("sampling_params.min_p must be in [0, 1], got ",
                                engine::ExactNumber(s.min_p)));
  }
  s.repetition_penalty = p.has_repetition_penalty() ? p.repetition_penalty()
                                                    : defaults.repetition_penalty.value_or(1.0f);
  if (!std::isfinite(s.repetition_penalty) || s.repetition_penalty <= 0.0f) {
    return Invalid(absl::StrCat("sampling_params.repetition_penalty must be finite and > 0, got ",
                                engine::ExactNumber(s.repetition_penalty)));
  }
  const float max_penalty = engine::kMaxAdditivePenalty;
  s.frequency_penalty = p.has_frequency_penalty() ? p.frequency_penalty() : 0.0f;
  if (!InClosedRange(s.frequency_penalty, -max_penalty, max_penalty)) {
    return Invalid(absl::StrCat("sampling_params.frequency_penalty must be in [-", max_penalty,
                                ", ", max_penalty, "], got ",
                                engine::ExactNumber(s.frequency_penalty)));
  }
  s.presence_penalty = p.has_presence_penalty() ? p.presence_penalty() : 0.0f;
  if (!InClosedRange(s.presence_penalty, -max_penalty, max_penalty)) {
    return Invalid(absl::StrCat("sampling_params.presence_penalty must be in [-", max_penalty, ", ",
                                max_penalty, "], got ", engine::ExactNumber(s.presence_penalty)));
  }
  s.num_logprobs = p.has_logprobs() ? p.logprobs() : -1;
  if (p.has_logprobs() && (p.logprobs() < 0 || p.logprobs() > engine::kMaxNumLogprobs)) {
    return Invalid(absl::StrCat("sampling_params.logprobs must be in [0, ", engine::kMaxNumLogprobs,
                                "], got ", p.logprobs()));
  }
  if (p.has_seed()) s.seed = p.seed();

  if (p.logit_bias().size() > static_cast<int>(kMaxLogitBiasEntries)) {
    return Invalid(absl::StrCat("sampling_params.logit_bias: at most ", kMaxLogitBiasEntries,
                                " entries, got ", p.logit_bias().size()));
  }
  // Map order is unspecified; sorted, the first bad entry reported is always the same one.
  std::vector<std::pair<uint32_t, float>> bias(p.logit_bias().begin(), p.logit_bias().end());
  std::sort(bias.begin(), bias.end());
  for (const auto& [token_id, value] : bias) {
    if (static_cast<int64_t>(token_id) >= vocab_size) {
      return Invalid(absl::StrCat("sampling_params.logit_bias: token id ", token_id,
                                  " is out of range [0, ", vocab_size, ")"));
    }
    if (!InClosedRange(value, -engine::kMaxLogitBias, engine::kMaxLogitBias)) {
      return Invalid(absl::StrCat("sampling_params.logit_bias[", token_id, "] must be in [-",
                                  engine::kMaxLogitBias, ", ", engine::kMaxLogitBias, "], got ",
                                  engine::ExactNumber(value)));
    }
    s.logit_bias.emplace_back(static_cast<int32_t>(token_id), value);
  }
  return absl::OkStatus();
}

absl::Status ValidateStop(const v1::SamplingParams& p, int64_t prompt_length,
                          const char* prompt_field, const RequestLimits& limits,
                          engine::StopConditions& stop) {
  const int64_t room = limits.max_model_len - prompt_length;  // >= 1 (ValidateInput)
  if (p.has_max_tokens()) {
    const int64_t max_tokens = p.max_tokens();
    if (max_tokens < 1) {
      return Invalid(absl::StrCat("sampling_params.max_tokens must be >= 1, got ", max_tokens));
    }
    if (max_tokens > room) {
      return Invalid(absl::StrCat("sampling_params.max_tokens (", max_tokens, ") + the prompt (",
                                  prompt_length, " tokens of ", prompt_field,
                                  ") exceeds the context length ", limits.max_model_len));
    }
    stop.max_new_tokens = max_tokens;
  } else {
    stop.max_new_tokens =
        std::min(limits.generation_defaults.max_new_tokens.value_or(kDefaultMaxTokens), room);
  }
  if (static_cast<int64_t>(p.min_tokens()) > stop.max_new_tokens) {
    return Invalid(absl::StrCat("sampling_params.min_tokens must be <= max_tokens (",
                                stop.max_new_tokens, "), got ", p.min_tokens()));
  }
  stop.min_new_tokens = p.min_tokens();

  if (p.stop().size() > static_cast<int>(engine::kMaxStopStrings)) {
    return Invalid(absl::StrCat("sampling_params.stop: at most ", engine::kMaxStopStrings,
                                " stop strings, got ", p.stop().size()));
  }
  for (int i = 0; i < p.stop().size(); ++i) {
    const std::string& s = p.stop(i);
    if (s.empty() || s.size() > engine::kMaxStopStringBytes) {
      return Invalid(absl::StrCat("sampling_params.stop[", i, "] must be 1..",
                                  engine::kMaxStopStringBytes, " bytes, got ", s.size()));
    }
    MOESERVE_RETURN_IF_ERROR(CheckUtf8(s, absl::StrCat("sampling_params.stop[", i, "]")));
    stop.stop_strings.push_back(s);
  }
  if (p.stop_token_ids().size() > static_cast<int>(kMaxStopTokenIds)) {
    return Invalid(absl::StrCat("sampling_params.stop_token_ids: at most ", kMaxStopTokenIds,
                                " ids, got ", p.stop_token_ids().size()));
  }
  for (int i = 0; i < p.stop_token_ids().size(); ++i) {
    MOESERVE_RETURN_IF_ERROR(CheckTokenId(p.stop_token_ids(i), limits.vocab_size,
                                          absl::StrCat("sampling_params.stop_token_ids[", i, "]")));
    stop.stop_token_ids.push_back(static_cast<int32_t>(p.stop_token_ids(i)));
  }
  stop.ignore_eos = p.ignore_eos();
  if (!stop.ignore_eos) stop.eos_token_ids = limits.eos_token_ids;
  stop.include_stop_string = p.include_stop_str_in_output();
  return absl::OkStatus();
}

// The engine's own checks, as a backstop: a range this file missed still names the field.
absl::Status EngineBackstop(const engine::GenerateRequest& request, int64_t vocab_size) {
  absl::Status s = engine::ValidateSamplingParams(request.sampling, vocab_size);
  if (s.ok()) s = engine::ValidateStopConditions(request.stop);
  if (s.ok()) return s;
  return Invalid(absl::StrCat("sampling_params.", s.message()));
}

}  // namespace

absl::Status ValidateRequestId(std::string_view id, std::string_view field, bool allow_empty) {
  if (id.empty()) {
    if (allow_empty) return absl::OkStatus();
    return Invalid(absl::StrCat(ToAbsl(field), " must not be empty"));
  }
  if (id.size() > kMaxRequestIdBytes) {
    return Invalid(absl::StrCat(ToAbsl(field), " must be at most ", kMaxRequestIdBytes,
                                " bytes, got ", id.size()));
  }
  for (size_t i = 0; i < id.size(); ++i) {
    const unsigned char c = static_cast<unsigned char>(id[i]);
    if (c < 0x20 || c > 0x7E) {
      return Invalid(absl::StrCat(ToAbsl(field), " must be printable ASCII, got byte ",
                                  static_cast<int>(c), " at offset ", i));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<engine::GenerateRequest> ValidateGenerateRequest(const v1::GenerateRequest& r,
                                                                const engine::Tokenizer& tokenizer,
                                                                const RequestLimits& limits) {
  MOESERVE_RETURN_IF_ERROR(CheckNoUnknownFields(r, "GenerateRequest"));
  MOESERVE_RETURN_IF_ERROR(ValidateRequestId(r.request_id(), "request_id", /*allow_empty=*/true));
  engine::GenerateRequest request;
  request.request_id = r.request_id();
  request.priority = r.priority();  // any int32: lower is served first
  MOESERVE_ASSIGN_OR_RETURN(Prompt prompt, ValidateInput(r, tokenizer, limits));
  request.prompt_token_ids = std::move(prompt.token_ids);

  const v1::SamplingParams& p = r.sampling_params();  // absent: every field at its default
  MOESERVE_RETURN_IF_ERROR(
      ValidateSampling(p, limits.vocab_size, limits.generation_defaults, request.sampling));
  MOESERVE_RETURN_IF_ERROR(ValidateStop(p, static_cast<int64_t>(request.prompt_token_ids.size()),
                                        prompt.field, limits, request.stop));
  request.skip_special_tokens = p.has_skip_special_tokens() ? p.skip_special_tokens() : true;
  MOESERVE_RETURN_IF_ERROR(EngineBackstop(request, limits.vocab_size));
  return request;
}

absl::StatusOr<std::vector<int32_t>> ValidateTokenizeRequest(const v1::TokenizeRequest& r,
                                                             const engine::Tokenizer& tokenizer) {
  MOESERVE_RETURN_IF_ERROR(CheckNoUnknownFields(r, "TokenizeRequest"));
  MOESERVE_RETURN_IF_ERROR(CheckUtf8(r.text(), "text"));
  absl::StatusOr<std::vector<int32_t>> ids =
      tokenizer.Encode(r.text(), r.has_add_special_tokens() ? r.add_special_tokens() : true);
  if (!ids.ok()) return Invalid(absl::StrCat("text: ", ids.status().message()));
  return ids;
}

absl::Status ValidateAbortRequest(const v1::AbortRequest& r) {
  MOESERVE_RETURN_IF_ERROR(CheckNoUnknownFields(r, "AbortRequest"));
  if (r.request_ids().size() > static_cast<int>(kMaxAbortIds)) {
    return Invalid(
        absl::StrCat("request_ids: at most ", kMaxAbortIds, " ids, got ", r.request_ids().size()));
  }
  for (int i = 0; i < r.request_ids().size(); ++i) {
    MOESERVE_RETURN_IF_ERROR(ValidateRequestId(r.request_ids(i),
                                               absl::StrCat("request_ids[", i, "]"),
                                               /*allow_empty=*/false));
  }
  return absl::OkStatus();
}

}  // namespace moeserve::server
