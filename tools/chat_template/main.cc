// moeserve-chat-template: renders chats (or bare Jinja snippets) with moeserve's chat-template
// engine, for checking it against transformers and for seeing what prompt a model gets.
//   moeserve-chat-template --model DIR            --cases FILE   the checkpoint's template
//   moeserve-chat-template --tokenizer-config FILE --cases FILE  a tokenizer_config.json
//   moeserve-chat-template --template FILE [--tokenizer-config FILE] --cases FILE
//                                                                a --chat-template file
//   moeserve-chat-template --cases FILE                          each case brings its template
// FILE "-" is stdin. Cases are a JSON array; a chat case is
//   {"messages": [...], "add_generation_prompt": false, "tools": [...], "documents": [...],
//    "kwargs": {...}}      (all but messages optional)
// and a snippet case (no template flag) is {"template": "{{ x }}", "context": {"x": 1}}.
// Output: a JSON array with, per case, {"text": "..."} or {"error": "..."}, on stdout. Exit 0
// when the cases could be read (rendering errors are results), 1 otherwise.
#include <cstdio>
#include <iostream>
#include <iterator>
#include <optional>
#include <string>

#include "CLI/CLI.hpp"
#include "engine/chat/chat_template.h"
#include "engine/chat/jinja/json_value.h"
#include "engine/chat/jinja/template.h"
#include "engine/cli/command_line.h"
#include "engine/io/bounded_file.h"
#include "nlohmann/json.hpp"

namespace {

using moeserve::engine::ChatRenderOptions;
using moeserve::engine::ChatTemplate;
using OrderedJson = nlohmann::ordered_json;
namespace jinja = moeserve::engine::jinja;

constexpr int64_t kMaxCasesFileBytes = int64_t{256} << 20;

OrderedJson Result(const absl::StatusOr<std::string>& text) {
  OrderedJson result = OrderedJson::object();
  if (text.ok()) {
    result["text"] = *text;
  } else {
    result["error"] = std::string(text.status().message());
  }
  return result;
}

absl::StatusOr<std::string> RenderChat(const ChatTemplate& chat, const OrderedJson& item) {
  ChatRenderOptions options;
  options.add_generation_prompt = item.value("add_generation_prompt", false);
  if (item.contains("tools") && !item["tools"].is_null()) options.tools = item["tools"];
  if (item.contains("documents") && !item["documents"].is_null()) {
    options.documents = item["documents"];
  }
  if (item.contains("kwargs")) options.extra_kwargs = item["kwargs"];
  return chat.Render(item.value("messages", OrderedJson::array()), options);
}

absl::StatusOr<std::string> RenderSnippet(const OrderedJson& item) {
  if (!item.contains("template") || !item["template"].is_string()) {
    return absl::InvalidArgumentError("a snippet case needs a \"template\" string");
  }
  absl::StatusOr<jinja::Template> parsed =
      jinja::Template::Parse(item["template"].get<std::string>(), "snippet");
  if (!parsed.ok()) return parsed.status();
  absl::StatusOr<jinja::Value> context =
      jinja::ValueFromJson(item.value("context", OrderedJson::object()));
  if (!context.ok()) return context.status();
  if (!context->is_dict()) return absl::InvalidArgumentError("\"context\" must be an object");
  return parsed->Render(context->as_dict());
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Renders chat templates (or Jinja snippets) for a JSON array of cases."};
  std::string model_dir, config_path, template_path, cases_path;
  app.add_option("--model", model_dir,
                 "checkpoint directory (chat_template.jinja or tokenizer_config.json)");
  app.add_option("--tokenizer-config", config_path, "a tokenizer_config.json");
  app.add_option("--template", template_path, "a chat template file (as --chat-template)");
  app.add_option("--cases", cases_path, "JSON array of cases, - for stdin")->required();
  if (std::optional<int> exit_status = moeserve::engine::ParseCommandLine(app, argc, argv)) {
    return *exit_status;
  }

  std::string cases_text;
  if (cases_path == "-") {
    cases_text.assign(std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>());
  } else {
    absl::StatusOr<std::string> text =
        moeserve::engine::ReadRegularFile(cases_path, kMaxCasesFileBytes);
    if (!text.ok()) {
      std::fprintf(stderr, "moeserve-chat-template: %s\n", text.status().ToString().c_str());
      return 1;
    }
    cases_text = *std::move(text);
  }
  const OrderedJson cases = OrderedJson::parse(cases_text, nullptr, /*allow_exceptions=*/false);
  if (!cases.is_array()) {
    std::fprintf(stderr, "moeserve-chat-template: %s is not a JSON array\n", cases_path.c_str());
    return 1;
  }

  std::optional<ChatTemplate> chat;
  absl::StatusOr<ChatTemplate> loaded = absl::NotFoundError("");
  if (!model_dir.empty()) {
    loaded = ChatTemplate::LoadFromModelDir(model_dir);
  } else if (!template_path.empty()) {
    std::optional<std::string> config;
    if (!config_path.empty()) {
      absl::StatusOr<std::string> text =
          moeserve::engine::ReadRegularFile(config_path, moeserve::engine::kMaxConfigFileBytes);
      if (!text.ok()) {
        std::fprintf(stderr, "moeserve-chat-template: %s\n", text.status().ToString().c_str());
        return 1;
      }
      config = *std::move(text);
    }
    loaded = ChatTemplate::LoadChatTemplateFile(template_path, config);
  } else if (!config_path.empty()) {
    absl::StatusOr<std::string> text =
        moeserve::engine::ReadRegularFile(config_path, moeserve::engine::kMaxConfigFileBytes);
    loaded = text.ok() ? ChatTemplate::FromTokenizerConfig(*text, config_path)
                       : absl::StatusOr<ChatTemplate>(text.status());
  }
  const bool wants_chat = !model_dir.empty() || !template_path.empty() || !config_path.empty();
  if (wants_chat) {
    if (!loaded.ok()) {
      std::fprintf(stderr, "moeserve-chat-template: %s\n", loaded.status().ToString().c_str());
      return 1;
    }
    chat = *std::move(loaded);
  }

  OrderedJson results = OrderedJson::array();
  for (const OrderedJson& item : cases) {
    if (!item.is_object()) {
      results.push_back(Result(absl::InvalidArgumentError("a case must be a JSON object")));
    } else if (chat) {
      results.push_back(Result(RenderChat(*chat, item)));
    } else {
      results.push_back(Result(RenderSnippet(item)));
    }
  }
  std::cout << results.dump(-1, ' ', /*ensure_ascii=*/false, OrderedJson::error_handler_t::replace)
            << '\n';
  return 0;
}
