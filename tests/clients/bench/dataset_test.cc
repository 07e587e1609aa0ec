// Dataset generation: exact and ranged lengths, no EOS/BOS in random prompts, the shared
// prefix, JSONL files, and ShareGPT import with vLLM's filter (a fake tokenizer stands in for
// the server's Tokenize RPC: one token per whitespace-separated word, plus BOS when asked).
#include "clients/bench/dataset.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <set>

#include "absl/strings/str_split.h"
#include "gtest/gtest.h"

namespace moeserve::bench {
namespace {

namespace fs = std::filesystem;

const VocabInfo kVocab{.vocab_size = 64, .excluded_ids = {1, 0}};  // EOS 1, BOS 0

absl::StatusOr<std::vector<uint32_t>> WordTokenizer(const std::string& text, bool add_special) {
  std::vector<uint32_t> ids;
  if (add_special) ids.push_back(0);
  for (absl::string_view word : absl::StrSplit(text, ' ', absl::SkipEmpty())) {
    ids.push_back(static_cast<uint32_t>(2 + word.size()));
  }
  return ids;
}

std::string WriteTemp(const std::string& name, const std::string& contents) {
  const fs::path path = fs::path(::testing::TempDir()) / name;
  std::ofstream(path) << contents;
  return path.string();
}

std::string Words(int n) {
  std::string text;
  for (int i = 0; i < n; ++i) text += (i ? " w" : "w");
  return text;
}

TEST(RandomDatasetTest, LengthsAreExactWithoutRangeRatio) {
  absl::StatusOr<std::vector<BenchPrompt>> prompts =
      MakeRandomDataset({.num_prompts = 20, .input_len = 32, .output_len = 7, .seed = 1}, kVocab);
  ASSERT_TRUE(prompts.ok()) << prompts.status();
  ASSERT_EQ(prompts->size(), 20u);
  for (const BenchPrompt& p : *prompts) {
    EXPECT_EQ(p.token_ids.size(), 32u);
    EXPECT_EQ(p.prompt_len, 32);
    EXPECT_EQ(p.output_len, 7);
    EXPECT_TRUE(p.text.empty());
  }
}

TEST(RandomDatasetTest, RangeRatioKeepsLengthsInsideFloorAndCeilBoundsAndVariesThem) {
  absl::StatusOr<std::vector<BenchPrompt>> prompts = MakeRandomDataset(
      {.num_prompts = 500, .input_len = 100, .output_len = 10, .range_ratio = 0.25, .seed = 2},
      kVocab);
  ASSERT_TRUE(prompts.ok());
  std::set<int64_t> input_lens, output_lens;
  for (const BenchPrompt& p : *prompts) {
    EXPECT_GE(p.prompt_len, 75);
    EXPECT_LE(p.prompt_len, 125);
    EXPECT_GE(p.output_len, 7);   // floor(10 * 0.75)
    EXPECT_LE(p.output_len, 13);  // ceil(10 * 1.25)
    input_lens.insert(p.prompt_len);
    output_lens.insert(p.output_len);
  }
  EXPECT_GT(input_lens.size(), 30u);
  EXPECT_EQ(output_lens.size(), 7u);  // every value of [7, 13] appears in 500 draws
}

TEST(RandomDatasetTest, PromptsNeverContainEosOrBosAndStayInsideTheVocabulary) {
  absl::StatusOr<std::vector<BenchPrompt>> prompts = MakeRandomDataset(
      {.num_prompts = 50, .input_len = 200, .output_len = 4, .prefix_len = 50, .seed = 3}, kVocab);
  ASSERT_TRUE(prompts.ok());
  std::set<uint32_t> seen;
  for (const BenchPrompt& p : *prompts) {
    for (uint32_t id : p.token_ids) {
      ASSERT_NE(id, 0u);
      ASSERT_NE(id, 1u);
      ASSERT_LT(id, 64u);
      seen.insert(id);
    }
  }
  EXPECT_EQ(seen.size(), 62u);  // every allowed id turns up in 12,500 draws
}

TEST(RandomDatasetTest, PrefixIsSharedByEveryPromptAndTheRestDiffers) {
  absl::StatusOr<std::vector<BenchPrompt>> prompts = MakeRandomDataset(
      {.num_prompts = 8, .input_len = 16, .output_len = 4, .prefix_len = 64, .seed = 4}, kVocab);
  ASSERT_TRUE(prompts.ok());
  const std::vector<uint32_t> prefix((*prompts)[0].token_ids.begin(),
                                     (*prompts)[0].token_ids.begin() + 64);
  for (const BenchPrompt& p : *prompts) {
    ASSERT_EQ(p.prompt_len, 64 + 16);  // input_len excludes the prefix, as vLLM
    EXPECT_TRUE(std::equal(prefix.begin(), prefix.end(), p.token_ids.begin()));
  }
  EXPECT_NE(
      std::vector<uint32_t>((*prompts)[0].token_ids.begin() + 64, (*prompts)[0].token_ids.end()),
      std::vector<uint32_t>((*prompts)[1].token_ids.begin() + 64, (*prompts)[1].token_ids.end()));
}

TEST(RandomDatasetTest, SameSeedGivesTheSamePrompts) {
  const RandomDatasetOptions options{
      .num_prompts = 5, .input_len = 8, .output_len = 4, .range_ratio = 0.5, .seed = 77};
  EXPECT_EQ((*MakeRandomDataset(options, kVocab))[3].token_ids,
            (*MakeRandomDataset(options, kVocab))[3].token_ids);
}

TEST(RandomDatasetTest, BadOptionsAreRejected) {
  EXPECT_FALSE(MakeRandomDataset({.num_prompts = 0}, kVocab).ok());
  EXPECT_FALSE(MakeRandomDataset({.num_prompts = 1, .range_ratio = 1.0}, kVocab).ok());
  EXPECT_FALSE(MakeRandomDataset({.num_prompts = 1, .output_len = 0}, kVocab).ok());
  EXPECT_FALSE(MakeRandomDataset({.num_prompts = 1, .input_len = 0, .prefix_len = 0}, kVocab).ok());
  EXPECT_FALSE(
      MakeRandomDataset({.num_prompts = 1}, {.vocab_size = 2, .excluded_ids = {0, 1}}).ok());
}

TEST(RandomTextDatasetTest, WordPromptsHaveTheLengthsSharedPrefixAndSeedOfTheIdDataset) {
  const RandomDatasetOptions options{.num_prompts = 20,
                                     .input_len = 10,
                                     .output_len = 6,
                                     .range_ratio = 0.5,
                                     .prefix_len = 4,
                                     .seed = 3};
  absl::StatusOr<std::vector<BenchPrompt>> prompts = MakeRandomTextDataset(options);
  ASSERT_TRUE(prompts.ok()) << prompts.status();
  ASSERT_EQ(prompts->size(), 20u);
  const auto words = [](const BenchPrompt& p) {
    return std::vector<std::string>(absl::StrSplit(p.text, ' '));
  };
  const std::vector<std::string> first = words(prompts->front());
  const std::vector<std::string> prefix(first.begin(), first.begin() + 4);
  for (const BenchPrompt& p : *prompts) {
    EXPECT_TRUE(p.token_ids.empty());
    const std::vector<std::string> w = words(p);
    EXPECT_EQ(static_cast<int64_t>(w.size()), p.prompt_len);
    EXPECT_GE(p.prompt_len, 4 + 5);  // prefix + floor(10 * 0.5)
    EXPECT_LE(p.prompt_len, 4 + 15);
    EXPECT_GE(p.output_len, 3);
    EXPECT_LE(p.output_len, 9);
    EXPECT_EQ(std::vector<std::string>(w.begin(), w.begin() + 4), prefix);
  }
  absl::StatusOr<std::vector<BenchPrompt>> again = MakeRandomTextDataset(options);
  EXPECT_EQ((*again)[7].text, (*prompts)[7].text);
  EXPECT_FALSE(MakeRandomTextDataset({.num_prompts = 1, .input_len = 0}).ok());
}

TEST(JsonlDatasetTest, ReadsTextAndIdPromptsWithPerLineLengthsAndCycles) {
  const std::string path = WriteTemp("prompts.jsonl",
                                     "{\"prompt\": \"one two three\"}\n"
                                     "\n"
                                     "{\"prompt_token_ids\": [5, 6, 7, 8], \"output_len\": 3}\n"
                                     "{\"prompt\": \"four\", \"max_tokens\": 9}\n");
  absl::StatusOr<std::vector<BenchPrompt>> prompts =
      LoadJsonlDataset({.path = path, .num_prompts = 5, .default_output_len = 16}, WordTokenizer);
  ASSERT_TRUE(prompts.ok()) << prompts.status();
  ASSERT_EQ(prompts->size(), 5u);
  EXPECT_EQ((*prompts)[0].text, "one two three");
  EXPECT_EQ((*prompts)[0].prompt_len, 4);  // BOS + 3 words, as the server will count it
  EXPECT_EQ((*prompts)[0].output_len, 16);
  EXPECT_EQ((*prompts)[1].token_ids, (std::vector<uint32_t>{5, 6, 7, 8}));
  EXPECT_EQ((*prompts)[1].output_len, 3);
  EXPECT_EQ((*prompts)[2].output_len, 9);
  EXPECT_EQ((*prompts)[3].text, "one two three");  // cycled
  // --output-len overrides the file.
  prompts = LoadJsonlDataset({.path = path, .num_prompts = 3, .output_len = 2}, WordTokenizer);
  ASSERT_TRUE(prompts.ok());
  for (const BenchPrompt& p : *prompts) EXPECT_EQ(p.output_len, 2);
}

TEST(JsonlDatasetTest, MalformedLinesAreErrorsNamingTheLine) {
  const std::string path = WriteTemp("bad.jsonl", "{\"prompt\": \"ok\"}\n{\"text\": 1}\n");
  absl::StatusOr<std::vector<BenchPrompt>> prompts =
      LoadJsonlDataset({.path = path, .num_prompts = 1}, WordTokenizer);
  ASSERT_FALSE(prompts.ok());
  EXPECT_NE(prompts.status().message().find("bad.jsonl:2"), std::string::npos) << prompts.status();
  EXPECT_FALSE(
      LoadJsonlDataset({.path = "/nonexistent.jsonl", .num_prompts = 1}, WordTokenizer).ok());
}

TEST(ShareGptDatasetTest, ImportsFirstTwoTurnsAndAppliesVllmsLengthFilter) {
  const std::string path = WriteTemp("sharegpt.json", R"([
    {"id": "a", "conversations": [{"from": "human", "value": ")" +
                                                          Words(10) + R"("},
                                  {"from": "gpt", "value": ")" +
                                                          Words(20) + R"("},
                                  {"from": "human", "value": "ignored third turn"}]},
    {"id": "short-prompt", "conversations": [{"from": "human", "value": "hi"},
                                             {"from": "gpt", "value": ")" +
                                                          Words(20) + R"("}]},
    {"id": "short-answer", "conversations": [{"from": "human", "value": ")" +
                                                          Words(10) + R"("},
                                             {"from": "gpt", "value": "ok"}]},
    {"id": "too-long", "conversations": [{"from": "human", "value": ")" +
                                                          Words(1100) + R"("},
                                         {"from": "gpt", "value": ")" +
                                                          Words(10) + R"("}]},
    {"id": "one-turn", "conversations": [{"from": "human", "value": "alone"}]},
    {"id": "b", "conversations": [{"from": "human", "value": ")" +
                                                          Words(5) + R"("},
                                  {"from": "gpt", "value": ")" +
                                                          Words(6) + R"("}]}
  ])");
  absl::StatusOr<std::vector<BenchPrompt>> prompts =
      LoadShareGptDataset({.path = path, .num_prompts = 2, .seed = 0}, WordTokenizer);
  ASSERT_TRUE(prompts.ok()) << prompts.status();
  ASSERT_EQ(prompts->size(), 2u);
  std::multiset<std::pair<int64_t, int64_t>> lengths;
  for (const BenchPrompt& p : *prompts) lengths.insert({p.prompt_len, p.output_len});
  // Only "a" (11 prompt tokens with BOS, 20 output) and "b" (6, 6) pass the filter.
  EXPECT_EQ(lengths, (std::multiset<std::pair<int64_t, int64_t>>{{11, 20}, {6, 6}}));

  // A fixed output length skips the short-answer check, and fewer valid pairs than asked for
  // are reused.
  prompts = LoadShareGptDataset({.path = path, .num_prompts = 5, .output_len = 4}, WordTokenizer);
  ASSERT_TRUE(prompts.ok()) << prompts.status();
  ASSERT_EQ(prompts->size(), 5u);
  for (const BenchPrompt& p : *prompts) EXPECT_EQ(p.output_len, 4);
}

TEST(ShareGptDatasetTest, ModelContextCapsTheTotalLength) {
  const std::string path = WriteTemp("sharegpt_cap.json", R"([
    {"conversations": [{"from": "human", "value": ")" + Words(10) +
                                                              R"("},
                       {"from": "gpt", "value": ")" + Words(20) +
                                                              R"("}]}])");
  EXPECT_FALSE(
      LoadShareGptDataset({.path = path, .num_prompts = 1, .max_model_len = 16}, WordTokenizer)
          .ok());
  EXPECT_TRUE(
      LoadShareGptDataset({.path = path, .num_prompts = 1, .max_model_len = 64}, WordTokenizer)
          .ok());
}

TEST(ShareGptDatasetTest, NotAnArrayIsAnError) {
  const std::string path = WriteTemp("sharegpt_bad.json", "{\"conversations\": []}");
  EXPECT_FALSE(LoadShareGptDataset({.path = path, .num_prompts = 1}, WordTokenizer).ok());
}

}  // namespace
}  // namespace moeserve::bench
