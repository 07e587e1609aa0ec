// The CPU's automatic MLA form choice: the multiply-add estimates against a count written out
// by hand for DeepSeek-V3's attention, and the decisions they lead to (a fresh prompt stays
// naive, a few tokens after a long context go absorbed, decode is always absorbed, a forced
// form is obeyed). The measured crossover is in bench/mla_form_bench.cc.
#include "engine/model/mla_form_choice.h"

#include <gtest/gtest.h>

namespace moeserve::engine {
namespace {

ModelConfig V3Attention() {
  ModelConfig c;
  c.num_attention_heads = 128;
  c.kv_lora_rank = 512;
  c.qk_nope_head_dim = 128;
  c.qk_rope_head_dim = 64;
  c.v_head_dim = 128;
  return c;
}

TEST(MlaFormChoiceTest, MacEstimatesCountEachGemm) {
  const ModelConfig c = V3Attention();
  const int64_t heads = 128, n = 3, ctx = 1000;
  // Naive: kv_b_proj over the context (ctx × 512 → heads × (128 + 128)), then per head
  // Q·Kᵀ (192 wide) and P·V (128 wide).
  EXPECT_EQ(NaiveMlaMacs(c, heads, n, ctx), ctx * 512 * heads * 256 + n * ctx * heads * 320);
  // Absorbed: q_nope·W_UK (128 → 512), Q·latentᵀ (576 wide) and P·c_kv (512 wide), then
  // o_lat·W_UV (512 → 128).
  EXPECT_EQ(AbsorbedMlaMacs(c, heads, n, ctx),
            n * heads * 128 * 512 + n * ctx * heads * 1088 + n * heads * 512 * 128);
}

TEST(MlaFormChoiceTest, ChoosesByCost) {
  const ModelConfig c = V3Attention();
  for (const int64_t heads : {128, 16, 2}) {
    SCOPED_TRACE(heads);
    // Decode: absorbed whatever the context.
    for (const int64_t ctx : {1, 2, 100, 100000})
      EXPECT_TRUE(CpuPrefersAbsorbedMla(c, heads, 1, ctx));
    // A fresh prompt: the expansion is needed anyway and the naive attention is narrower.
    for (const int64_t n : {2, 16, 512, 8192}) EXPECT_FALSE(CpuPrefersAbsorbedMla(c, heads, n, n));
    // A few tokens after a long cached context (prefix-cache hit, short chunk, draft tokens).
    for (const int64_t n : {2, 8, 32, 128})
      EXPECT_TRUE(CpuPrefersAbsorbedMla(c, heads, n, 2048 + n));
    // A long chunk after a long context: naive again (about 170 new tokens is the crossover).
    EXPECT_FALSE(CpuPrefersAbsorbedMla(c, heads, 512, 2048 + 512));
  }
}

TEST(MlaFormChoiceTest, ForcedFormsAreObeyed) {
  const ModelConfig c = V3Attention();
  EXPECT_FALSE(CpuUsesAbsorbedMla(MlaForm::kNaive, c, 128, 1, 5000));
  EXPECT_TRUE(CpuUsesAbsorbedMla(MlaForm::kAbsorbed, c, 128, 4096, 4096));
  EXPECT_TRUE(CpuUsesAbsorbedMla(MlaForm::kAuto, c, 128, 4, 5000));
  EXPECT_FALSE(CpuUsesAbsorbedMla(MlaForm::kAuto, c, 128, 4096, 4096));
}

}  // namespace
}  // namespace moeserve::engine
