// generation_config.json → GenerationDefaults: the bundled model's real file, a missing file, each
// field's range (the error names the file and the field), HF's top_k 0 meaning "off", and eos ids
// as int or list.
#include "engine/model/generation_config.h"

#include <filesystem>
#include <fstream>
#include <string>

#include "gtest/gtest.h"

namespace moeserve::engine {
namespace {

TEST(GenerationConfigTest, BundledModelAsksForTemperature07AndTopP095) {
  const absl::StatusOr<GenerationDefaults> d =
      LoadGenerationDefaults(std::string(MOESERVE_SOURCE_DIR) + "/models/kjv-v3-tiny");
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->temperature, 0.7f);
  EXPECT_EQ(d->top_p, 0.95f);
  EXPECT_FALSE(d->top_k.has_value());
  EXPECT_FALSE(d->max_new_tokens.has_value());
  EXPECT_EQ(d->eos_token_ids, std::vector<int64_t>{1});
  EXPECT_EQ(d->Summary(), "temperature 0.7, top_p 0.95, eos_token_id 1");
}

TEST(GenerationConfigTest, MissingFileMeansNoDefaults) {
  const std::filesystem::path dir =
      std::filesystem::path(::testing::TempDir()) / "moeserve_no_generation_config";
  std::filesystem::create_directories(dir);
  const absl::StatusOr<GenerationDefaults> d = LoadGenerationDefaults(dir.string());
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_TRUE(d->empty());
  EXPECT_EQ(d->Summary(), "none");
}

TEST(GenerationConfigTest, EveryFieldIsReadAndTopKZeroMeansOff) {
  const absl::StatusOr<GenerationDefaults> d = ParseGenerationDefaults(
      R"({"temperature": 0.6, "top_p": 0.9, "top_k": 0, "min_p": 0.05, "repetition_penalty": 1.1,
          "max_new_tokens": 2048, "eos_token_id": [1, 7], "do_sample": false, "num_beams": 1})",
      "g.json");
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->temperature, 0.6f);
  EXPECT_EQ(d->top_p, 0.9f);
  EXPECT_EQ(d->top_k, -1);
  EXPECT_EQ(d->min_p, 0.05f);
  EXPECT_EQ(d->repetition_penalty, 1.1f);
  EXPECT_EQ(d->max_new_tokens, 2048);
  EXPECT_EQ(d->eos_token_ids, (std::vector<int64_t>{1, 7}));
  EXPECT_EQ(ParseGenerationDefaults(R"({"top_k": 40})", "g.json")->top_k, 40);
}

TEST(GenerationConfigTest, BadValuesNameTheFileAndField) {
  const std::pair<const char*, const char*> cases[] = {
      {R"({"temperature": -0.5})", "g.json: field 'temperature' must be finite and >= 0, got -0.5"},
      {R"({"temperature": "hot"})", "g.json: field 'temperature' must be a number, got \"hot\""},
      {R"({"top_p": 1.0000001})", "g.json: field 'top_p' must be in (0, 1], got 1.0000001"},
      {R"({"top_p": 0})", "g.json: field 'top_p' must be in (0, 1], got 0"},
      {R"({"top_k": 2.5})", "g.json: field 'top_k' must be an integer >= -1, got 2.5"},
      {R"({"min_p": 2})", "g.json: field 'min_p' must be in [0, 1], got 2"},
      {R"({"repetition_penalty": 0})", "g.json: field 'repetition_penalty' must be finite and > 0"},
      {R"({"max_new_tokens": 0})", "g.json: field 'max_new_tokens' must be an integer >= 1, got 0"},
      {R"({"eos_token_id": [1, -2]})", "g.json: field 'eos_token_id' must be a non-negative"},
      {R"([1, 2])", "g.json: not a JSON object"},
  };
  for (const auto& [text, message] : cases) {
    const absl::StatusOr<GenerationDefaults> d = ParseGenerationDefaults(text, "g.json");
    ASSERT_FALSE(d.ok()) << text;
    EXPECT_EQ(d.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(std::string(d.status().message()).rfind(message, 0), 0u)
        << d.status().message() << "\n  should start with: " << message;
  }
}

}  // namespace
}  // namespace moeserve::engine
