// Tests of the CUDA MLA prefill kernel (LaunchMhaPrefillBf16) against MhaPrefillCpu on the same
// bf16-valued random inputs: 16 and 128 heads; one token; query counts and contexts that are not
// multiples of 64; chunks after a cached prefix (ctx > queries); k_pe as a strided view of
// gathered latents, as the MLA layer passes it. Outputs are NaN-poisoned before each launch.
// Skips, saying why, without a CUDA device.
#include "engine/ops/attention/mla_prefill_cuda.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <limits>
#include <vector>

#include "absl/strings/str_cat.h"
#include "engine/ops/attention/mla_prefill.h"
#include "engine/ops/dtype.h"
#include "tests/testing/cuda_test_util.h"
#include "tests/testing/random.h"
#include "tests/testing/tensor_compare.h"

namespace moeserve::engine {
namespace {

using ::moeserve::engine::testing::CudaTest;
using ::moeserve::engine::testing::DeviceArray;
using ::moeserve::engine::testing::LaunchedOk;
using ::moeserve::engine::testing::MaxRelErrorAtMost;
using ::moeserve::engine::testing::TestRng;

constexpr float kV2LiteSoftmaxScale = 0.1147214f;
constexpr int64_t kLatentStride = 576;  // k_pe lives at offset 512 of each cached latent

class MhaPrefillCudaTest : public CudaTest {
 protected:
  void Check(TestRng& rng, int64_t num_queries, int64_t ctx, int64_t heads) {
    SCOPED_TRACE(absl::StrCat("queries=", num_queries, " ctx=", ctx, " heads=", heads));
    const int64_t qk = kMhaNopeDim + kMhaRopeDim;
    const std::vector<uint16_t> q = rng.NormalBf16(num_queries * heads * qk, 0.5);
    const std::vector<uint16_t> k_nope_v = rng.NormalBf16(ctx * heads * (kMhaNopeDim + kMhaVDim));
    const std::vector<uint16_t> latents = rng.NormalBf16(ctx * kLatentStride);

    const std::vector<float> q_f = Bf16ToFloats(q), kv_f = Bf16ToFloats(k_nope_v),
                             latents_f = Bf16ToFloats(latents);
    std::vector<float> expected(num_queries * heads * kMhaVDim);
    MhaPrefillCpu({.q = q_f.data(),
                   .k_nope_v = kv_f.data(),
                   .k_pe = latents_f.data() + 512,
                   .k_pe_stride = kLatentStride,
                   .num_queries = num_queries,
                   .ctx = ctx,
                   .num_heads = heads,
                   .softmax_scale = kV2LiteSoftmaxScale,
                   .out = expected.data()});

    DeviceArray<uint16_t> q_d(q), kv_d(k_nope_v), latents_d(latents), out_d(expected.size());
    out_d.Poison();
    const MhaPrefillCudaArgs args{.q = q_d.data(),
                                  .k_nope_v = kv_d.data(),
                                  .k_pe = latents_d.data() + 512,
                                  .k_pe_stride = kLatentStride,
                                  .num_queries = num_queries,
                                  .ctx = ctx,
                                  .num_heads = heads,
                                  .softmax_scale = kV2LiteSoftmaxScale,
                                  .out = out_d.data()};
    ASSERT_TRUE(LaunchedOk(LaunchMhaPrefillBf16(args, nullptr)));
    EXPECT_TRUE(MaxRelErrorAtMost(Bf16ToFloats(out_d.Download()), expected, 2e-2));
  }
};

TEST_F(MhaPrefillCudaTest, WholePromptsOfVariousLengths) {
  TestRng rng;
  for (int64_t n : {1, 37, 64, 65, 200}) Check(rng, n, n, 16);
}

TEST_F(MhaPrefillCudaTest, ChunksAfterACachedPrefix) {
  TestRng rng(testing::kDefaultTestSeed + 1);
  Check(rng, 1, 300, 16);   // one new token over a long prefix
  Check(rng, 37, 300, 16);  // a chunk that ends mid-tile
  Check(rng, 128, 1000, 16);
}

TEST_F(MhaPrefillCudaTest, HundredTwentyEightHeads) {
  TestRng rng(testing::kDefaultTestSeed + 2);
  Check(rng, 70, 70, 128);
  Check(rng, 33, 161, 128);
}

TEST_F(MhaPrefillCudaTest, RejectsBadShapes) {
  DeviceArray<uint16_t> buffer(1024);
  MhaPrefillCudaArgs args{.q = buffer.data(),
                          .k_nope_v = buffer.data(),
                          .k_pe = buffer.data(),
                          .k_pe_stride = 576,
                          .num_queries = 5,
                          .ctx = 4,  // fewer keys than queries
                          .num_heads = 1,
                          .out = buffer.data()};
  EXPECT_NE(LaunchMhaPrefillBf16(args, nullptr), 0);
  args.ctx = 5;
  args.k_pe_stride = 577;  // rows not 16-byte aligned
  EXPECT_NE(LaunchMhaPrefillBf16(args, nullptr), 0);
}

}  // namespace
}  // namespace moeserve::engine
