// OpenAI request bodies → moeserve.v1 requests: types and shapes checked with the field named,
// unset fields left unset (so generation_config.json defaults apply), prompts in every form,
// chat messages, and validation messages renamed to OpenAI's fields.
#include "server/http/openai_request.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace moeserve::server {
namespace {

using ::testing::HasSubstr;

std::string Error(const absl::StatusOr<OpenAiRequest>& r) {
  return r.ok() ? "OK" : std::string(r.status().message());
}

TEST(OpenAiRequestTest, CompletionFieldsMapOntoSamplingParams) {
  auto r = ParseCompletionRequest(R"({"model":"m","prompt":"hi","max_tokens":7,"temperature":0.5,
      "top_p":0.9,"top_k":5,"min_p":0.1,"presence_penalty":0.2,"frequency_penalty":-0.3,
      "repetition_penalty":1.1,"seed":-3,"stop":["a","b"],"logprobs":2,"n":3,"stream":true,
      "stream_options":{"include_usage":true},"logit_bias":{"17":-5},"ignore_eos":true,
      "user":"u","unknown_field":{"x":1}})");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->model, "m");
  EXPECT_EQ(r->n, 3);
  EXPECT_TRUE(r->stream);
  EXPECT_TRUE(r->include_usage);
  EXPECT_EQ(r->logprobs, 2);
  ASSERT_EQ(r->prompts.size(), 1u);
  const auto& p = r->prompts[0].sampling_params();
  EXPECT_EQ(r->prompts[0].text(), "hi");
  EXPECT_EQ(p.max_tokens(), 7u);
  EXPECT_FLOAT_EQ(p.temperature(), 0.5f);
  EXPECT_FLOAT_EQ(p.top_p(), 0.9f);
  EXPECT_EQ(p.top_k(), 5);
  EXPECT_FLOAT_EQ(p.min_p(), 0.1f);
  EXPECT_FLOAT_EQ(p.frequency_penalty(), -0.3f);
  EXPECT_FLOAT_EQ(p.repetition_penalty(), 1.1f);
  EXPECT_EQ(p.seed(), static_cast<uint64_t>(-3));
  EXPECT_EQ(p.stop_size(), 2);
  EXPECT_EQ(p.logprobs(), 2);
  EXPECT_FLOAT_EQ(p.logit_bias().at(17), -5.0f);
  EXPECT_TRUE(p.ignore_eos());
}

TEST(OpenAiRequestTest, UnsetAndNullFieldsStayUnset) {
  auto r = ParseCompletionRequest(R"({"prompt":"hi","temperature":null,"top_p":null})");
  ASSERT_TRUE(r.ok()) << r.status();
  const auto& p = r->prompts[0].sampling_params();
  EXPECT_FALSE(p.has_temperature());
  EXPECT_FALSE(p.has_top_p());
  EXPECT_FALSE(p.has_top_k());
  EXPECT_FALSE(p.has_max_tokens());
  EXPECT_FALSE(p.has_logprobs());
  EXPECT_EQ(r->logprobs, -1);
}

TEST(OpenAiRequestTest, PromptsInEveryForm) {
  auto tokens = ParseCompletionRequest(R"({"prompt":[1,2,3]})");
  ASSERT_TRUE(tokens.ok()) << tokens.status();
  ASSERT_EQ(tokens->prompts.size(), 1u);
  EXPECT_EQ(tokens->prompts[0].tokenized().input_ids_size(), 3);
  auto list = ParseCompletionRequest(R"({"prompt":["a",[4,5],"c"]})");
  ASSERT_TRUE(list.ok()) << list.status();
  ASSERT_EQ(list->prompts.size(), 3u);
  EXPECT_EQ(list->prompts[0].text(), "a");
  EXPECT_EQ(list->prompts[1].tokenized().input_ids(1), 5u);
  EXPECT_EQ(list->prompts[2].text(), "c");
}

TEST(OpenAiRequestTest, TypeErrorsNameTheField) {
  EXPECT_EQ(Error(ParseCompletionRequest(R"({"prompt":"x","temperature":"hot"})")),
            "temperature must be a number, got string");
  EXPECT_EQ(Error(ParseCompletionRequest(R"({"prompt":"x","max_tokens":1.5})")),
            "max_tokens must be an integer, got number");
  EXPECT_EQ(Error(ParseCompletionRequest(R"({"prompt":"x","max_tokens":0})")),
            "max_tokens must be >= 1, got 0");
  EXPECT_EQ(Error(ParseCompletionRequest(R"({"prompt":"x","n":0})")),
            "n must be in [1, 128], got 0");
  EXPECT_EQ(Error(ParseCompletionRequest(R"({"prompt":[1,-2]})")),
            "prompt[1] must be a token id (an integer >= 0), got -2");
  EXPECT_EQ(Error(ParseCompletionRequest(R"({"prompt":["a",7]})")),
            "prompt[1] must be a string or a list of token ids, got integer");
  EXPECT_EQ(Error(ParseCompletionRequest(R"({"prompt":"x","stop":[1]})")),
            "stop[0] must be a string, got integer");
  EXPECT_EQ(Error(ParseCompletionRequest(R"({"prompt":"x","logit_bias":{"a":1}})")),
            "logit_bias: key \"a\" is not a token id");
  EXPECT_EQ(
      Error(ParseCompletionRequest(R"({"prompt":"x","stream_options":{"include_usage":true}})")),
      "stream_options is only allowed with stream: true");
  EXPECT_EQ(Error(ParseCompletionRequest(R"({"temperature":1})")), "prompt is required");
  EXPECT_EQ(Error(ParseCompletionRequest(R"({"prompt":"x","echo":true})")),
            "echo is not supported");
  EXPECT_THAT(Error(ParseCompletionRequest("{\"prompt\": ")), HasSubstr("not valid JSON"));
  EXPECT_EQ(Error(ParseCompletionRequest("[1]")), "the body must be a JSON object");
  std::string many = R"({"n":128,"prompt":[)";
  for (int i = 0; i < 5; ++i) many += std::string(i ? "," : "") + "\"p\"";
  EXPECT_EQ(Error(ParseCompletionRequest(many + "]}")),
            "n: 5 prompts × n = 128 asks for 640 sequences; at most 512 per request");
}

TEST(OpenAiRequestTest, ChatMessagesAndOptions) {
  auto r = ParseChatRequest(R"({"messages":[{"role":"system","content":"be brief"},
      {"role":"user","content":[{"type":"text","text":"a"},{"type":"text","text":"b"}]},
      {"role":"assistant","content":null,"tool_calls":[{"id":"1"}]},
      {"role":"tool","content":"42","tool_call_id":"1"}],
      "max_completion_tokens":9,"logprobs":true,"top_logprobs":3,
      "chat_template_kwargs":{"thinking":true}})");
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->messages.size(), 4u);
  EXPECT_EQ(r->messages[1]["content"], "a\nb");
  EXPECT_TRUE(r->messages[2]["content"].is_null());
  EXPECT_EQ(r->messages[2]["tool_calls"][0]["id"], "1");
  EXPECT_EQ(r->logprobs, 3);
  EXPECT_EQ(r->prompts[0].sampling_params().max_tokens(), 9u);
  EXPECT_FALSE(r->prompts[0].add_special_tokens());  // the template renders BOS
  EXPECT_EQ(r->chat_template_kwargs["thinking"], true);
  EXPECT_TRUE(r->add_generation_prompt);

  EXPECT_EQ(Error(ParseChatRequest(R"({"messages":[]})")), "messages must not be empty");
  EXPECT_EQ(Error(ParseChatRequest(R"({"messages":[{"role":"robot","content":"x"}]})")),
            "messages[0].role must be system, user, assistant or tool, got \"robot\"");
  EXPECT_EQ(Error(ParseChatRequest(R"({"messages":[{"role":"user"}]})")),
            "messages[0].content is required");
  EXPECT_EQ(
      Error(ParseChatRequest(R"({"messages":[{"role":"user","content":[{"type":"image_url"}]}]})")),
      "messages[0].content[0].type \"image_url\" is not supported (this model reads text "
      "only)");
  EXPECT_EQ(
      Error(ParseChatRequest(R"({"messages":[{"role":"user","content":"x"}],"top_logprobs":2})")),
      "top_logprobs requires logprobs: true");
}

TEST(OpenAiRequestTest, ValidationMessagesUseOpenAiFieldNames) {
  auto m = ToOpenAiFieldMessage("sampling_params.top_p must be in (0, 1], got 1.5",
                                OpenAiApi::kCompletions, false, 0);
  EXPECT_EQ(m.message, "top_p must be in (0, 1], got 1.5");
  EXPECT_EQ(m.param, "top_p");
  m = ToOpenAiFieldMessage("sampling_params.logprobs must be in [0, 20], got 30", OpenAiApi::kChat,
                           false, 0);
  EXPECT_EQ(m.param, "top_logprobs");
  m = ToOpenAiFieldMessage("tokenized.input_ids[3] = 99999 is out of range [0, 100)",
                           OpenAiApi::kCompletions, true, 2);
  EXPECT_EQ(m.message, "prompt[2][3] = 99999 is out of range [0, 100)");
  m = ToOpenAiFieldMessage(
      "sampling_params.max_tokens (50) + the prompt (12 tokens of text) exceeds the context "
      "length 60",
      OpenAiApi::kChat, false, 0);
  EXPECT_EQ(m.message,
            "max_completion_tokens (50) + the prompt (12 tokens of messages) exceeds the context "
            "length 60");
  EXPECT_EQ(m.param, "max_completion_tokens");
}

}  // namespace
}  // namespace moeserve::server
