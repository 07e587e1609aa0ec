// ChatTemplate against transformers 4.57.1's apply_chat_template: every case in
// tests/golden/chat_templates/*.json (written by tools/oracle/render_chat_templates.py from the
// real tokenizer_config.json files) must render byte-identically, or fail where transformers
// failed (with the same message when the template itself called raise_exception).
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "engine/chat/chat_template.h"
#include "engine/io/bounded_file.h"
#include "gtest/gtest.h"

namespace moeserve::engine {
namespace {

using OrderedJson = nlohmann::ordered_json;

std::string ReadText(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

TEST(ChatTemplateGoldenTest, EveryGoldenConversationIsByteIdenticalToTransformers) {
  const std::filesystem::path source_dir = MOESERVE_SOURCE_DIR;
  const std::filesystem::path golden_dir = source_dir / "tests/golden/chat_templates";
  int num_templates = 0, num_cases = 0, num_rendered = 0;
  for (const auto& entry : std::filesystem::directory_iterator(golden_dir)) {
    if (entry.path().extension() != ".json") continue;
    const OrderedJson golden = OrderedJson::parse(ReadText(entry.path()));
    const std::string config_path = source_dir / golden["template_config"].get<std::string>();
    absl::StatusOr<ChatTemplate> chat =
        ChatTemplate::FromTokenizerConfig(ReadText(config_path), config_path);
    ASSERT_TRUE(chat.ok()) << chat.status();
    ++num_templates;
    int index = 0;
    for (const OrderedJson& item : golden["cases"]) {
      SCOPED_TRACE(entry.path().filename().string() + " case " + std::to_string(index++));
      ChatRenderOptions options;
      options.add_generation_prompt = item.value("add_generation_prompt", false);
      if (item.contains("tools")) options.tools = item["tools"];
      if (item.contains("kwargs")) options.extra_kwargs = item["kwargs"];
      const absl::StatusOr<std::string> text = chat->Render(item["messages"], options);
      const OrderedJson& expected = item["expected"];
      ++num_cases;
      if (expected.contains("text")) {
        ASSERT_TRUE(text.ok()) << text.status() << "\nmessages: " << item["messages"].dump();
        EXPECT_EQ(*text, expected["text"].get<std::string>());
        ++num_rendered;
      } else {
        ASSERT_FALSE(text.ok()) << "transformers failed with " << expected["error"]
                                << " but moeserve rendered:\n"
                                << *text;
        if (expected.value("raised", false)) {
          EXPECT_TRUE(jinja::IsRaisedByTemplate(text.status()));
          EXPECT_EQ(text.status().message(), expected["error"].get<std::string>());
        }
      }
    }
  }
  EXPECT_GE(num_templates, 5);
  std::printf(
      "%d templates x %d conversations checked (%d rendered identically, the rest fail "
      "on both sides)\n",
      num_templates, num_cases, num_rendered);
}

}  // namespace
}  // namespace moeserve::engine
