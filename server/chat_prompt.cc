#include "server/chat_prompt.h"

#include "absl/strings/str_cat.h"

namespace moeserve::server {

absl::StatusOr<std::string> RenderChatPrompt(const engine::ChatTemplate* chat_template,
                                             const nlohmann::ordered_json& messages,
                                             const ChatPromptOptions& options) {
  if (chat_template == nullptr) {
    return absl::InvalidArgumentError(
        "this model has no chat template (tokenizer_config.json has no chat_template); start "
        "the server with --chat-template FILE, or send the prompt as text");
  }
  engine::ChatRenderOptions render;
  render.add_generation_prompt = options.add_generation_prompt;
  render.tools = options.tools;
  render.extra_kwargs = options.template_kwargs;
  absl::StatusOr<std::string> text = chat_template->Render(messages, render);
  if (!text.ok()) {
    if (absl::IsInvalidArgument(text.status())) return text.status();
    // ResourceExhausted: the template's work or output limit, caused by this input.
    return absl::InvalidArgumentError(text.status().message());
  }
  if (options.continue_final_message) {
    const nlohmann::ordered_json& last = messages.back();
    const std::string content = last.contains("content") && last["content"].is_string()
                                    ? last["content"].get<std::string>()
                                    : std::string();
    const size_t at = content.empty() ? std::string::npos : text->rfind(content);
    if (at == std::string::npos) {
      return absl::InvalidArgumentError(
          "continue_final_message: the last message's content is not in the rendered prompt");
    }
    text->resize(at + content.size());
  }
  return text;
}

}  // namespace moeserve::server
