// OrderForAttention: the CPU model run on the reordered batch, with its logits gathered through
// logit_rows, gives the same logits as on the caller's batch, for mixed prefill/decode steps
// and every MLA form. This is the host half of the CUDA backend's step (deepseek_model_cuda.h),
// checked where no GPU is needed.
#include "engine/batch/attention_order.h"

#include <gtest/gtest.h>

#include "engine/model/deepseek_model.h"
#include "tests/testing/random.h"
#include "tests/testing/test_checkpoints.h"

namespace moeserve::engine {
namespace {

constexpr int64_t kBlocksPerSeq = 4;

std::vector<int32_t> Table(int64_t seq) {
  std::vector<int32_t> table;
  // Interleaved block ids, so tables are not the identity.
  for (int64_t b = 0; b < kBlocksPerSeq; ++b) table.push_back(static_cast<int32_t>(b * 8 + seq));
  return table;
}

std::vector<float> Gather(const std::vector<float>& logits, const std::vector<int32_t>& rows,
                          int64_t vocab) {
  std::vector<float> out;
  for (int32_t r : rows) {
    out.insert(out.end(), logits.begin() + r * vocab, logits.begin() + (r + 1) * vocab);
  }
  return out;
}

TEST(UsesAbsorbedMlaTest, AutoAbsorbsDecodeOnly) {
  EXPECT_TRUE(UsesAbsorbedMla(MlaForm::kAuto, 1));
  EXPECT_FALSE(UsesAbsorbedMla(MlaForm::kAuto, 2));
  EXPECT_TRUE(UsesAbsorbedMla(MlaForm::kAbsorbed, 7));
  EXPECT_FALSE(UsesAbsorbedMla(MlaForm::kNaive, 1));
}

class OrderForAttentionTest : public ::testing::TestWithParam<MlaForm> {};

TEST_P(OrderForAttentionTest, ReorderedStepGivesTheCallersLogits) {
  auto model = DeepseekModel::Load(moeserve::testing::TestCheckpointDir("tiny-v3", false));
  ASSERT_TRUE(model.ok()) << model.status();
  const int64_t vocab = (*model)->config().vocab_size;
  testing::TestRng rng(static_cast<uint32_t>(GetParam()) + 7);
  auto tokens = [&](int64_t n) { return rng.TokenIds(n, 2, static_cast<int32_t>(vocab - 1)); };

  // Step 1 caches a prefix for sequences 0..4; step 2 mixes decodes (1 token) and chunks.
  const std::vector<int64_t> prefix = {30, 65, 1, 12, 40, 0};
  const std::vector<int64_t> step2 = {1, 17, 1, 1, 9, 33};
  ForwardBatchBuilder first;
  for (int64_t s = 0; s < 6; ++s) {
    if (prefix[s] > 0) first.AddSequence(Table(s), 0, tokens(prefix[s]));
  }
  const ForwardBatch first_batch = std::move(first).Build();
  ForwardBatchBuilder second;
  for (int64_t s = 0; s < 6; ++s) second.AddSequence(Table(s), prefix[s], tokens(step2[s]));
  const ForwardBatch mixed = std::move(second).Build();

  // Last token, every token, and each sequence's last few (speculative verification).
  std::vector<ForwardOptions> cases = {
      {.mla_form = GetParam(), .logits_for = LogitsFor::kLastTokenOfEachSequence},
      {.mla_form = GetParam(), .logits_for = LogitsFor::kAllTokens},
      {.mla_form = GetParam(), .logits_for = LogitsFor::kLastTokenOfEachSequence}};
  cases[2].logits_per_sequence = {1, 4, 1, 1, 9, 2};
  for (const ForwardOptions& options : cases) {
    KvPages original_pages = (*model)->MakeKvPages(8 * kBlocksPerSeq);
    KvPages ordered_pages = (*model)->MakeKvPages(8 * kBlocksPerSeq);
    const ForwardOptions prefix_options{.mla_form = GetParam()};
    ASSERT_TRUE((*model)->Forward(first_batch, original_pages, prefix_options).ok());
    ASSERT_TRUE((*model)->Forward(first_batch, ordered_pages, prefix_options).ok());

    auto expected = (*model)->Forward(mixed, original_pages, options);
    ASSERT_TRUE(expected.ok()) << expected.status();
    auto ordered_or = OrderForAttention(mixed, options);
    ASSERT_TRUE(ordered_or.ok()) << ordered_or.status();
    const AttentionOrderedBatch& ordered = *ordered_or;
    ASSERT_EQ(ordered.batch.num_tokens(), mixed.num_tokens());
    ASSERT_EQ(static_cast<int64_t>(ordered.new_index.size()), mixed.num_tokens());
    for (int64_t i = 0; i < mixed.num_tokens(); ++i) {
      EXPECT_EQ(ordered.batch.token_ids[ordered.new_index[i]], mixed.token_ids[i]) << i;
      EXPECT_EQ(ordered.batch.positions[ordered.new_index[i]], mixed.positions[i]) << i;
    }
    for (int64_t s = 0; s < ordered.batch.num_seqs(); ++s) {
      EXPECT_EQ(UsesAbsorbedMla(GetParam(), ordered.batch.num_new_tokens(s)),
                s < ordered.num_absorbed_seqs)
          << "sequence " << s;
    }
    int64_t absorbed_tokens = 0;
    for (int64_t s = 0; s < ordered.num_absorbed_seqs; ++s) {
      absorbed_tokens += ordered.batch.num_new_tokens(s);
    }
    EXPECT_EQ(ordered.num_absorbed_tokens, absorbed_tokens);

    const ForwardOptions all_rows{.mla_form = GetParam(), .logits_for = LogitsFor::kAllTokens};
    auto reordered = (*model)->Forward(ordered.batch, ordered_pages, all_rows);
    ASSERT_TRUE(reordered.ok()) << reordered.status();
    const std::vector<float> actual = Gather(*reordered, ordered.logit_rows, vocab);
    ASSERT_EQ(actual.size(), expected->size());
    for (size_t i = 0; i < actual.size(); ++i) {
      ASSERT_NEAR(actual[i], (*expected)[i], 1e-4f * (1.0f + std::fabs((*expected)[i])))
          << "logit " << i;
    }
  }
}

TEST(OrderForAttentionOptionsTest, LogitsPerSequenceBeyondASequenceIsInvalid) {
  ForwardBatchBuilder builder;
  builder.AddSequence(Table(0), 0, {5, 6, 7});
  ForwardOptions options;
  options.logits_per_sequence = {4};
  EXPECT_EQ(OrderForAttention(std::move(builder).Build(), options).status().code(),
            absl::StatusCode::kInvalidArgument);
}

INSTANTIATE_TEST_SUITE_P(Forms, OrderForAttentionTest,
                         ::testing::Values(MlaForm::kAuto, MlaForm::kAbsorbed, MlaForm::kNaive));

}  // namespace
}  // namespace moeserve::engine
