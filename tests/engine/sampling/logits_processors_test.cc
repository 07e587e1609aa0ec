#include "engine/sampling/logits_processors.h"

#include <cstdint>
#include <map>
#include <random>
#include <set>
#include <vector>

#include "gtest/gtest.h"

namespace moeserve::engine {
namespace {

// The definitions, written as plainly as possible: bias; repetition over the set of prompt and
// generated tokens; frequency and presence over the counts of generated tokens.
std::vector<float> NaiveProcess(std::vector<float> logits, const SamplingParams& p,
                                const std::vector<int32_t>& prompt,
                                const std::vector<int32_t>& generated) {
  for (const auto& [id, bias] : p.logit_bias) logits[id] += bias;
  std::set<int32_t> seen(prompt.begin(), prompt.end());
  seen.insert(generated.begin(), generated.end());
  for (int32_t t : seen) {
    logits[t] = logits[t] > 0 ? logits[t] / p.repetition_penalty : logits[t] * p.repetition_penalty;
  }
  std::map<int32_t, int> counts;
  for (int32_t t : generated) ++counts[t];
  for (const auto& [t, n] : counts) {
    logits[t] -= p.frequency_penalty * static_cast<float>(n);
    logits[t] -= p.presence_penalty;
  }
  return logits;
}

std::vector<float> Processed(std::vector<float> logits, const SamplingParams& p,
                             const std::vector<int32_t>& prompt,
                             const std::vector<int32_t>& generated,
                             PenaltyScratch* scratch = nullptr) {
  ApplyLogitsProcessors(p, {prompt, generated}, absl::MakeSpan(logits), scratch);
  return logits;
}

TEST(LogitsProcessorsTest, HandComputedExample) {
  SamplingParams p;
  p.repetition_penalty = 2.0f;
  p.frequency_penalty = 0.5f;
  p.presence_penalty = 0.25f;
  p.logit_bias = {{4, 3.0f}};
  const std::vector<float> out =
      Processed({2.0f, -2.0f, 0.0f, 1.0f, -1.0f, 7.0f}, p, {0, 1, 0}, {1, 2, 3, 3});
  EXPECT_FLOAT_EQ(out[0], 1.0f);                  // prompt only: 2 / 2
  EXPECT_FLOAT_EQ(out[1], -4.0f - 0.5f - 0.25f);  // -2 * 2, then once generated
  EXPECT_FLOAT_EQ(out[2], 0.0f - 0.5f - 0.25f);   // 0 is neither divided nor multiplied
  EXPECT_FLOAT_EQ(out[3], 0.5f - 1.0f - 0.25f);   // 1 / 2, twice generated
  EXPECT_FLOAT_EQ(out[4], 2.0f);                  // bias only: -1 + 3, not seen
  EXPECT_FLOAT_EQ(out[5], 7.0f);                  // untouched
}

TEST(LogitsProcessorsTest, BiasComesBeforeRepetitionPenalty) {
  // -1 + 3 = 2 > 0 is divided; applied the other way round it would be -1 * 2 + 3 = 1.
  SamplingParams p;
  p.repetition_penalty = 2.0f;
  p.logit_bias = {{0, 3.0f}};
  EXPECT_FLOAT_EQ(Processed({-1.0f}, p, {0}, {})[0], 1.0f);
}

TEST(LogitsProcessorsTest, RepeatedBiasEntriesAddUp) {
  SamplingParams p;
  p.logit_bias = {{1, 1.5f}, {1, -0.25f}};
  const std::vector<float> out = Processed({0.0f, 0.0f}, p, {}, {});
  EXPECT_FLOAT_EQ(out[0], 0.0f);
  EXPECT_FLOAT_EQ(out[1], 1.25f);
}

TEST(LogitsProcessorsTest, MatchesNaiveImplementationOnRandomInputs) {
  std::mt19937 gen(123);
  std::uniform_real_distribution<float> logit(-8.0f, 8.0f);
  PenaltyScratch scratch;  // reused across every case: must come back clean each time
  for (int trial = 0; trial < 200; ++trial) {
    const int vocab = 50 + trial % 7 * 30;  // changes size too
    std::uniform_int_distribution<int32_t> token(0, vocab - 1);
    std::vector<float> logits(vocab);
    for (float& x : logits) x = logit(gen);
    std::vector<int32_t> prompt(trial % 40);
    std::vector<int32_t> generated(trial % 25);
    for (int32_t& t : prompt) t = token(gen) % 20;  // small range: many repeats
    for (int32_t& t : generated) t = token(gen) % 30;
    SamplingParams p;
    p.repetition_penalty = std::uniform_real_distribution<float>(0.5f, 2.0f)(gen);
    p.frequency_penalty = std::uniform_real_distribution<float>(-2.0f, 2.0f)(gen);
    p.presence_penalty = std::uniform_real_distribution<float>(-2.0f, 2.0f)(gen);
    for (int i = 0; i < trial % 4; ++i) p.logit_bias.push_back({token(gen), logit(gen)});

    const std::vector<float> expected = NaiveProcess(logits, p, prompt, generated);
    const std::vector<float> got = Processed(logits, p, prompt, generated, &scratch);
    const std::vector<float> fresh = Processed(logits, p, prompt, generated);
    for (int i = 0; i < vocab; ++i) {
      ASSERT_FLOAT_EQ(got[i], expected[i]) << "trial " << trial << " token " << i;
      ASSERT_EQ(got[i], fresh[i]) << "trial " << trial << " token " << i;
    }
  }
}

TEST(LogitsProcessorsTest, EachPenaltyAlone) {
  const std::vector<float> logits = {3.0f, -3.0f, 1.0f, 0.5f};
  const std::vector<int32_t> prompt = {2};
  const std::vector<int32_t> generated = {0, 1, 1, 1};
  SamplingParams rep;
  rep.repetition_penalty = 1.5f;
  SamplingParams freq;
  freq.frequency_penalty = 1.0f;
  SamplingParams pres;
  pres.presence_penalty = -1.0f;
  for (const SamplingParams& p : {rep, freq, pres}) {
    const std::vector<float> expected = NaiveProcess(logits, p, prompt, generated);
    const std::vector<float> got = Processed(logits, p, prompt, generated);
    for (size_t i = 0; i < logits.size(); ++i) EXPECT_FLOAT_EQ(got[i], expected[i]) << i;
  }
  // Frequency and presence ignore the prompt; repetition does not.
  EXPECT_FLOAT_EQ(Processed(logits, freq, prompt, generated)[2], 1.0f);
  EXPECT_FLOAT_EQ(Processed(logits, freq, prompt, generated)[1], -6.0f);
  EXPECT_FLOAT_EQ(Processed(logits, pres, prompt, generated)[1], -2.0f);
  EXPECT_FLOAT_EQ(Processed(logits, rep, prompt, generated)[2], 1.0f / 1.5f);
  EXPECT_FLOAT_EQ(Processed(logits, rep, prompt, generated)[1], -4.5f);
}

TEST(LogitsProcessorsTest, OutOfVocabHistoryIdsAreIgnored) {
  SamplingParams p;
  p.repetition_penalty = 2.0f;
  p.frequency_penalty = 1.0f;
  const std::vector<float> out = Processed({1.0f, 1.0f}, p, {-1, 7}, {2, -5, 1});
  EXPECT_FLOAT_EQ(out[0], 1.0f);
  EXPECT_FLOAT_EQ(out[1], 0.5f - 1.0f);
}

TEST(LogitsProcessorsTest, NeutralParamsChangeNothing) {
  SamplingParams p;
  EXPECT_FALSE(HasLogitsProcessors(p));
  const std::vector<float> logits = {1.0f, -2.0f, 3.0f};
  EXPECT_EQ(Processed(logits, p, {0, 1}, {2, 2}), logits);
  p.presence_penalty = 0.1f;
  EXPECT_TRUE(HasLogitsProcessors(p));
  p = SamplingParams{};
  p.logit_bias = {{0, 0.0f}};
  EXPECT_TRUE(HasLogitsProcessors(p));
  p = SamplingParams{};
  p.repetition_penalty = 1.1f;
  EXPECT_TRUE(HasLogitsProcessors(p));
}

}  // namespace
}  // namespace moeserve::engine
