// PadDecodeBatch on the CPU backend: the real rows' logits of a padded decode or verification
// step equal the unpadded step's, and the pads write nothing into the KV pages. This is the host
// half of the CUDA backend's graph replay (deepseek_model_cuda.h), checked where no GPU is needed.
#include "engine/batch/decode_padding.h"

#include <gtest/gtest.h>

#include <random>
#include <utility>

#include "engine/model/deepseek_model.h"
#include "tests/testing/tensor_compare.h"
#include "tests/testing/test_checkpoints.h"

namespace moeserve::engine {
namespace {

TEST(GraphBatchSizeForTest, PicksTheSmallestThatFits) {
  const std::vector<int64_t> sizes = {1, 2, 4, 8, 16, 32};
  EXPECT_EQ(GraphBatchSizeFor(sizes, 1), 1);
  EXPECT_EQ(GraphBatchSizeFor(sizes, 3), 4);
  EXPECT_EQ(GraphBatchSizeFor(sizes, 32), 32);
  EXPECT_EQ(GraphBatchSizeFor(sizes, 33), 0);
  EXPECT_EQ(GraphBatchSizeFor({}, 1), 0);
}

TEST(UniformNewTokensTest, DecodeHasOneNewTokenPerSequence) {
  ForwardBatchBuilder decode;
  decode.AddSequence({0}, 5, {7});
  decode.AddSequence({1}, 0, {9});
  EXPECT_EQ(UniformNewTokens(std::move(decode).Build()), 1);
  ForwardBatchBuilder mixed;
  mixed.AddSequence({0}, 5, {7});
  mixed.AddSequence({1}, 0, {9, 10});
  EXPECT_EQ(UniformNewTokens(std::move(mixed).Build()), 0);
  EXPECT_EQ(UniformNewTokens(ForwardBatchBuilder().Build()), 0);
}

TEST(UniformNewTokensTest, CountsTheSharedNumberOfNewTokens) {
  ForwardBatchBuilder verify;
  verify.AddSequence({0}, 5, {7, 8, 9});
  verify.AddSequence({1}, 0, {9, 10, 11});
  const ForwardBatch uniform = std::move(verify).Build();
  EXPECT_EQ(UniformNewTokens(uniform), 3);
  ForwardOptions options;
  EXPECT_EQ(UniformLogitsPerSequence(uniform, options), 1);
  options.logits_per_sequence = {2, 2};
  EXPECT_EQ(UniformLogitsPerSequence(uniform, options), 2);
  options.logits_per_sequence = {2, 3};
  EXPECT_EQ(UniformLogitsPerSequence(uniform, options), 0);
  options.logits_for = LogitsFor::kAllTokens;
  EXPECT_EQ(UniformLogitsPerSequence(uniform, options), 3);
}

// Decode (1 new token per sequence, the last logits) and speculative verification (3 new
// tokens, the logits of all 3 or the last 2): padded to 8 sequences, the real rows are the
// unpadded step's and the pads leave every KV page as it was.
TEST(PadDecodeBatchTest, RealRowsAreUnchangedAndPadsWriteNothing) {
  auto model = DeepseekModel::Load(moeserve::testing::TestCheckpointDir("tiny-v2-lite", false));
  ASSERT_TRUE(model.ok()) << model.status();
  std::mt19937 rng(5);
  std::uniform_int_distribution<int32_t> token(2, 400);
  struct Case {
    int64_t new_tokens;
    std::vector<int32_t> logits_per_sequence;
  };
  for (const Case& c : {Case{1, {}}, Case{3, {3, 3, 3}}, Case{3, {2, 2, 2}}}) {
    SCOPED_TRACE(::testing::Message() << c.new_tokens << " new tokens, "
                                      << c.logits_per_sequence.size() << " counts given");
    // Three sequences with 70, 5 and 130 cached tokens on interleaved blocks.
    const std::vector<int64_t> cached = {70, 5, 130};
    std::vector<std::vector<int32_t>> tables = {{3, 0}, {5}, {1, 4, 2}};
    ForwardBatchBuilder prefill, step_builder;
    for (size_t s = 0; s < cached.size(); ++s) {
      std::vector<int32_t> prompt(static_cast<size_t>(cached[s]));
      for (auto& t : prompt) t = token(rng);
      prefill.AddSequence(tables[s], 0, prompt);
      std::vector<int32_t> next(static_cast<size_t>(c.new_tokens));
      for (auto& t : next) t = token(rng);
      step_builder.AddSequence(tables[s], cached[s], next);
    }
    const ForwardBatch prefill_batch = std::move(prefill).Build();
    const ForwardBatch step = std::move(step_builder).Build();
    ForwardOptions options;
    options.logits_per_sequence = c.logits_per_sequence;
    const ForwardBatch padded = PadDecodeBatch(step, /*num_seqs=*/8, /*table_width=*/6);
    ASSERT_EQ(padded.num_seqs(), 8);
    ASSERT_EQ(padded.max_blocks_per_seq, 6);
    ASSERT_EQ(UniformNewTokens(padded), c.new_tokens);
    ASSERT_TRUE(ValidateForwardBatch(padded, (*model)->config().vocab_size, 8).ok());
    const ForwardOptions padded_options = PadOptions(options, 8);
    ASSERT_EQ(UniformLogitsPerSequence(padded, padded_options),
              UniformLogitsPerSequence(step, options));

    KvPages plain_pages = (*model)->MakeKvPages(8), padded_pages = (*model)->MakeKvPages(8);
    ASSERT_TRUE((*model)->Forward(prefill_batch, plain_pages).ok());
    ASSERT_TRUE((*model)->Forward(prefill_batch, padded_pages).ok());
    auto expected = (*model)->Forward(step, plain_pages, options);
    auto actual = (*model)->Forward(padded, padded_pages, padded_options);
    ASSERT_TRUE(expected.ok()) << expected.status();
    ASSERT_TRUE(actual.ok()) << actual.status();
    const int64_t vocab = (*model)->config().vocab_size;
    const int64_t rows = UniformLogitsPerSequence(step, options);
    ASSERT_EQ(static_cast<int64_t>(expected->size()), 3 * rows * vocab);
    ASSERT_EQ(static_cast<int64_t>(actual->size()), 8 * rows * vocab);
    actual->resize(expected->size());  // the pads' rows come last and are dropped
    EXPECT_LT(testing::MaxRelativeError(*actual, *expected), 1e-5);
    for (int64_t l = 0; l < plain_pages.num_layers(); ++l) {
      const char* a = static_cast<const char*>(std::as_const(plain_pages).layer(l).data);
      const char* b = static_cast<const char*>(std::as_const(padded_pages).layer(l).data);
      ASSERT_TRUE(std::equal(a, a + plain_pages.layer_bytes(), b)) << "layer " << l;
    }
  }
}

}  // namespace
}  // namespace moeserve::engine
