// PadDecodeBatch on the CPU backend: the real rows' logits of a padded decode step equal the
// unpadded step's, and the pads write nothing into the KV pages. This is the host half of the
// CUDA backend's graph replay (deepseek_model_cuda.h), checked where no GPU is needed.
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

TEST(IsDecodeOnlyTest, NeedsOneNewTokenPerSequence) {
  ForwardBatchBuilder decode;
  decode.AddSequence({0}, 5, {7});
  decode.AddSequence({1}, 0, {9});
  EXPECT_TRUE(IsDecodeOnly(std::move(decode).Build()));
  ForwardBatchBuilder mixed;
  mixed.AddSequence({0}, 5, {7});
  mixed.AddSequence({1}, 0, {9, 10});
  EXPECT_FALSE(IsDecodeOnly(std::move(mixed).Build()));
  EXPECT_FALSE(IsDecodeOnly(ForwardBatchBuilder().Build()));
}

TEST(PadDecodeBatchTest, RealRowsAreUnchangedAndPadsWriteNothing) {
  auto model = DeepseekModel::Load(moeserve::testing::TestCheckpointDir("tiny-v2-lite", false));
  ASSERT_TRUE(model.ok()) << model.status();
  std::mt19937 rng(5);
  std::uniform_int_distribution<int32_t> token(2, 400);
  // Three sequences with 70, 5 and 130 cached tokens on interleaved blocks.
  const std::vector<int64_t> cached = {70, 5, 130};
  std::vector<std::vector<int32_t>> tables = {{3, 0}, {5}, {1, 4, 2}};
  ForwardBatchBuilder prefill, decode;
  for (size_t s = 0; s < cached.size(); ++s) {
    std::vector<int32_t> prompt(static_cast<size_t>(cached[s]));
    for (auto& t : prompt) t = token(rng);
    prefill.AddSequence(tables[s], 0, prompt);
    decode.AddSequence(tables[s], cached[s], {token(rng)});
  }
  const ForwardBatch prefill_batch = std::move(prefill).Build();
  const ForwardBatch step = std::move(decode).Build();
  const ForwardBatch padded = PadDecodeBatch(step, /*num_seqs=*/8, /*table_width=*/6);
  ASSERT_EQ(padded.num_seqs(), 8);
  ASSERT_EQ(padded.max_blocks_per_seq, 6);
  ASSERT_TRUE(ValidateForwardBatch(padded, (*model)->config().vocab_size, 8).ok());

  KvPages plain_pages = (*model)->MakeKvPages(8), padded_pages = (*model)->MakeKvPages(8);
  ASSERT_TRUE((*model)->Forward(prefill_batch, plain_pages).ok());
  ASSERT_TRUE((*model)->Forward(prefill_batch, padded_pages).ok());
  auto expected = (*model)->Forward(step, plain_pages);
  auto actual = (*model)->Forward(padded, padded_pages);
  ASSERT_TRUE(expected.ok()) << expected.status();
  ASSERT_TRUE(actual.ok()) << actual.status();
  const int64_t vocab = (*model)->config().vocab_size;
  ASSERT_EQ(static_cast<int64_t>(actual->size()), 8 * vocab);
  actual->resize(expected->size());  // the pads' rows are dropped
  EXPECT_LT(testing::MaxRelativeError(*actual, *expected), 1e-5);
  for (int64_t l = 0; l < plain_pages.num_layers(); ++l) {
    const char* a = static_cast<const char*>(std::as_const(plain_pages).layer(l).data);
    const char* b = static_cast<const char*>(std::as_const(padded_pages).layer(l).data);
    ASSERT_TRUE(std::equal(a, a + plain_pages.layer_bytes(), b)) << "layer " << l;
  }
}

}  // namespace
}  // namespace moeserve::engine
