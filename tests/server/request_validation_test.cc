// ValidateGenerateRequest: every bad field is INVALID_ARGUMENT with a message that starts with
// the field's path, and good requests map to the engine values they mean (proto3-optional
// defaults included). Also the request-id, Tokenize and Abort checks.
#include "server/request_validation.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <limits>
#include <memory>
#include <random>
#include <string>

#include "absl/strings/str_cat.h"
#include "google/protobuf/unknown_field_set.h"
#include "nlohmann/json.hpp"
#include "tests/testing/test_checkpoints.h"

namespace moeserve::server {
namespace {

namespace v1 = moeserve::v1;

constexpr int64_t kVocab = 512;  // tiny-v3
constexpr int64_t kMaxModelLen = 64;
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
constexpr float kInf = std::numeric_limits<float>::infinity();

class RequestValidationTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto tokenizer =
        engine::Tokenizer::Load(moeserve::testing::TestCheckpointDir("tiny-v3", false));
    ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
    tokenizer_ = tokenizer->release();
  }
  static void TearDownTestSuite() { delete tokenizer_; }

  static RequestLimits Limits() {
    return {.vocab_size = kVocab, .max_model_len = kMaxModelLen, .eos_token_ids = {1}};
  }
  static absl::StatusOr<engine::GenerateRequest> Validate(const v1::GenerateRequest& r) {
    return ValidateGenerateRequest(r, *tokenizer_, Limits());
  }
  static v1::GenerateRequest TextRequest(const std::string& text = "Hello world") {
    v1::GenerateRequest r;
    r.set_text(text);
    return r;
  }
  static v1::GenerateRequest TokenRequest(int num_tokens) {
    v1::GenerateRequest r;
    for (int i = 0; i < num_tokens; ++i) r.mutable_tokenized()->add_input_ids(10 + i);
    return r;
  }

  static engine::Tokenizer* tokenizer_;
};

engine::Tokenizer* RequestValidationTest::tokenizer_ = nullptr;

struct BadCase {
  const char* name;
  std::function<void(v1::GenerateRequest&)> mutate;  // applied to a valid text request
  const char* field;                                 // the message must start with this
};

std::vector<BadCase> BadCases() {
  using R = v1::GenerateRequest;
  auto sp = [](R& r) { return r.mutable_sampling_params(); };
  return {
      {"NoInput", [](R& r) { r.clear_input(); }, "input"},
      {"EmptyText", [](R& r) { r.set_text(""); }, "text"},
      {"InvalidUtf8Text", [](R& r) { r.set_text("ab\xff\xfe"); }, "text"},
      {"TextLongerThanContext",
       [](R& r) {
         std::string text;
         for (int i = 0; i < 2 * kMaxModelLen; ++i) absl::StrAppend(&text, " word", i);
         r.set_text(text);
       },
       "text"},
      {"EmptyTokenized", [](R& r) { r.mutable_tokenized(); }, "tokenized.input_ids"},
      {"TokenIdOutOfVocab",
       [](R& r) {
         r.mutable_tokenized()->add_input_ids(5);
         r.mutable_tokenized()->add_input_ids(kVocab);
       },
       "tokenized.input_ids[1]"},
      {"TokenIdHuge", [](R& r) { r.mutable_tokenized()->add_input_ids(0xFFFFFFFFu); },
       "tokenized.input_ids[0]"},
      {"TokenizedOriginalTextInvalidUtf8",
       [](R& r) {
         r.mutable_tokenized()->add_input_ids(5);
         r.mutable_tokenized()->set_original_text("\xc3");
       },
       "tokenized.original_text"},
      {"PromptFillsContext",
       [](R& r) {
         for (int i = 0; i < kMaxModelLen; ++i) r.mutable_tokenized()->add_input_ids(7);
       },
       "tokenized.input_ids"},
      {"TemperatureNegative", [&](R& r) { sp(r)->set_temperature(-0.5f); },
       "sampling_params.temperature"},
      {"TemperatureNaN", [&](R& r) { sp(r)->set_temperature(kNaN); },
       "sampling_params.temperature"},
      {"TemperatureInf", [&](R& r) { sp(r)->set_temperature(kInf); },
       "sampling_params.temperature"},
      {"TopPZero", [&](R& r) { sp(r)->set_top_p(0.0f); }, "sampling_params.top_p"},
      {"TopPAboveOne", [&](R& r) { sp(r)->set_top_p(1.5f); }, "sampling_params.top_p"},
      {"TopPNaN", [&](R& r) { sp(r)->set_top_p(kNaN); }, "sampling_params.top_p"},
      {"TopKZero", [&](R& r) { sp(r)->set_top_k(0); }, "sampling_params.top_k"},
      {"TopKBelowMinusOne", [&](R& r) { sp(r)->set_top_k(-2); }, "sampling_params.top_k"},
      {"MinPNegative", [&](R& r) { sp(r)->set_min_p(-0.1f); }, "sampling_params.min_p"},
      {"MinPAboveOne", [&](R& r) { sp(r)->set_min_p(1.01f); }, "sampling_params.min_p"},
      {"RepetitionPenaltyZero", [&](R& r) { sp(r)->set_repetition_penalty(0.0f); },
       "sampling_params.repetition_penalty"},
      {"RepetitionPenaltyNaN", [&](R& r) { sp(r)->set_repetition_penalty(kNaN); },
       "sampling_params.repetition_penalty"},
      {"FrequencyPenaltyTooLarge", [&](R& r) { sp(r)->set_frequency_penalty(2.5f); },
       "sampling_params.frequency_penalty"},
      {"PresencePenaltyTooSmall", [&](R& r) { sp(r)->set_presence_penalty(-3.0f); },
       "sampling_params.presence_penalty"},
      {"PresencePenaltyInf", [&](R& r) { sp(r)->set_presence_penalty(-kInf); },
       "sampling_params.presence_penalty"},
      {"MaxTokensZero", [&](R& r) { sp(r)->set_max_tokens(0); }, "sampling_params.max_tokens"},
      {"MaxTokensBeyondContext", [&](R& r) { sp(r)->set_max_tokens(kMaxModelLen); },
       "sampling_params.max_tokens"},
      {"MinTokensAboveMaxTokens",
       [&](R& r) {
         sp(r)->set_max_tokens(4);
         sp(r)->set_min_tokens(5);
       },
       "sampling_params.min_tokens"},
      {"MinTokensAboveDefaultMaxTokens", [&](R& r) { sp(r)->set_min_tokens(17); },
       "sampling_params.min_tokens"},
      {"TooManyStopStrings",
       [&](R& r) {
         for (int i = 0; i < 17; ++i) sp(r)->add_stop(absl::StrCat("s", i));
       },
       "sampling_params.stop"},
      {"EmptyStopString",
       [&](R& r) {
         sp(r)->add_stop("ok");
         sp(r)->add_stop("");
       },
       "sampling_params.stop[1]"},
      {"StopStringTooLong", [&](R& r) { sp(r)->add_stop(std::string(257, 'a')); },
       "sampling_params.stop[0]"},
      {"StopStringInvalidUtf8", [&](R& r) { sp(r)->add_stop("\xe2\x82"); },
       "sampling_params.stop[0]"},
      {"StopTokenIdOutOfVocab", [&](R& r) { sp(r)->add_stop_token_ids(kVocab + 100); },
       "sampling_params.stop_token_ids[0]"},
      {"LogprobsTooMany", [&](R& r) { sp(r)->set_logprobs(21); }, "sampling_params.logprobs"},
      {"LogprobsNegative", [&](R& r) { sp(r)->set_logprobs(-1); }, "sampling_params.logprobs"},
      {"LogitBiasTokenOutOfVocab", [&](R& r) { (*sp(r)->mutable_logit_bias())[kVocab] = 1.0f; },
       "sampling_params.logit_bias"},
      {"LogitBiasTooLarge", [&](R& r) { (*sp(r)->mutable_logit_bias())[5] = 100.5f; },
       "sampling_params.logit_bias[5]"},
      {"LogitBiasNaN", [&](R& r) { (*sp(r)->mutable_logit_bias())[5] = kNaN; },
       "sampling_params.logit_bias[5]"},
      {"RequestIdTooLong", [](R& r) { r.set_request_id(std::string(257, 'a')); }, "request_id"},
      {"RequestIdNotPrintable", [](R& r) { r.set_request_id("a\nb"); }, "request_id"},
      {"UnknownTopLevelField",
       [](R& r) { r.GetReflection()->MutableUnknownFields(&r)->AddVarint(99, 1); },
       "GenerateRequest"},
      {"UnknownSamplingField",
       [&](R& r) {
         v1::SamplingParams* p = sp(r);
         p->GetReflection()->MutableUnknownFields(p)->AddVarint(42, 1);
       },
       "sampling_params"},
  };
}

TEST_F(RequestValidationTest, EveryBadFieldIsInvalidArgumentNamingTheField) {
  const std::vector<BadCase> cases = BadCases();
  ASSERT_GE(cases.size(), 25u);
  for (const BadCase& c : cases) {
    v1::GenerateRequest request = TextRequest();
    c.mutate(request);
    const auto result = Validate(request);
    ASSERT_FALSE(result.ok()) << c.name;
    EXPECT_EQ(result.status().code(), absl::StatusCode::kInvalidArgument) << c.name;
    const std::string message(result.status().message());
    EXPECT_EQ(message.rfind(c.field, 0), 0u)
        << c.name << ": message does not start with '" << c.field << "': " << message;
  }
}

TEST_F(RequestValidationTest, TopPZeroMessageIsExact) {
  v1::GenerateRequest request = TextRequest();
  request.mutable_sampling_params()->set_top_p(0.0f);
  EXPECT_EQ(Validate(request).status().message(), "sampling_params.top_p must be in (0, 1], got 0");
}

// Issue 21, row 12: "got 1" for 1.0000001 hid the value that was wrong. Every float field's
// message carries text that reads back as exactly the value sent, for random values just past
// each bound (where a 6-digit rendering collapses onto the bound).
TEST_F(RequestValidationTest, MessagesCarryTheExactOffendingValue) {
  std::mt19937 random(std::random_device{}());
  auto just_past = [&random](float bound, float direction) {
    float v = bound;
    const int steps = std::uniform_int_distribution<int>(1, 40)(random);
    for (int i = 0; i < steps; ++i) v = std::nextafter(v, direction * kInf);
    return v;
  };
  struct FloatField {
    const char* name;
    float bound, direction;
    std::function<void(v1::GenerateRequest&, float)> set;
  };
  const std::vector<FloatField> fields = {
      {"top_p", 1.0f, 1.0f, [](auto& r, float v) { r.mutable_sampling_params()->set_top_p(v); }},
      {"min_p", 1.0f, 1.0f, [](auto& r, float v) { r.mutable_sampling_params()->set_min_p(v); }},
      {"temperature", 0.0f, -1.0f,
       [](auto& r, float v) { r.mutable_sampling_params()->set_temperature(v); }},
      {"frequency_penalty", engine::kMaxAdditivePenalty, 1.0f,
       [](auto& r, float v) { r.mutable_sampling_params()->set_frequency_penalty(v); }},
      {"presence_penalty", -engine::kMaxAdditivePenalty, -1.0f,
       [](auto& r, float v) { r.mutable_sampling_params()->set_presence_penalty(v); }},
      {"logit_bias", engine::kMaxLogitBias, 1.0f,
       [](auto& r, float v) { (*r.mutable_sampling_params()->mutable_logit_bias())[7] = v; }},
  };
  for (const FloatField& field : fields) {
    for (int trial = 0; trial < 20; ++trial) {
      const float value = just_past(field.bound, field.direction);
      v1::GenerateRequest r = TextRequest();
      field.set(r, value);
      const absl::StatusOr<engine::GenerateRequest> result = Validate(r);
      ASSERT_FALSE(result.ok()) << field.name << " = " << value;
      const std::string message(result.status().message());
      const size_t got = message.rfind("got ");
      ASSERT_NE(got, std::string::npos) << message;
      const float read_back = std::strtof(message.c_str() + got + 4, nullptr);
      EXPECT_EQ(read_back, value) << field.name << ": " << message;
    }
  }
}

TEST_F(RequestValidationTest, AbsentFieldsTakeTheDocumentedDefaults) {
  const auto request = Validate(TextRequest());
  ASSERT_TRUE(request.ok()) << request.status();
  EXPECT_EQ(request->request_id, "");  // the service assigns one
  EXPECT_EQ(request->sampling.temperature, 1.0f);
  EXPECT_EQ(request->sampling.top_p, 1.0f);
  EXPECT_EQ(request->sampling.top_k, -1);
  EXPECT_EQ(request->sampling.min_p, 0.0f);
  EXPECT_EQ(request->sampling.repetition_penalty, 1.0f);
  EXPECT_EQ(request->sampling.frequency_penalty, 0.0f);
  EXPECT_EQ(request->sampling.presence_penalty, 0.0f);
  EXPECT_EQ(request->sampling.num_logprobs, -1);
  EXPECT_FALSE(request->sampling.seed.has_value());
  EXPECT_TRUE(request->sampling.logit_bias.empty());
  EXPECT_EQ(request->stop.max_new_tokens, 16);
  EXPECT_EQ(request->stop.min_new_tokens, 0);
  EXPECT_TRUE(request->stop.stop_strings.empty());
  EXPECT_TRUE(request->stop.stop_token_ids.empty());
  EXPECT_EQ(request->stop.eos_token_ids, std::vector<int32_t>{1});
  EXPECT_FALSE(request->stop.ignore_eos);
  EXPECT_FALSE(request->stop.include_stop_string);
  EXPECT_TRUE(request->skip_special_tokens);
  EXPECT_EQ(request->priority, 0);
}

// Issue 22, item 5: fields a request leaves unset take generation_config.json's values; fields it
// sets win; max_tokens' default is max_new_tokens, capped by the room left in the context.
TEST_F(RequestValidationTest, GenerationDefaultsFillOnlyUnsetFields) {
  RequestLimits limits = Limits();
  limits.generation_defaults = {.temperature = 0.7f,
                                .top_p = 0.95f,
                                .top_k = 40,
                                .min_p = 0.05f,
                                .repetition_penalty = 1.1f,
                                .max_new_tokens = 20};
  const auto defaulted = ValidateGenerateRequest(TextRequest(), *tokenizer_, limits);
  ASSERT_TRUE(defaulted.ok()) << defaulted.status();
  EXPECT_EQ(defaulted->sampling.temperature, 0.7f);
  EXPECT_EQ(defaulted->sampling.top_p, 0.95f);
  EXPECT_EQ(defaulted->sampling.top_k, 40);
  EXPECT_EQ(defaulted->sampling.min_p, 0.05f);
  EXPECT_EQ(defaulted->sampling.repetition_penalty, 1.1f);
  EXPECT_EQ(defaulted->stop.max_new_tokens, 20);

  v1::GenerateRequest explicit_request = TextRequest();
  auto* p = explicit_request.mutable_sampling_params();
  p->set_temperature(0.0f);  // explicit zero is a value, not "unset"
  p->set_top_p(1.0f);
  p->set_top_k(-1);
  p->set_min_p(0.0f);
  p->set_repetition_penalty(1.0f);
  p->set_max_tokens(3);
  const auto given = ValidateGenerateRequest(explicit_request, *tokenizer_, limits);
  ASSERT_TRUE(given.ok()) << given.status();
  EXPECT_EQ(given->sampling.temperature, 0.0f);
  EXPECT_EQ(given->sampling.top_p, 1.0f);
  EXPECT_EQ(given->sampling.top_k, -1);
  EXPECT_EQ(given->sampling.min_p, 0.0f);
  EXPECT_EQ(given->sampling.repetition_penalty, 1.0f);
  EXPECT_EQ(given->stop.max_new_tokens, 3);

  limits.generation_defaults.max_new_tokens = 100000;  // more than the context leaves
  const auto capped = ValidateGenerateRequest(TokenRequest(10), *tokenizer_, limits);
  ASSERT_TRUE(capped.ok()) << capped.status();
  EXPECT_EQ(capped->stop.max_new_tokens, kMaxModelLen - 10);
}

TEST_F(RequestValidationTest, TextIsTokenizedWithSpecialTokensByDefault) {
  const auto with = Validate(TextRequest("In the beginning"));
  ASSERT_TRUE(with.ok()) << with.status();
  EXPECT_EQ(with->prompt_token_ids, *tokenizer_->Encode("In the beginning", true));

  v1::GenerateRequest request = TextRequest("In the beginning");
  request.set_add_special_tokens(false);
  const auto without = Validate(request);
  ASSERT_TRUE(without.ok()) << without.status();
  EXPECT_EQ(without->prompt_token_ids, *tokenizer_->Encode("In the beginning", false));
  EXPECT_NE(with->prompt_token_ids, without->prompt_token_ids);  // BOS
}

TEST_F(RequestValidationTest, TokenizedInputIsUsedAsGiven) {
  v1::GenerateRequest request = TokenRequest(3);
  request.mutable_tokenized()->set_original_text("whatever");
  const auto result = Validate(request);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->prompt_token_ids, (std::vector<int32_t>{10, 11, 12}));
}

TEST_F(RequestValidationTest, ExplicitValuesReachTheEngine) {
  v1::GenerateRequest request = TokenRequest(4);
  request.set_request_id("client-id-1");
  request.set_priority(-5);
  v1::SamplingParams* p = request.mutable_sampling_params();
  p->set_temperature(0.0f);
  p->set_top_p(0.5f);
  p->set_top_k(5);
  p->set_min_p(0.1f);
  p->set_repetition_penalty(1.2f);
  p->set_frequency_penalty(-2.0f);
  p->set_presence_penalty(2.0f);
  p->set_max_tokens(10);
  p->set_min_tokens(3);
  p->add_stop("\n\n");
  p->add_stop("END");
  p->add_stop_token_ids(7);
  p->set_ignore_eos(true);
  p->set_include_stop_str_in_output(true);
  p->set_logprobs(20);
  p->set_seed(0xFFFFFFFFFFFFFFFFull);
  (*p->mutable_logit_bias())[9] = -100.0f;
  (*p->mutable_logit_bias())[3] = 2.5f;
  p->set_skip_special_tokens(false);
  const auto r = Validate(request);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->request_id, "client-id-1");
  EXPECT_EQ(r->priority, -5);
  EXPECT_TRUE(r->sampling.greedy());
  EXPECT_EQ(r->sampling.top_p, 0.5f);
  EXPECT_EQ(r->sampling.top_k, 5);
  EXPECT_EQ(r->sampling.min_p, 0.1f);
  EXPECT_EQ(r->sampling.repetition_penalty, 1.2f);
  EXPECT_EQ(r->sampling.frequency_penalty, -2.0f);
  EXPECT_EQ(r->sampling.presence_penalty, 2.0f);
  EXPECT_EQ(r->sampling.num_logprobs, 20);
  EXPECT_EQ(r->sampling.seed, 0xFFFFFFFFFFFFFFFFull);
  // Sorted by token id, whatever the map's order.
  EXPECT_EQ(r->sampling.logit_bias,
            (std::vector<std::pair<int32_t, float>>{{3, 2.5f}, {9, -100.0f}}));
  EXPECT_EQ(r->stop.max_new_tokens, 10);
  EXPECT_EQ(r->stop.min_new_tokens, 3);
  EXPECT_EQ(r->stop.stop_strings, (std::vector<std::string>{"\n\n", "END"}));
  EXPECT_EQ(r->stop.stop_token_ids, std::vector<int32_t>{7});
  EXPECT_TRUE(r->stop.ignore_eos);
  EXPECT_TRUE(r->stop.eos_token_ids.empty());
  EXPECT_TRUE(r->stop.include_stop_string);
  EXPECT_FALSE(r->skip_special_tokens);
}

TEST_F(RequestValidationTest, LogprobsZeroMeansChosenTokenOnly) {
  v1::GenerateRequest request = TextRequest();
  request.mutable_sampling_params()->set_logprobs(0);
  const auto r = Validate(request);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->sampling.num_logprobs, 0);
}

TEST_F(RequestValidationTest, DefaultMaxTokensIsCappedByTheContext) {
  const auto r = Validate(TokenRequest(kMaxModelLen - 4));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->stop.max_new_tokens, 4);
}

TEST_F(RequestValidationTest, MaxTokensMayFillTheContextExactly) {
  v1::GenerateRequest request = TokenRequest(10);
  request.mutable_sampling_params()->set_max_tokens(kMaxModelLen - 10);
  const auto ok = Validate(request);
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ(ok->stop.max_new_tokens, kMaxModelLen - 10);
  request.mutable_sampling_params()->set_max_tokens(kMaxModelLen - 9);
  const auto too_many = Validate(request);
  EXPECT_EQ(too_many.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(too_many.status().message().find("exceeds the context length 64"),
            absl::string_view::npos)
      << too_many.status();
}

TEST_F(RequestValidationTest, BoundaryValuesAreAccepted) {
  v1::GenerateRequest request = TextRequest();
  v1::SamplingParams* p = request.mutable_sampling_params();
  p->set_top_p(1.0f);
  p->set_min_p(1.0f);
  p->set_top_k(-1);
  p->set_frequency_penalty(2.0f);
  p->set_presence_penalty(-2.0f);
  p->set_max_tokens(1);
  p->set_min_tokens(1);
  p->add_stop(std::string(256, 'a'));
  p->add_stop_token_ids(kVocab - 1);
  (*p->mutable_logit_bias())[kVocab - 1] = 100.0f;
  request.set_request_id(std::string(256, '~'));
  request.set_priority(std::numeric_limits<int32_t>::min());
  EXPECT_TRUE(Validate(request).ok()) << Validate(request).status();
}

TEST(RequestIdTest, ChecksLengthAndPrintableAscii) {
  EXPECT_TRUE(ValidateRequestId("", "request_id", /*allow_empty=*/true).ok());
  EXPECT_EQ(ValidateRequestId("", "request_ids[0]", false).message(),
            "request_ids[0] must not be empty");
  EXPECT_TRUE(ValidateRequestId("abc-123_X ~", "request_id", false).ok());
  EXPECT_EQ(ValidateRequestId(std::string(257, 'a'), "request_id", false).message(),
            "request_id must be at most 256 bytes, got 257");
  EXPECT_EQ(ValidateRequestId("caf\xc3\xa9", "request_id", false).message(),
            "request_id must be printable ASCII, got byte 195 at offset 3");
}

TEST(AbortValidationTest, EveryIdMustBeValid) {
  v1::AbortRequest request;
  EXPECT_TRUE(ValidateAbortRequest(request).ok());  // nothing to abort is fine
  request.add_request_ids("a");
  request.add_request_ids("");
  const absl::Status status = ValidateAbortRequest(request);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(status.message(), "request_ids[1] must not be empty");
}

TEST_F(RequestValidationTest, TokenizeChecksUtf8AndHonoursAddSpecialTokens) {
  v1::TokenizeRequest request;
  request.set_text("Hello");
  EXPECT_EQ(*ValidateTokenizeRequest(request, *tokenizer_), *tokenizer_->Encode("Hello", true));
  request.set_add_special_tokens(false);
  EXPECT_EQ(*ValidateTokenizeRequest(request, *tokenizer_), *tokenizer_->Encode("Hello", false));
  request.set_text("\xff");
  const auto bad = ValidateTokenizeRequest(request, *tokenizer_);
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(bad.status().message().rfind("text", 0), 0u) << bad.status();
}

// GenerateRequest.chat: rendered by the checkpoint's template (the oracle tests of
// tests/engine/chat/ pin the rendering against transformers), tokenized without BOS added.
class ChatInputValidationTest : public RequestValidationTest {
 protected:
  static void SetUpTestSuite() {
    RequestValidationTest::SetUpTestSuite();
    auto loaded = engine::ChatTemplate::LoadFromModelDir(
        moeserve::testing::TestCheckpointDir("tiny-v3", false));
    ASSERT_TRUE(loaded.ok()) << loaded.status();
    template_ = new engine::ChatTemplate(*std::move(loaded));
  }
  static void TearDownTestSuite() {
    delete template_;
    RequestValidationTest::TearDownTestSuite();
  }
  static RequestLimits ChatLimits() {
    RequestLimits limits = Limits();
    limits.max_model_len = 4096;
    limits.chat_template = template_;
    return limits;
  }
  static engine::ChatTemplate* template_;
};

engine::ChatTemplate* ChatInputValidationTest::template_ = nullptr;

TEST_F(ChatInputValidationTest, MessagesAreRenderedAndTokenizedWithoutAddingBos) {
  v1::GenerateRequest r;
  v1::ChatInput& chat = *r.mutable_chat();
  auto add = [&](const char* role, const char* content) {
    v1::ChatMessage& m = *chat.add_messages();
    m.set_role(role);
    m.set_content(content);
    return &m;
  };
  add("system", "Be brief.");
  add("user", "Who made the light?");
  v1::ChatMessage* call = add("assistant", "");
  call->set_tool_calls_json(
      R"([{"type":"function","function":{"name":"lookup","arguments":"{\"q\": \"light\"}"}}])");
  add("tool", "God")->set_tool_call_id("1");
  absl::StatusOr<engine::GenerateRequest> got =
      ValidateGenerateRequest(r, *tokenizer_, ChatLimits());
  ASSERT_TRUE(got.ok()) << got.status();

  nlohmann::ordered_json messages = nlohmann::ordered_json::parse(R"([
      {"role":"system","content":"Be brief."},
      {"role":"user","content":"Who made the light?"},
      {"role":"assistant","content":"","tool_calls":[{"type":"function","function":{"name":"lookup","arguments":"{\"q\": \"light\"}"}}]},
      {"role":"tool","content":"God","tool_call_id":"1"}])");
  absl::StatusOr<std::string> text = template_->Render(messages, {.add_generation_prompt = true});
  ASSERT_TRUE(text.ok()) << text.status();
  auto want = tokenizer_->Encode(*text, /*add_special_tokens=*/false);
  ASSERT_TRUE(want.ok());
  EXPECT_EQ(got->prompt_token_ids, *want);
  // The template itself starts with BOS: exactly one.
  ASSERT_TRUE(tokenizer_->bos_token_id().has_value());
  EXPECT_EQ(got->prompt_token_ids[0], *tokenizer_->bos_token_id());
  EXPECT_NE(got->prompt_token_ids[1], *tokenizer_->bos_token_id());

  // add_generation_prompt false renders without the assistant opening (V3's template adds it
  // after a user turn): a shorter prompt.
  chat.mutable_messages()->DeleteSubrange(2, 2);
  absl::StatusOr<engine::GenerateRequest> open =
      ValidateGenerateRequest(r, *tokenizer_, ChatLimits());
  ASSERT_TRUE(open.ok()) << open.status();
  chat.set_add_generation_prompt(false);
  absl::StatusOr<engine::GenerateRequest> closed =
      ValidateGenerateRequest(r, *tokenizer_, ChatLimits());
  ASSERT_TRUE(closed.ok()) << closed.status();
  EXPECT_LT(closed->prompt_token_ids.size(), open->prompt_token_ids.size());
}

TEST_F(ChatInputValidationTest, BadChatInputNamesTheField) {
  auto error = [](const v1::GenerateRequest& r, const RequestLimits& limits) {
    absl::StatusOr<engine::GenerateRequest> got = ValidateGenerateRequest(r, *tokenizer_, limits);
    return got.ok() ? std::string("OK") : std::string(got.status().message());
  };
  v1::GenerateRequest r;
  r.mutable_chat();
  EXPECT_EQ(error(r, ChatLimits()), "chat.messages must not be empty");
  v1::ChatMessage* m = r.mutable_chat()->add_messages();
  m->set_role("robot");
  m->set_content("x");
  EXPECT_EQ(error(r, ChatLimits()),
            "chat.messages[0].role must be system, user, assistant or tool, got \"robot\"");
  m->set_role("user");
  m->set_tool_calls_json("{not json");
  EXPECT_EQ(error(r, ChatLimits()), "chat.messages[0].tool_calls_json is not valid JSON");
  m->clear_tool_calls_json();
  m->set_content("ab\xff");
  EXPECT_THAT(error(r, ChatLimits()),
              ::testing::StartsWith("chat.messages[0].content is not valid UTF-8"));
  m->set_content("fine");
  r.mutable_chat()->set_chat_template_kwargs_json("[1]");
  EXPECT_EQ(error(r, ChatLimits()), "chat.chat_template_kwargs_json must be a JSON object");
  r.mutable_chat()->clear_chat_template_kwargs_json();
  EXPECT_EQ(error(r, ChatLimits()), "OK");
  // A model without a chat template says how to give one.
  EXPECT_THAT(error(r, Limits()), ::testing::StartsWith("chat: this model has no chat template"));
  // The template's own raise_exception reaches the client: V3's template refuses nothing, so
  // use one that does.
  auto raising = engine::ChatTemplate::FromSource(
      "{% if messages[0]['role'] != 'system' %}{{ raise_exception('a system message must come "
      "first') }}{% endif %}",
      "test");
  ASSERT_TRUE(raising.ok()) << raising.status();
  RequestLimits limits = ChatLimits();
  limits.chat_template = &*raising;
  EXPECT_EQ(error(r, limits), "chat: a system message must come first");
}

}  // namespace
}  // namespace moeserve::server
