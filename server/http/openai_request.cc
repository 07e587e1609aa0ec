#include "server/http/openai_request.h"

#include <cmath>
#include <limits>
#include <optional>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "engine/sampling/sampling_params.h"
#include "engine/status_macros.h"

namespace moeserve::server {
namespace {

namespace v1 = moeserve::v1;
using Json = nlohmann::json;

absl::Status Invalid(const std::string& message) { return absl::InvalidArgumentError(message); }

template <typename AnyJson>
const char* TypeName(const AnyJson& value) {
  if (value.is_number_integer() || value.is_number_unsigned()) return "integer";
  return value.type_name();
}

// The field, or null when absent or JSON null (OpenAI treats both as "unset").
const Json* Field(const Json& body, const char* name) {
  auto it = body.find(name);
  if (it == body.end() || it->is_null()) return nullptr;
  return &*it;
}

absl::StatusOr<std::optional<double>> OptionalNumber(const Json& body, const char* name) {
  const Json* value = Field(body, name);
  if (value == nullptr) return std::optional<double>();
  if (!value->is_number()) {
    return Invalid(absl::StrCat(name, " must be a number, got ", TypeName(*value)));
  }
  return std::optional<double>(value->get<double>());
}

absl::StatusOr<std::optional<int64_t>> OptionalInteger(const Json& body, const char* name,
                                                       int64_t lo, int64_t hi) {
  const Json* value = Field(body, name);
  if (value == nullptr) return std::optional<int64_t>();
  int64_t x = 0;
  if (value->is_number_unsigned()) {
    const uint64_t u = value->get<uint64_t>();
    x = u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())
            ? std::numeric_limits<int64_t>::max()
            : static_cast<int64_t>(u);
  } else if (value->is_number_integer()) {
    x = value->get<int64_t>();
  } else {
    return Invalid(absl::StrCat(name, " must be an integer, got ", TypeName(*value)));
  }
  if (x < lo || x > hi) {
    return Invalid(absl::StrCat(name, " must be in [", lo, ", ", hi, "], got ", value->dump()));
  }
  return std::optional<int64_t>(x);
}

absl::StatusOr<std::optional<bool>> OptionalBool(const Json& body, const char* name) {
  const Json* value = Field(body, name);
  if (value == nullptr) return std::optional<bool>();
  if (!value->is_boolean()) {
    return Invalid(absl::StrCat(name, " must be a boolean, got ", TypeName(*value)));
  }
  return std::optional<bool>(value->get<bool>());
}

// A float field of sampling_params: set only when the request has it, so that an unset one
// takes the generation_config.json default in validation. Non-finite values are passed on for
// validation to name; magnitudes beyond float become inf, which it refuses.
template <typename Setter>
absl::Status CopyFloat(const Json& body, const char* name, Setter set) {
  MOESERVE_ASSIGN_OR_RETURN(std::optional<double> value, OptionalNumber(body, name));
  if (value) set(static_cast<float>(*value));
  return absl::OkStatus();
}

absl::Status ParseStop(const Json& body, v1::SamplingParams& p) {
  const Json* stop = Field(body, "stop");
  if (stop == nullptr) return absl::OkStatus();
  if (stop->is_string()) {
    p.add_stop(stop->get<std::string>());
    return absl::OkStatus();
  }
  if (!stop->is_array()) {
    return Invalid(
        absl::StrCat("stop must be a string or a list of strings, got ", TypeName(*stop)));
  }
  for (size_t i = 0; i < stop->size(); ++i) {
    if (!(*stop)[i].is_string()) {
      return Invalid(absl::StrCat("stop[", i, "] must be a string, got ", TypeName((*stop)[i])));
    }
    if (i >= 1024) return Invalid("stop: at most 1024 strings");
    p.add_stop((*stop)[i].get<std::string>());
  }
  return absl::OkStatus();
}

absl::Status ParseLogitBias(const Json& body, v1::SamplingParams& p) {
  const Json* bias = Field(body, "logit_bias");
  if (bias == nullptr) return absl::OkStatus();
  if (!bias->is_object()) {
    return Invalid(
        absl::StrCat("logit_bias must be an object of token id → bias, got ", TypeName(*bias)));
  }
  if (bias->size() > 1024) {
    return Invalid(absl::StrCat("logit_bias: at most 1024 entries, got ", bias->size()));
  }
  for (const auto& [key, value] : bias->items()) {
    uint32_t id = 0;
    if (!absl::SimpleAtoi(key, &id)) {
      return Invalid(absl::StrCat("logit_bias: key \"", key, "\" is not a token id"));
    }
    if (!value.is_number()) {
      return Invalid(absl::StrCat("logit_bias[", key, "] must be a number, got ", TypeName(value)));
    }
    (*p.mutable_logit_bias())[id] = static_cast<float>(value.get<double>());
  }
  return absl::OkStatus();
}

absl::Status ParseStopTokenIds(const Json& body, v1::SamplingParams& p) {
  const Json* ids = Field(body, "stop_token_ids");
  if (ids == nullptr) return absl::OkStatus();
  if (!ids->is_array()) {
    return Invalid(absl::StrCat("stop_token_ids must be a list of integers, got ", TypeName(*ids)));
  }
  for (size_t i = 0; i < ids->size(); ++i) {
    const Json& id = (*ids)[i];
    if (!id.is_number_integer() || id.get<int64_t>() < 0 ||
        id.get<int64_t>() > std::numeric_limits<uint32_t>::max()) {
      return Invalid(absl::StrCat("stop_token_ids[", i, "] must be a token id, got ", id.dump()));
    }
    p.add_stop_token_ids(static_cast<uint32_t>(id.get<int64_t>()));
  }
  return absl::OkStatus();
}

// The fields /v1/completions and /v1/chat/completions share.
absl::Status ParseCommon(const Json& body, OpenAiRequest& request, v1::SamplingParams& p) {
  if (const Json* model = Field(body, "model")) {
    if (!model->is_string()) {
      return Invalid(absl::StrCat("model must be a string, got ", TypeName(*model)));
    }
    request.model = model->get<std::string>();
  }
  MOESERVE_ASSIGN_OR_RETURN(std::optional<int64_t> n, OptionalInteger(body, "n", 1, kMaxChoices));
  request.n = static_cast<int>(n.value_or(1));
  MOESERVE_ASSIGN_OR_RETURN(std::optional<int64_t> best_of,
                            OptionalInteger(body, "best_of", 1, kMaxChoices));
  if (best_of && *best_of != request.n) {
    return Invalid("best_of must equal n (choosing the best of several is not supported)");
  }
  MOESERVE_ASSIGN_OR_RETURN(std::optional<bool> stream, OptionalBool(body, "stream"));
  request.stream = stream.value_or(false);
  if (const Json* options = Field(body, "stream_options")) {
    if (!options->is_object()) {
      return Invalid(absl::StrCat("stream_options must be an object, got ", TypeName(*options)));
    }
    MOESERVE_ASSIGN_OR_RETURN(std::optional<bool> usage, OptionalBool(*options, "include_usage"));
    if (usage.has_value() && !request.stream) {
      return Invalid("stream_options is only allowed with stream: true");
    }
    request.include_usage = usage.value_or(false);
  }

  MOESERVE_RETURN_IF_ERROR(CopyFloat(body, "temperature", [&](float x) { p.set_temperature(x); }));
  MOESERVE_RETURN_IF_ERROR(CopyFloat(body, "top_p", [&](float x) { p.set_top_p(x); }));
  MOESERVE_RETURN_IF_ERROR(CopyFloat(body, "min_p", [&](float x) { p.set_min_p(x); }));
  MOESERVE_RETURN_IF_ERROR(
      CopyFloat(body, "presence_penalty", [&](float x) { p.set_presence_penalty(x); }));
  MOESERVE_RETURN_IF_ERROR(
      CopyFloat(body, "frequency_penalty", [&](float x) { p.set_frequency_penalty(x); }));
  MOESERVE_RETURN_IF_ERROR(
      CopyFloat(body, "repetition_penalty", [&](float x) { p.set_repetition_penalty(x); }));
  const int64_t int32_max = std::numeric_limits<int32_t>::max();
  MOESERVE_ASSIGN_OR_RETURN(std::optional<int64_t> top_k,
                            OptionalInteger(body, "top_k", -1, int32_max));
  if (top_k) p.set_top_k(static_cast<int32_t>(*top_k == 0 ? -1 : *top_k));  // vLLM: 0 = off
  MOESERVE_ASSIGN_OR_RETURN(std::optional<int64_t> seed,
                            OptionalInteger(body, "seed", std::numeric_limits<int64_t>::min(),
                                            std::numeric_limits<int64_t>::max()));
  if (seed) p.set_seed(static_cast<uint64_t>(*seed));
  MOESERVE_ASSIGN_OR_RETURN(std::optional<int64_t> min_tokens,
                            OptionalInteger(body, "min_tokens", 0, int32_max));
  if (min_tokens) p.set_min_tokens(static_cast<uint32_t>(*min_tokens));
  MOESERVE_ASSIGN_OR_RETURN(std::optional<bool> ignore_eos, OptionalBool(body, "ignore_eos"));
  p.set_ignore_eos(ignore_eos.value_or(false));
  MOESERVE_ASSIGN_OR_RETURN(std::optional<bool> skip_special,
                            OptionalBool(body, "skip_special_tokens"));
  if (skip_special) p.set_skip_special_tokens(*skip_special);
  MOESERVE_ASSIGN_OR_RETURN(std::optional<bool> include_stop,
                            OptionalBool(body, "include_stop_str_in_output"));
  p.set_include_stop_str_in_output(include_stop.value_or(false));
  MOESERVE_RETURN_IF_ERROR(ParseStop(body, p));
  MOESERVE_RETURN_IF_ERROR(ParseStopTokenIds(body, p));
  MOESERVE_RETURN_IF_ERROR(ParseLogitBias(body, p));
  if (const Json* user = Field(body, "user"); user != nullptr && !user->is_string()) {
    return Invalid(absl::StrCat("user must be a string, got ", TypeName(*user)));
  }
  return absl::OkStatus();
}

absl::Status SetMaxTokens(const Json& body, const char* name, v1::SamplingParams& p) {
  MOESERVE_ASSIGN_OR_RETURN(std::optional<int64_t> max_tokens,
                            OptionalInteger(body, name, std::numeric_limits<int64_t>::min(),
                                            std::numeric_limits<int64_t>::max()));
  if (!max_tokens) return absl::OkStatus();
  if (*max_tokens < 1) return Invalid(absl::StrCat(name, " must be >= 1, got ", *max_tokens));
  p.set_max_tokens(
      static_cast<uint32_t>(std::min<int64_t>(*max_tokens, std::numeric_limits<uint32_t>::max())));
  return absl::OkStatus();
}

// A prompt given as token ids: a non-empty list of non-negative integers.
absl::StatusOr<v1::TokenizedInput> TokenPrompt(const Json& ids, const std::string& field) {
  v1::TokenizedInput input;
  if (ids.empty()) return Invalid(absl::StrCat(field, " must not be empty"));
  for (size_t i = 0; i < ids.size(); ++i) {
    const Json& id = ids[i];
    if (!id.is_number_integer() || id.get<int64_t>() < 0 ||
        id.get<int64_t>() > std::numeric_limits<uint32_t>::max()) {
      return Invalid(
          absl::StrCat(field, "[", i, "] must be a token id (an integer >= 0), got ", id.dump()));
    }
    input.add_input_ids(static_cast<uint32_t>(id.get<int64_t>()));
  }
  return input;
}

bool IsTokenList(const Json& value) {
  return value.is_array() && !value.empty() && value[0].is_number();
}

// "prompt": a string, a list of token ids, or a list of either.
absl::Status ParsePrompts(const Json& body, const v1::GenerateRequest& base,
                          std::vector<v1::GenerateRequest>& prompts) {
  const Json* prompt = Field(body, "prompt");
  if (prompt == nullptr) return Invalid("prompt is required");
  auto add_text = [&](const Json& text) {
    v1::GenerateRequest r = base;
    r.set_text(text.get<std::string>());
    prompts.push_back(std::move(r));
  };
  auto add_tokens = [&](const Json& ids, const std::string& field) -> absl::Status {
    v1::GenerateRequest r = base;
    MOESERVE_ASSIGN_OR_RETURN(*r.mutable_tokenized(), TokenPrompt(ids, field));
    prompts.push_back(std::move(r));
    return absl::OkStatus();
  };
  if (prompt->is_string()) {
    add_text(*prompt);
    return absl::OkStatus();
  }
  if (!prompt->is_array()) {
    return Invalid(
        absl::StrCat("prompt must be a string, a list of token ids, or a list of either, got ",
                     TypeName(*prompt)));
  }
  if (prompt->empty()) return Invalid("prompt must not be an empty list");
  if (IsTokenList(*prompt)) return add_tokens(*prompt, "prompt");
  if (prompt->size() > kMaxPromptsPerRequest) {
    return Invalid(
        absl::StrCat("prompt: at most ", kMaxPromptsPerRequest, " prompts, got ", prompt->size()));
  }
  for (size_t i = 0; i < prompt->size(); ++i) {
    const Json& item = (*prompt)[i];
    const std::string field = absl::StrCat("prompt[", i, "]");
    if (item.is_string()) {
      add_text(item);
    } else if (item.is_array()) {
      MOESERVE_RETURN_IF_ERROR(add_tokens(item, field));
    } else {
      return Invalid(
          absl::StrCat(field, " must be a string or a list of token ids, got ", TypeName(item)));
    }
  }
  return absl::OkStatus();
}

// Chat content: a string, or a list of {"type": "text", "text": ...} parts (joined, as vLLM
// does for text-only models). Returns the text.
using OrderedJson = nlohmann::ordered_json;

absl::StatusOr<std::string> MessageText(const OrderedJson& content, const std::string& field) {
  if (content.is_string()) return content.get<std::string>();
  if (!content.is_array()) {
    return Invalid(
        absl::StrCat(field, " must be a string or a list of text parts, got ", TypeName(content)));
  }
  std::string text;
  for (size_t i = 0; i < content.size(); ++i) {
    const OrderedJson& part = content[i];
    const std::string part_field = absl::StrCat(field, "[", i, "]");
    if (!part.is_object()) return Invalid(absl::StrCat(part_field, " must be an object"));
    auto type = part.find("type");
    if (type == part.end() || !type->is_string()) {
      return Invalid(absl::StrCat(part_field, ".type must be a string"));
    }
    if (*type != "text") {
      return Invalid(absl::StrCat(part_field, ".type \"", type->get<std::string>(),
                                  "\" is not supported (this model reads text only)"));
    }
    auto part_text = part.find("text");
    if (part_text == part.end() || !part_text->is_string()) {
      return Invalid(absl::StrCat(part_field, ".text must be a string"));
    }
    if (!text.empty()) text += "\n";
    text += part_text->get<std::string>();
  }
  return text;
}

absl::StatusOr<OrderedJson> ParseMessages(const OrderedJson& body) {
  auto found = body.find("messages");
  const OrderedJson* messages = found == body.end() || found->is_null() ? nullptr : &*found;
  if (messages == nullptr) return Invalid("messages is required");
  if (!messages->is_array()) {
    return Invalid(absl::StrCat("messages must be a list, got ", TypeName(*messages)));
  }
  if (messages->empty()) return Invalid("messages must not be empty");
  if (messages->size() > kMaxChatMessages) {
    return Invalid(
        absl::StrCat("messages: at most ", kMaxChatMessages, " messages, got ", messages->size()));
  }
  OrderedJson out = OrderedJson::array();
  for (size_t i = 0; i < messages->size(); ++i) {
    const OrderedJson& m = (*messages)[i];
    const std::string field = absl::StrCat("messages[", i, "]");
    if (!m.is_object()) return Invalid(absl::StrCat(field, " must be an object"));
    auto role = m.find("role");
    if (role == m.end() || !role->is_string()) {
      return Invalid(absl::StrCat(field, ".role must be a string"));
    }
    const std::string r = role->get<std::string>();
    if (r != "system" && r != "user" && r != "assistant" && r != "tool" && r != "developer") {
      return Invalid(
          absl::StrCat(field, ".role must be system, user, assistant or tool, got \"", r, "\""));
    }
    OrderedJson message = m;  // tool_calls, tool_call_id, name... pass through to the template
    message["role"] = r == "developer" ? "system" : r;
    auto content = m.find("content");
    if (content == m.end() || content->is_null()) {
      if (r != "assistant") return Invalid(absl::StrCat(field, ".content is required"));
      message["content"] = nullptr;  // an assistant turn with only tool_calls
    } else {
      MOESERVE_ASSIGN_OR_RETURN(std::string text,
                                MessageText(*content, absl::StrCat(field, ".content")));
      message["content"] = std::move(text);
    }
    out.push_back(std::move(message));
  }
  return out;
}

}  // namespace

absl::StatusOr<Json> ParseJsonObject(std::string_view body) {
  Json json;
  try {
    json = Json::parse(body.begin(), body.end());
  } catch (const Json::parse_error& e) {
    return Invalid(absl::StrCat("the body is not valid JSON (byte ", e.byte, ")"));
  }
  if (!json.is_object()) return Invalid("the body must be a JSON object");
  return json;
}

absl::StatusOr<OpenAiRequest> ParseCompletionRequest(std::string_view body_text) {
  MOESERVE_ASSIGN_OR_RETURN(Json body, ParseJsonObject(body_text));
  OpenAiRequest request{.api = OpenAiApi::kCompletions};
  v1::GenerateRequest base;
  v1::SamplingParams& p = *base.mutable_sampling_params();
  MOESERVE_RETURN_IF_ERROR(ParseCommon(body, request, p));
  MOESERVE_RETURN_IF_ERROR(SetMaxTokens(body, "max_tokens", p));
  MOESERVE_ASSIGN_OR_RETURN(std::optional<int64_t> logprobs,
                            OptionalInteger(body, "logprobs", 0, engine::kMaxNumLogprobs));
  if (logprobs) {
    request.logprobs = static_cast<int>(*logprobs);
    p.set_logprobs(request.logprobs);
  }
  MOESERVE_ASSIGN_OR_RETURN(std::optional<bool> echo, OptionalBool(body, "echo"));
  if (echo.value_or(false)) return Invalid("echo is not supported");
  if (const Json* suffix = Field(body, "suffix");
      suffix != nullptr && !(suffix->is_string() && suffix->get<std::string>().empty())) {
    return Invalid("suffix is not supported (this model has no fill-in-the-middle template)");
  }
  MOESERVE_ASSIGN_OR_RETURN(std::optional<bool> add_special,
                            OptionalBool(body, "add_special_tokens"));
  if (add_special) base.set_add_special_tokens(*add_special);
  MOESERVE_RETURN_IF_ERROR(ParsePrompts(body, base, request.prompts));
  if (request.prompts.size() * static_cast<size_t>(request.n) > kMaxSequencesPerRequest) {
    return Invalid(absl::StrCat("n: ", request.prompts.size(), " prompts × n = ", request.n,
                                " asks for ", request.prompts.size() * request.n,
                                " sequences; at most ", kMaxSequencesPerRequest, " per request"));
  }
  return request;
}

absl::StatusOr<OpenAiRequest> ParseChatRequest(std::string_view body_text) {
  MOESERVE_ASSIGN_OR_RETURN(Json body, ParseJsonObject(body_text));
  OpenAiRequest request{.api = OpenAiApi::kChat};
  v1::GenerateRequest base;
  v1::SamplingParams& p = *base.mutable_sampling_params();
  MOESERVE_RETURN_IF_ERROR(ParseCommon(body, request, p));
  // max_completion_tokens replaces the deprecated max_tokens; either is accepted.
  MOESERVE_RETURN_IF_ERROR(SetMaxTokens(body, "max_tokens", p));
  MOESERVE_RETURN_IF_ERROR(SetMaxTokens(body, "max_completion_tokens", p));
  MOESERVE_ASSIGN_OR_RETURN(std::optional<bool> logprobs, OptionalBool(body, "logprobs"));
  MOESERVE_ASSIGN_OR_RETURN(std::optional<int64_t> top_logprobs,
                            OptionalInteger(body, "top_logprobs", 0, engine::kMaxNumLogprobs));
  if (top_logprobs && !logprobs.value_or(false)) {
    return Invalid("top_logprobs requires logprobs: true");
  }
  if (logprobs.value_or(false)) {
    request.logprobs = static_cast<int>(top_logprobs.value_or(0));
    p.set_logprobs(request.logprobs);
  }
  // Parsed again keeping key order, for the template (the text is known to be valid JSON).
  const OrderedJson ordered = OrderedJson::parse(body_text.begin(), body_text.end());
  MOESERVE_ASSIGN_OR_RETURN(request.messages, ParseMessages(ordered));
  if (const Json* tools = Field(body, "tools")) {
    if (!tools->is_array()) {
      return Invalid(absl::StrCat("tools must be a list, got ", TypeName(*tools)));
    }
    request.tools = ordered["tools"];
  }
  if (const Json* kwargs = Field(body, "chat_template_kwargs")) {
    if (!kwargs->is_object()) {
      return Invalid(
          absl::StrCat("chat_template_kwargs must be an object, got ", TypeName(*kwargs)));
    }
    request.chat_template_kwargs = ordered["chat_template_kwargs"];
  }
  MOESERVE_ASSIGN_OR_RETURN(std::optional<bool> add_generation_prompt,
                            OptionalBool(body, "add_generation_prompt"));
  request.add_generation_prompt = add_generation_prompt.value_or(true);
  MOESERVE_ASSIGN_OR_RETURN(std::optional<bool> continue_final,
                            OptionalBool(body, "continue_final_message"));
  request.continue_final_message = continue_final.value_or(false);
  if (request.continue_final_message && request.add_generation_prompt) {
    return Invalid("continue_final_message and add_generation_prompt cannot both be true");
  }
  // The rendered template carries the BOS token itself.
  base.set_add_special_tokens(false);
  request.prompts.push_back(std::move(base));
  return request;
}

OpenAiFieldMessage ToOpenAiFieldMessage(std::string_view message_view, OpenAiApi api,
                                        bool several_prompts, size_t prompt_index) {
  std::string message(message_view);
  const std::string prompt_field =
      api == OpenAiApi::kChat
          ? "messages"
          : (several_prompts ? absl::StrCat("prompt[", prompt_index, "]") : "prompt");
  const std::string logprobs_field = api == OpenAiApi::kChat ? "top_logprobs" : "logprobs";
  // Longest prefixes first: "tokenized.input_ids" before "text".
  const std::pair<std::string, std::string> renames[] = {
      {"sampling_params.logprobs", logprobs_field},
      {"sampling_params.max_tokens",
       api == OpenAiApi::kChat ? "max_completion_tokens" : "max_tokens"},
      {"sampling_params.", ""},
      {"tokenized.input_ids", prompt_field},
      {"text", prompt_field},
  };
  for (const auto& [from, to] : renames) {
    if (message.rfind(from, 0) == 0) {
      message = to + message.substr(from.size());
      break;
    }
  }
  // Inside the message too ("+ the prompt (12 tokens of text)").
  message =
      absl::StrReplaceAll(message, {{"tokens of tokenized.input_ids", "tokens of " + prompt_field},
                                    {"tokens of text", "tokens of " + prompt_field}});
  const size_t end = message.find_first_of(" [:=");
  return {message, message.substr(0, end)};
}

}  // namespace moeserve::server
