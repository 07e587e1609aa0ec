#include "engine/kv_cache/kv_cache_spec.h"

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "engine/model/model_config.h"
#include "engine/ops/dtype.h"
#include "gtest/gtest.h"

namespace moeserve::engine {
namespace {

// The MLA fields that size the cache (reference §3.1): kv_lora_rank 512 + qk_rope_head_dim 64.
ModelConfig DeepseekConfig(int64_t num_hidden_layers) {
  ModelConfig config;
  config.num_hidden_layers = num_hidden_layers;
  config.kv_lora_rank = 512;
  config.qk_rope_head_dim = 64;
  config.qk_nope_head_dim = 128;
  config.v_head_dim = 128;
  config.num_nextn_predict_layers = 1;  // not part of the cache
  return config;
}

TEST(KvCacheSpecTest, DeepseekV3HoldsSeventyThousandBytesPerTokenInBf16) {
  const KvCacheSpec spec = KvCacheSpecFor(DeepseekConfig(61), DType::kBF16);
  EXPECT_EQ(spec.kv_dim, 576);
  EXPECT_EQ(spec.BytesPerTokenPerLayer(), 1152);
  EXPECT_EQ(spec.BytesPerToken(), 70272);  // 576 x 61 x 2
  EXPECT_EQ(spec.BytesPerBlockPerLayer(), 73728);
  EXPECT_EQ(spec.BytesPerBlock(), 70272 * 64);
}

TEST(KvCacheSpecTest, DeepseekV2LiteHoldsThirtyOneThousandBytesPerTokenInBf16) {
  EXPECT_EQ(KvCacheSpecFor(DeepseekConfig(27), DType::kBF16).BytesPerToken(), 31104);
}

TEST(KvCacheSpecTest, SizesFromTheShippedConfigsMatch) {
  const std::string dir = std::string(MOESERVE_SOURCE_DIR) + "/tests/data/configs/";
  const absl::StatusOr<ModelConfig> r1 = LoadModelConfig(dir + "deepseek-r1.config.json");
  ASSERT_TRUE(r1.ok()) << r1.status();
  EXPECT_EQ(KvCacheSpecFor(*r1, DType::kBF16).BytesPerToken(), 70272);
  const absl::StatusOr<ModelConfig> lite = LoadModelConfig(dir + "deepseek-v2-lite.config.json");
  ASSERT_TRUE(lite.ok()) << lite.status();
  EXPECT_EQ(KvCacheSpecFor(*lite, DType::kBF16).BytesPerToken(), 31104);
}

TEST(KvCacheSpecTest, DtypeScalesTheSize) {
  const ModelConfig config = DeepseekConfig(61);
  EXPECT_EQ(KvCacheSpecFor(config, DType::kF32).BytesPerToken(), 2 * 70272);
  EXPECT_EQ(KvCacheSpecFor(config, DType::kF8E4M3).BytesPerToken(), 70272 / 2);
}

TEST(KvCacheSpecTest, NumBlocksForBudgetRoundsDown) {
  const KvCacheSpec spec = KvCacheSpecFor(DeepseekConfig(61), DType::kBF16);
  const int64_t block = spec.BytesPerBlock();  // 4,497,408 B
  EXPECT_EQ(NumBlocksForBudget(0, spec), 0);
  EXPECT_EQ(NumBlocksForBudget(-block, spec), 0);
  EXPECT_EQ(NumBlocksForBudget(block - 1, spec), 0);
  EXPECT_EQ(NumBlocksForBudget(block, spec), 1);
  EXPECT_EQ(NumBlocksForBudget(10 * block + block / 2, spec), 10);
  // 40 GiB of BF16 V3 cache: 9,549 blocks, 611,136 tokens.
  EXPECT_EQ(NumBlocksForBudget(int64_t{40} << 30, spec), 9549);
  EXPECT_EQ(NumBlocksForBudget(int64_t{40} << 30, DeepseekConfig(61), DType::kBF16), 9549);
  EXPECT_EQ(NumBlocksForBudget(1 << 30, KvCacheSpec{}), 0);
}

}  // namespace
}  // namespace moeserve::engine
