#include "engine/sampling/sampling_params.h"

#include <limits>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "gtest/gtest.h"

namespace moeserve::engine {
namespace {

constexpr int64_t kVocab = 1000;
constexpr float kNan = std::numeric_limits<float>::quiet_NaN();
constexpr float kInf = std::numeric_limits<float>::infinity();

struct InvalidCase {
  std::string name;
  SamplingParams params;
  std::string expected_message;  // a substring of the error, which starts with the field
};

SamplingParams With(void (*edit)(SamplingParams&)) {
  SamplingParams p;
  edit(p);
  return p;
}

std::vector<InvalidCase> InvalidCases() {
  return {
      {"TemperatureNan", With([](SamplingParams& p) { p.temperature = kNan; }),
       "temperature must be finite and >= 0, got nan"},
      {"TemperatureInf", With([](SamplingParams& p) { p.temperature = kInf; }),
       "temperature must be finite and >= 0, got inf"},
      {"TemperatureNegative", With([](SamplingParams& p) { p.temperature = -0.5f; }),
       "temperature must be finite and >= 0, got -0.5"},
      {"TopKBelowMinusOne", With([](SamplingParams& p) { p.top_k = -2; }),
       "top_k must be -1 or 0 (disabled) or > 0, got -2"},
      {"TopPZero", With([](SamplingParams& p) { p.top_p = 0.0f; }),
       "top_p must be in (0, 1], got 0"},
      {"TopPAboveOne", With([](SamplingParams& p) { p.top_p = 1.5f; }),
       "top_p must be in (0, 1], got 1.5"},
      {"TopPNegative", With([](SamplingParams& p) { p.top_p = -0.1f; }), "top_p must be in (0, 1]"},
      {"TopPNan", With([](SamplingParams& p) { p.top_p = kNan; }),
       "top_p must be in (0, 1], got nan"},
      {"MinPNegative", With([](SamplingParams& p) { p.min_p = -0.01f; }),
       "min_p must be in [0, 1], got -0.01"},
      {"MinPAboveOne", With([](SamplingParams& p) { p.min_p = 1.01f; }),
       "min_p must be in [0, 1], got 1.01"},
      {"MinPNan", With([](SamplingParams& p) { p.min_p = kNan; }), "min_p must be in [0, 1]"},
      {"RepetitionPenaltyZero", With([](SamplingParams& p) { p.repetition_penalty = 0.0f; }),
       "repetition_penalty must be finite and > 0, got 0"},
      {"RepetitionPenaltyNegative", With([](SamplingParams& p) { p.repetition_penalty = -1.0f; }),
       "repetition_penalty must be finite and > 0"},
      {"RepetitionPenaltyNan", With([](SamplingParams& p) { p.repetition_penalty = kNan; }),
       "repetition_penalty must be finite and > 0"},
      {"RepetitionPenaltyInf", With([](SamplingParams& p) { p.repetition_penalty = kInf; }),
       "repetition_penalty must be finite and > 0"},
      {"FrequencyPenaltyAbove", With([](SamplingParams& p) { p.frequency_penalty = 2.5f; }),
       "frequency_penalty must be in [-2, 2], got 2.5"},
      {"FrequencyPenaltyBelow", With([](SamplingParams& p) { p.frequency_penalty = -2.01f; }),
       "frequency_penalty must be in [-2, 2]"},
      {"FrequencyPenaltyNan", With([](SamplingParams& p) { p.frequency_penalty = kNan; }),
       "frequency_penalty must be in [-2, 2], got nan"},
      {"PresencePenaltyAbove", With([](SamplingParams& p) { p.presence_penalty = 3.0f; }),
       "presence_penalty must be in [-2, 2], got 3"},
      {"PresencePenaltyBelow", With([](SamplingParams& p) { p.presence_penalty = -2.5f; }),
       "presence_penalty must be in [-2, 2]"},
      {"PresencePenaltyNan", With([](SamplingParams& p) { p.presence_penalty = kNan; }),
       "presence_penalty must be in [-2, 2]"},
      {"LogitBiasIdTooLarge", With([](SamplingParams& p) {
         p.logit_bias = {{1, 1.0f}, {1000, 1.0f}};
       }),
       "logit_bias[1]: token id 1000 is out of range [0, 1000)"},
      {"LogitBiasIdNegative", With([](SamplingParams& p) {
         p.logit_bias = {{-1, 1.0f}};
       }),
       "logit_bias[0]: token id -1 is out of range"},
      {"LogitBiasNan", With([](SamplingParams& p) {
         p.logit_bias = {{5, kNan}};
       }),
       "logit_bias[0]: bias for token 5 must be in [-100, 100], got nan"},
      {"LogitBiasTooLarge", With([](SamplingParams& p) {
         p.logit_bias = {{5, 100.5f}};
       }),
       "logit_bias[0]: bias for token 5 must be in [-100, 100], got 100.5"},
      {"LogitBiasTooSmall", With([](SamplingParams& p) {
         p.logit_bias = {{5, -101.0f}};
       }),
       "logit_bias[0]: bias for token 5 must be in [-100, 100]"},
      {"LogitBiasInf", With([](SamplingParams& p) {
         p.logit_bias = {{5, -kInf}};
       }),
       "logit_bias[0]: bias for token 5"},
      {"NumLogprobsTooMany", With([](SamplingParams& p) { p.num_logprobs = 21; }),
       "num_logprobs must be in [-1, 20], got 21"},
      {"NumLogprobsBelowMinusOne", With([](SamplingParams& p) { p.num_logprobs = -2; }),
       "num_logprobs must be in [-1, 20], got -2"},
  };
}

class InvalidSamplingParamsTest : public ::testing::TestWithParam<InvalidCase> {};

TEST_P(InvalidSamplingParamsTest, IsInvalidArgumentNamingTheField) {
  const InvalidCase& c = GetParam();
  const absl::Status status = ValidateSamplingParams(c.params, kVocab);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
  const std::string message(status.message());
  EXPECT_NE(message.find(c.expected_message), std::string::npos)
      << "\"" << message << "\" does not contain \"" << c.expected_message << "\"";
  // The field comes first, so the server can prefix its own path.
  const std::string field = c.expected_message.substr(0, c.expected_message.find_first_of(" ["));
  EXPECT_EQ(message.rfind(field, 0), 0u) << message;
}

INSTANTIATE_TEST_SUITE_P(Table, InvalidSamplingParamsTest, ::testing::ValuesIn(InvalidCases()),
                         [](const ::testing::TestParamInfo<InvalidCase>& info) {
                           return info.param.name;
                         });

TEST(SamplingParamsTest, DefaultsAreValid) {
  EXPECT_TRUE(ValidateSamplingParams(SamplingParams{}, kVocab).ok());
}

TEST(SamplingParamsTest, BoundaryValuesAreValid) {
  SamplingParams p;
  p.temperature = 0.0f;
  p.top_k = 0;
  p.top_p = 1.0f;
  p.min_p = 1.0f;
  p.repetition_penalty = 1e-3f;
  p.frequency_penalty = -2.0f;
  p.presence_penalty = 2.0f;
  p.logit_bias = {{0, -100.0f}, {kVocab - 1, 100.0f}, {0, 5.0f}};  // repeated ids add up
  p.seed = 0;
  p.num_logprobs = kMaxNumLogprobs;
  EXPECT_TRUE(ValidateSamplingParams(p, kVocab).ok()) << ValidateSamplingParams(p, kVocab);
  p.top_k = kVocab * 10;  // larger than the vocabulary: keeps everything
  p.num_logprobs = -1;
  EXPECT_TRUE(ValidateSamplingParams(p, kVocab).ok());
  p.num_logprobs = 0;
  p.top_p = 1e-6f;
  EXPECT_TRUE(ValidateSamplingParams(p, kVocab).ok());
}

TEST(SamplingParamsTest, NonPositiveVocabSizeIsInvalid) {
  const absl::Status status = ValidateSamplingParams(SamplingParams{}, 0);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(std::string(status.message()), "vocab_size must be > 0, got 0");
}

TEST(SamplingParamsTest, GreedyBelowVllmEpsilon) {
  SamplingParams p;
  p.temperature = 0.0f;
  EXPECT_TRUE(p.greedy());
  p.temperature = 1e-6f;
  EXPECT_TRUE(p.greedy());
  p.temperature = 1e-4f;
  EXPECT_FALSE(p.greedy());
}

}  // namespace
}  // namespace moeserve::engine
