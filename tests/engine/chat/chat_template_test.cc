// ChatTemplate: where the template and special tokens come from (tokenizer_config.json in its
// forms, chat_template.jinja, --chat-template files), what the template sees, and errors that
// name the file and field.
#include "engine/chat/chat_template.h"

#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "absl/strings/match.h"
#include "gtest/gtest.h"

namespace moeserve::engine {
namespace {

using OrderedJson = nlohmann::ordered_json;

const OrderedJson kChat = OrderedJson::parse(R"([{"role": "user", "content": "hi"}])");

class TempDir {
 public:
  TempDir() {
    char pattern[] = "/tmp/chat_template_test_XXXXXX";
    path_ = mkdtemp(pattern);
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  std::string Write(const std::string& name, const std::string& text) const {
    const std::string path = (std::filesystem::path(path_) / name).string();
    std::ofstream(path, std::ios::binary) << text;
    return path;
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

TEST(ChatTemplateTest, TokenizerConfig_StringTemplateWithAddedTokenSpecialTokens) {
  const std::string config = R"({
    "bos_token": {"__type": "AddedToken", "content": "<s>", "lstrip": false},
    "eos_token": "</s>", "unk_token": null, "pad_token": "",
    "chat_template": "{{ bos_token }}{% for m in messages %}[{{ m.role }}]{{ m.content }}{% endfor %}{{ eos_token }}|{{ unk_token is defined }}{{ pad_token is defined }}"
  })";
  absl::StatusOr<ChatTemplate> chat = ChatTemplate::FromTokenizerConfig(config, "cfg.json");
  ASSERT_TRUE(chat.ok()) << chat.status();
  // A null or empty token is left out, as transformers' special_tokens_map does.
  EXPECT_EQ(*chat->Render(kChat), "<s>[user]hi</s>|FalseFalse");
  EXPECT_EQ(chat->special_tokens().dump(), R"({"bos_token":"<s>","eos_token":"</s>"})");
}

TEST(ChatTemplateTest, TokenizerConfig_NamedTemplatesPickDefaultOrToolUse) {
  const std::string config = R"({"chat_template": [
      {"name": "default", "template": "plain"},
      {"name": "tool_use", "template": "tools: {{ tools|length }}"}]})";
  absl::StatusOr<ChatTemplate> chat = ChatTemplate::FromTokenizerConfig(config, "cfg.json");
  ASSERT_TRUE(chat.ok()) << chat.status();
  EXPECT_EQ(*chat->Render(kChat), "plain");
  ChatRenderOptions options;
  options.tools = OrderedJson::parse(R"([{"type": "function"}])");
  EXPECT_EQ(*chat->Render(kChat, options), "tools: 1");
}

TEST(ChatTemplateTest, Render_PassesTheVariablesApplyChatTemplatePasses) {
  absl::StatusOr<ChatTemplate> chat = ChatTemplate::FromSource(
      "{{ tools is none }}{{ documents is none }}{{ add_generation_prompt }}{{ thinking }}"
      "{{ bos_token }}{{ messages[0].content[0].text }}",
      "chat template (test)", {{"bos_token", "<s>"}});
  ASSERT_TRUE(chat.ok()) << chat.status();
  ChatRenderOptions options;
  options.add_generation_prompt = true;
  options.extra_kwargs = {{"thinking", true}, {"bos_token", "<override>"}};
  const OrderedJson parts =
      OrderedJson::parse(R"([{"role": "user", "content": [{"type": "text", "text": "part"}]}])");
  EXPECT_EQ(*chat->Render(parts, options), "TrueTrueTrueTrue<override>part");
  options.bos_token = "<explicit>";
  EXPECT_EQ(*chat->Render(parts, options), "TrueTrueTrueTrue<explicit>part");
}

TEST(ChatTemplateTest, Render_RefusesMalformedInput) {
  absl::StatusOr<ChatTemplate> chat = ChatTemplate::FromSource("x", "t");
  ASSERT_TRUE(chat.ok());
  EXPECT_EQ(chat->Render(OrderedJson::object()).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(chat->Render(OrderedJson::array()).status().code(), absl::StatusCode::kInvalidArgument);
  ChatRenderOptions options;
  options.extra_kwargs = {{"messages", 1}};
  EXPECT_FALSE(chat->Render(kChat, options).ok());
}

TEST(ChatTemplateTest, TokenizerConfig_ErrorsNameTheFileAndField) {
  absl::StatusOr<ChatTemplate> chat = ChatTemplate::FromTokenizerConfig(R"({"eos_token": 5,
      "chat_template": "x"})",
                                                                        "/m/tokenizer_config.json");
  ASSERT_FALSE(chat.ok());
  EXPECT_EQ(chat.status().message(),
            "/m/tokenizer_config.json: field 'eos_token' must be a string or an object with a "
            "string \"content\"");
  chat = ChatTemplate::FromTokenizerConfig(R"({"chat_template": 3})", "cfg.json");
  EXPECT_TRUE(absl::StrContains(chat.status().message(), "field 'chat_template'"));
  chat = ChatTemplate::FromTokenizerConfig(R"({"bos_token": "<s>"})", "cfg.json");
  EXPECT_EQ(chat.status().code(), absl::StatusCode::kNotFound);
  chat =
      ChatTemplate::FromTokenizerConfig(R"({"chat_template": "a\n{{ x|nofilter }}"})", "cfg.json");
  EXPECT_EQ(chat.status().message(), "chat template (cfg.json) line 2: unknown filter 'nofilter'");
}

TEST(ChatTemplateTest, LoadChatTemplateFile_ReadsABoundedRegularFile) {
  TempDir dir;
  const std::string path = dir.Write("t.jinja", "{{ bos_token }}{{ messages|length }}\n");
  absl::StatusOr<ChatTemplate> chat =
      ChatTemplate::LoadChatTemplateFile(path, std::string_view(R"({"bos_token": "<s>"})"));
  ASSERT_TRUE(chat.ok()) << chat.status();
  EXPECT_EQ(*chat->Render(kChat), "<s>1");

  const std::string big = dir.Write("big.jinja", std::string(kMaxChatTemplateFileBytes + 1, 'x'));
  EXPECT_EQ(ChatTemplate::LoadChatTemplateFile(big).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_FALSE(ChatTemplate::LoadChatTemplateFile(dir.path()).ok());  // a directory
  EXPECT_EQ(ChatTemplate::LoadChatTemplateFile(dir.path() + "/none").status().code(),
            absl::StatusCode::kNotFound);
}

TEST(ChatTemplateTest, LoadFromModelDir_PrefersChatTemplateJinja) {
  TempDir dir;
  dir.Write("tokenizer_config.json", R"({"eos_token": "</s>", "chat_template": "config"})");
  absl::StatusOr<ChatTemplate> chat = ChatTemplate::LoadFromModelDir(dir.path());
  ASSERT_TRUE(chat.ok()) << chat.status();
  EXPECT_EQ(*chat->Render(kChat), "config");
  dir.Write("chat_template.jinja", "file{{ eos_token }}");
  chat = ChatTemplate::LoadFromModelDir(dir.path());
  ASSERT_TRUE(chat.ok()) << chat.status();
  EXPECT_EQ(*chat->Render(kChat), "file</s>");
}

TEST(ChatTemplateTest, BundledModel_RendersItsDeepSeekV3Template) {
  absl::StatusOr<ChatTemplate> chat =
      ChatTemplate::LoadFromModelDir(std::string(MOESERVE_SOURCE_DIR) + "/models/kjv-v3-tiny");
  ASSERT_TRUE(chat.ok()) << chat.status();
  ChatRenderOptions options;
  options.add_generation_prompt = true;
  const OrderedJson chat_messages = OrderedJson::parse(
      R"([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}])");
  EXPECT_EQ(*chat->Render(chat_messages, options),
            "<｜begin▁of▁sentence｜>Be brief.<｜User｜>hi<｜Assistant｜>");
}

}  // namespace
}  // namespace moeserve::engine
