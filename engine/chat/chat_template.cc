#include "engine/chat/chat_template.h"

#include <filesystem>

#include "absl/strings/str_cat.h"
#include "engine/chat/jinja/absl_compat.h"
#include "engine/chat/jinja/json_value.h"
#include "engine/io/bounded_file.h"
#include "engine/io/strict_json.h"

namespace moeserve::engine {
namespace {

using OrderedJson = nlohmann::ordered_json;

// transformers' SPECIAL_TOKENS_ATTRIBUTES, in its order (special_tokens_map).
constexpr const char* kSpecialTokenNames[] = {
    "bos_token", "eos_token", "unk_token",  "sep_token",
    "pad_token", "cls_token", "mask_token", "additional_special_tokens"};

absl::Status BadField(const std::string& source, std::string_view field, std::string_view why) {
  return absl::InvalidArgumentError(
      absl::StrCat(source, ": field '", jinja::Sv(field), "' ", jinja::Sv(why)));
}

// A special token is a string or an AddedToken object {"content": "...", ...}.
absl::StatusOr<std::optional<std::string>> TokenText(const nlohmann::json& token,
                                                     const std::string& source,
                                                     std::string_view field) {
  if (token.is_null()) return std::optional<std::string>();
  if (token.is_string()) return std::optional<std::string>(token.get<std::string>());
  if (token.is_object()) {
    const auto content = token.find("content");
    if (content != token.end() && content->is_string()) {
      return std::optional<std::string>(content->get<std::string>());
    }
  }
  return BadField(source, field, "must be a string or an object with a string \"content\"");
}

absl::StatusOr<OrderedJson> SpecialTokens(const nlohmann::json& config, const std::string& source) {
  OrderedJson tokens = OrderedJson::object();
  for (const char* name : kSpecialTokenNames) {
    const auto it = config.find(name);
    if (it == config.end()) continue;
    if (std::string_view(name) == "additional_special_tokens") {
      if (it->is_null()) continue;
      if (!it->is_array()) return BadField(source, name, "must be a list");
      OrderedJson list = OrderedJson::array();
      for (const auto& token : *it) {
        absl::StatusOr<std::optional<std::string>> text = TokenText(token, source, name);
        if (!text.ok()) return text.status();
        if (*text) list.push_back(**text);
      }
      // transformers leaves out empty (falsy) values.
      if (!list.empty()) tokens[name] = std::move(list);
      continue;
    }
    absl::StatusOr<std::optional<std::string>> text = TokenText(*it, source, name);
    if (!text.ok()) return text.status();
    if (*text && !(*text)->empty()) tokens[name] = **text;
  }
  return tokens;
}

std::string Origin(const std::string& source, const std::string& name) {
  if (name == "default") return absl::StrCat("chat template (", source, ")");
  return absl::StrCat("chat template '", name, "' (", source, ")");
}

}  // namespace

absl::StatusOr<ChatTemplate> ChatTemplate::FromSource(std::string_view source,
                                                      const std::string& origin,
                                                      nlohmann::ordered_json special_tokens) {
  absl::StatusOr<jinja::Template> parsed = jinja::Template::Parse(source, origin);
  if (!parsed.ok()) return parsed.status();
  ChatTemplate chat;
  chat.templates_.emplace("default", *std::move(parsed));
  if (special_tokens.is_object()) chat.special_tokens_ = std::move(special_tokens);
  return chat;
}

absl::StatusOr<ChatTemplate> ChatTemplate::FromTokenizerConfig(std::string_view config_text,
                                                               const std::string& source) {
  absl::StatusOr<nlohmann::json> parsed = io_internal::ParseStrictJson(config_text, source);
  if (!parsed.ok()) return parsed.status();
  if (!parsed->is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": not a JSON object"));
  }
  ChatTemplate chat;
  absl::StatusOr<OrderedJson> tokens = SpecialTokens(*parsed, source);
  if (!tokens.ok()) return tokens.status();
  chat.special_tokens_ = *std::move(tokens);

  const auto it = parsed->find("chat_template");
  if (it == parsed->end() || it->is_null()) {
    return absl::NotFoundError(absl::StrCat(source, " has no chat_template"));
  }
  std::vector<std::pair<std::string, std::string>> named;  // name, source
  if (it->is_string()) {
    named.emplace_back("default", it->get<std::string>());
  } else if (it->is_array()) {
    for (const auto& entry : *it) {
      if (!entry.is_object() || !entry.contains("name") || !entry.contains("template") ||
          !entry["name"].is_string() || !entry["template"].is_string()) {
        return BadField(source, "chat_template",
                        "must be a string or a list of {\"name\": str, \"template\": str}");
      }
      named.emplace_back(entry["name"].get<std::string>(), entry["template"].get<std::string>());
    }
  } else {
    return BadField(source, "chat_template", "must be a string or a list of named templates");
  }
  for (const auto& [name, text] : named) {
    absl::StatusOr<jinja::Template> parsed_template =
        jinja::Template::Parse(text, Origin(source, name));
    if (!parsed_template.ok()) return parsed_template.status();
    chat.templates_.insert_or_assign(name, *std::move(parsed_template));
  }
  return chat;
}

absl::StatusOr<ChatTemplate> ChatTemplate::LoadFromModelDir(const std::string& model_dir) {
  const std::string config_path =
      (std::filesystem::path(model_dir) / "tokenizer_config.json").string();
  const std::string jinja_path =
      (std::filesystem::path(model_dir) / "chat_template.jinja").string();
  absl::StatusOr<std::string> config = ReadRegularFile(config_path, kMaxConfigFileBytes);
  if (!config.ok() && !absl::IsNotFound(config.status())) return config.status();
  // transformers prefers chat_template.jinja over the config's chat_template.
  absl::StatusOr<std::string> jinja_text = ReadRegularFile(jinja_path, kMaxChatTemplateFileBytes);
  if (jinja_text.ok()) {
    return LoadChatTemplateFile(
        jinja_path, config.ok() ? std::optional<std::string_view>(*config) : std::nullopt);
  }
  if (!absl::IsNotFound(jinja_text.status())) return jinja_text.status();
  if (!config.ok()) return config.status();
  return FromTokenizerConfig(*config, config_path);
}

absl::StatusOr<ChatTemplate> ChatTemplate::LoadChatTemplateFile(
    const std::string& path, std::optional<std::string_view> tokenizer_config_text) {
  absl::StatusOr<std::string> text = ReadRegularFile(path, kMaxChatTemplateFileBytes);
  if (!text.ok()) return text.status();
  OrderedJson tokens = OrderedJson::object();
  if (tokenizer_config_text) {
    absl::StatusOr<nlohmann::json> config =
        io_internal::ParseStrictJson(*tokenizer_config_text, "tokenizer_config.json");
    if (!config.ok()) return config.status();
    if (config->is_object()) {
      absl::StatusOr<OrderedJson> parsed = SpecialTokens(*config, "tokenizer_config.json");
      if (!parsed.ok()) return parsed.status();
      tokens = *std::move(parsed);
    }
  }
  return FromSource(*text, Origin(path, "default"), std::move(tokens));
}

std::vector<std::string> ChatTemplate::template_names() const {
  std::vector<std::string> names;
  for (const auto& [name, unused] : templates_) names.push_back(name);
  return names;
}

absl::StatusOr<std::string> ChatTemplate::Render(const nlohmann::ordered_json& messages,
                                                 const ChatRenderOptions& options) const {
  if (!messages.is_array()) return absl::InvalidArgumentError("messages must be a JSON array");
  // apply_chat_template fails on an empty conversation too (it inspects messages[0]).
  if (messages.empty()) return absl::InvalidArgumentError("messages must not be empty");
  // transformers' get_chat_template: "tool_use" when tools are given and it exists, else
  // "default"; several templates and no default is an error.
  const jinja::Template* chosen = nullptr;
  if (options.tools && templates_.contains("tool_use")) {
    chosen = &templates_.at("tool_use");
  } else if (templates_.contains("default")) {
    chosen = &templates_.at("default");
  } else {
    return absl::FailedPreconditionError(
        "the model has several chat templates and none is named \"default\"");
  }
  if (!options.extra_kwargs.is_object()) {
    return absl::InvalidArgumentError("extra template arguments must be a JSON object");
  }

  jinja::Dict context;
  auto set = [&](const std::string& name, const OrderedJson& json) -> absl::Status {
    absl::StatusOr<jinja::Value> value = jinja::ValueFromJson(json);
    if (!value.ok())
      return absl::InvalidArgumentError(absl::StrCat(name, ": ", value.status().message()));
    context.Set(jinja::Value::String(name), *std::move(value));
    return absl::OkStatus();
  };
  if (absl::Status s = set("messages", messages); !s.ok()) return s;
  if (absl::Status s = set("tools", options.tools.value_or(nullptr)); !s.ok()) return s;
  if (absl::Status s = set("documents", options.documents.value_or(nullptr)); !s.ok()) return s;
  context.Set(jinja::Value::String("add_generation_prompt"),
              jinja::Value::Bool(options.add_generation_prompt));
  for (const auto& [name, value] : special_tokens_.items()) {
    if (absl::Status s = set(name, value); !s.ok()) return s;
  }
  for (const auto& [name, value] : options.extra_kwargs.items()) {
    if (name == "messages" || name == "tools" || name == "documents" ||
        name == "add_generation_prompt") {
      return absl::InvalidArgumentError(
          absl::StrCat("extra template argument '", name, "' clashes with a chat argument"));
    }
    if (absl::Status s = set(name, value); !s.ok()) return s;
  }
  if (options.bos_token)
    context.Set(jinja::Value::String("bos_token"), jinja::Value::String(*options.bos_token));
  if (options.eos_token)
    context.Set(jinja::Value::String("eos_token"), jinja::Value::String(*options.eos_token));
  return chosen->Render(context, options.limits);
}

}  // namespace moeserve::engine
