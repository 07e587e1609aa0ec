// Turns a chat (a list of messages) into the prompt text a checkpoint expects, by rendering
// the Jinja chat template it ships, byte for byte as transformers' apply_chat_template(...,
// tokenize=False) does (transformers 4.57.1, Jinja2 3.1; tests/engine/chat/ compare against
// both on generated conversations).
//
// Where the template comes from, in transformers' order: `chat_template.jinja` in the model
// directory, else tokenizer_config.json's `chat_template` (a string, or a list of
// {"name", "template"} of which "default" is used, or "tool_use" when tools are given); or an
// override file given with --chat-template (LoadChatTemplateFile). The special tokens the
// template sees (bos_token, eos_token, unk_token, sep_token, pad_token, cls_token, mask_token,
// additional_special_tokens) come from tokenizer_config.json, strings or AddedToken objects
// {"content": ...}; a token the config leaves out or sets to null is undefined in the template.
//
// The template sees exactly what apply_chat_template passes: `messages` as given (content a
// string, or a list of parts such as [{"type": "text", "text": ...}], which templates like
// Kimi-K2's iterate themselves; nothing is flattened here), `tools` (None when absent),
// `documents` (None), `add_generation_prompt`, the special tokens, and the extra keyword
// arguments (e.g. {"thinking": true}), which override special tokens of the same name.
// Messages and tools must be parsed with nlohmann::ordered_json so key order survives to
// `tojson`, as it does through Python's json.loads.
//
// Loaded once at startup by the server; immutable afterwards and safe to Render from many
// threads at once.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "engine/chat/jinja/evaluator.h"
#include "engine/chat/jinja/template.h"
#include "nlohmann/json.hpp"

namespace moeserve::engine {

// Cap on a chat template file (--chat-template or chat_template.jinja); real ones are a few KB.
inline constexpr int64_t kMaxChatTemplateFileBytes = int64_t{1} << 20;

struct ChatRenderOptions {
  bool add_generation_prompt = false;
  // A list of tool JSON schemas; nullopt renders with tools=None.
  std::optional<nlohmann::ordered_json> tools;
  // RAG documents (a list of objects); nullopt renders with documents=None.
  std::optional<nlohmann::ordered_json> documents;
  // More template variables (a JSON object), e.g. {"thinking": true}; they override the
  // special tokens of the same name, as apply_chat_template's **kwargs do.
  nlohmann::ordered_json extra_kwargs = nlohmann::ordered_json::object();
  // Shorthands for extra_kwargs["bos_token"] / ["eos_token"] (they win over extra_kwargs).
  std::optional<std::string> bos_token;
  std::optional<std::string> eos_token;
  jinja::RenderLimits limits;
};

class ChatTemplate {
 public:
  // The template of the checkpoint at `model_dir` (chat_template.jinja, else
  // tokenizer_config.json) with its special tokens. NotFound when the checkpoint has no chat
  // template; InvalidArgument naming the file and field for a malformed one or a template
  // that does not parse.
  static absl::StatusOr<ChatTemplate> LoadFromModelDir(const std::string& model_dir);

  // From the text of a tokenizer_config.json; `source` names it in errors.
  static absl::StatusOr<ChatTemplate> FromTokenizerConfig(std::string_view config_text,
                                                          const std::string& source);

  // --chat-template FILE: the whole file is the template (read with ReadRegularFile, at most
  // kMaxChatTemplateFileBytes). Special tokens come from `tokenizer_config_text` when given
  // (the checkpoint's tokenizer_config.json), so {{ bos_token }} still works.
  static absl::StatusOr<ChatTemplate> LoadChatTemplateFile(
      const std::string& path, std::optional<std::string_view> tokenizer_config_text = {});

  // A template from source text (tests, tools); `origin` names it in errors.
  static absl::StatusOr<ChatTemplate> FromSource(std::string_view source, const std::string& origin,
                                                 nlohmann::ordered_json special_tokens = {});

  // The prompt for `messages` (a non-empty JSON array of message objects). Errors are
  // InvalidArgument:
  // "chat template (SOURCE) line N: ..." for a failing template, or the template's own
  // raise_exception message verbatim (jinja::IsRaisedByTemplate tells them apart);
  // ResourceExhausted when options.limits are exceeded.
  absl::StatusOr<std::string> Render(const nlohmann::ordered_json& messages,
                                     const ChatRenderOptions& options = {}) const;

  // The special tokens given to the template, e.g. {"bos_token": "<s>", ...}.
  const nlohmann::ordered_json& special_tokens() const { return special_tokens_; }
  // Names of the templates (one "default" unless the config lists several).
  std::vector<std::string> template_names() const;

 private:
  ChatTemplate() = default;

  std::map<std::string, jinja::Template> templates_;  // by name; "default" when there is one
  nlohmann::ordered_json special_tokens_ = nlohmann::ordered_json::object();
};

}  // namespace moeserve::engine
