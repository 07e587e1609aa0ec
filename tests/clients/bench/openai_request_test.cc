// The openai backends' side of the wire without a server: the request bodies vLLM's client
// sends, the base URL spellings accepted, and the model taken from /v1/models.
#include "clients/bench/openai_request.h"

#include "clients/bench/openai_http.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace moeserve::bench {
namespace {

nlohmann::json Body(const BenchPrompt& prompt, const OpenAiRequestOptions& options) {
  absl::StatusOr<std::string> body = BuildOpenAiBody(prompt, options);
  EXPECT_TRUE(body.ok()) << body.status();
  return body.ok() ? nlohmann::json::parse(*body) : nlohmann::json();
}

TEST(OpenAiBodyTest, CompletionsCarryTextOrIdsStreamWithUsageAndOnlyTheSamplingGiven) {
  OpenAiRequestOptions options{.model = "m"};
  const nlohmann::json text = Body({.text = "hello", .output_len = 9}, options);
  EXPECT_EQ(text["model"], "m");
  EXPECT_EQ(text["prompt"], "hello");
  EXPECT_EQ(text["max_tokens"], 9);
  EXPECT_EQ(text["stream"], true);
  EXPECT_EQ(text["stream_options"]["include_usage"], true);
  for (const char* unset : {"temperature", "top_p", "top_k", "seed", "ignore_eos", "messages"}) {
    EXPECT_FALSE(text.contains(unset)) << unset;
  }

  options.ignore_eos = true;
  options.sampling.temperature = 0.5;
  options.sampling.top_k = 3;
  options.sampling.seed = 42;
  const nlohmann::json ids = Body({.token_ids = {4, 5, 6}, .output_len = 2}, options);
  EXPECT_EQ(ids["prompt"], (std::vector<uint32_t>{4, 5, 6}));
  EXPECT_EQ(ids["ignore_eos"], true);
  EXPECT_EQ(ids["temperature"], 0.5);
  EXPECT_EQ(ids["top_k"], 3);
  EXPECT_EQ(ids["seed"], 42);
}

TEST(OpenAiBodyTest, ChatSendsOneUserMessageAndBothMaxTokenNames) {
  const OpenAiRequestOptions options{
      .endpoint = OpenAiEndpoint::kChatCompletions, .model = "m", .ignore_eos = true};
  const nlohmann::json chat = Body({.text = "hi there", .output_len = 7}, options);
  ASSERT_EQ(chat["messages"].size(), 1u);
  EXPECT_EQ(chat["messages"][0]["role"], "user");
  EXPECT_EQ(chat["messages"][0]["content"], "hi there");
  EXPECT_EQ(chat["max_completion_tokens"], 7);
  EXPECT_EQ(chat["max_tokens"], 7);
  EXPECT_FALSE(chat.contains("prompt"));
  EXPECT_EQ(chat["ignore_eos"], true);
  EXPECT_STREQ(OpenAiPath(OpenAiEndpoint::kChatCompletions), "/v1/chat/completions");
  EXPECT_STREQ(OpenAiPath(OpenAiEndpoint::kCompletions), "/v1/completions");
  // Ids cannot be a chat message.
  EXPECT_FALSE(BuildOpenAiBody({.token_ids = {1}, .output_len = 1}, options).ok());
}

TEST(OpenAiHttpTest, BaseUrlLosesTrailingSlashesAndV1AndNeedsAScheme) {
  EXPECT_EQ(*NormalizeBaseUrl("http://h:8000"), "http://h:8000");
  EXPECT_EQ(*NormalizeBaseUrl("http://h:8000/"), "http://h:8000");
  EXPECT_EQ(*NormalizeBaseUrl("https://h/v1/"), "https://h");
  EXPECT_EQ(*NormalizeBaseUrl("http://h:8000/proxy/v1"), "http://h:8000/proxy");
  EXPECT_FALSE(NormalizeBaseUrl("h:8000").ok());
}

TEST(OpenAiHttpTest, ModelListGivesTheFirstOrTheNamedModelWithItsContext) {
  const std::string vllm =
      R"({"object":"list","data":[{"id":"a","max_model_len":4096},{"id":"b"}]})";
  EXPECT_EQ(ParseModelList(vllm, "")->id, "a");
  EXPECT_EQ(ParseModelList(vllm, "")->max_model_len, 4096);
  EXPECT_EQ(ParseModelList(vllm, "b")->id, "b");
  EXPECT_EQ(ParseModelList(vllm, "b")->max_model_len, 0);
  EXPECT_EQ(ParseModelList(vllm, "alias")->id, "alias");  // not listed: sent as asked
  const std::string llama = R"({"data":[{"id":"g.gguf","meta":{"n_ctx_train":8192}}]})";
  EXPECT_EQ(ParseModelList(llama, "")->max_model_len, 8192);
  EXPECT_FALSE(ParseModelList(R"({"data":[]})", "").ok());
  EXPECT_FALSE(ParseModelList("not json", "").ok());
}

}  // namespace
}  // namespace moeserve::bench
