// Tests of MLA weight absorption on the GPU (MlaAbsorbQuery / MlaAbsorbOutput, strided-batched
// cuBLASLt GEMMs over heads) against per-head dot products written here in double, on random
// bf16 inputs and weights for V2-Lite (16 heads) and V3 (128 heads) head counts, token counts
// 1 and 37. Outputs are NaN-poisoned first, so an unwritten q_pe column or head fails.
// Skips, saying why, without a CUDA device.
#include "engine/ops/attention/mla_absorb_cuda.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/strings/str_cat.h"
#include "engine/ops/cuda/cuda_context.h"
#include "engine/ops/dtype.h"
#include "engine/ops/linear/gemm_cublaslt.h"
#include "tests/testing/cuda_test_util.h"
#include "tests/testing/random.h"
#include "tests/testing/tensor_compare.h"

namespace moeserve::engine {
namespace {

using ::moeserve::engine::testing::CudaTest;
using ::moeserve::engine::testing::DeviceArray;
using ::moeserve::engine::testing::MaxRelErrorAtMost;
using ::moeserve::engine::testing::TestRng;

class MlaAbsorbCudaTest : public CudaTest {
 protected:
  void SetUp() override {
    CudaTest::SetUp();
    if (IsSkipped()) return;
    auto context = CudaContext::Create({.arena_bytes = 1 << 20});
    ASSERT_TRUE(context.ok()) << context.status();
    context_ = *std::move(context);
    auto gemm = CublasLtGemm::Create(*context_);
    ASSERT_TRUE(gemm.ok()) << gemm.status();
    gemm_ = *std::move(gemm);
  }

  void CheckQuery(TestRng& rng, const MlaAbsorbDims& d, int64_t tokens) {
    SCOPED_TRACE(absl::StrCat("query heads=", d.num_heads, " tokens=", tokens));
    const int64_t qk = d.nope_dim + d.rope_dim, kv = d.kv_lora_rank + d.rope_dim;
    const std::vector<uint16_t> q = rng.NormalBf16(tokens * d.num_heads * qk);
    const std::vector<uint16_t> w_uk_t =
        rng.NormalBf16(d.num_heads * d.kv_lora_rank * d.nope_dim, 0.05);
    const std::vector<float> q_f = Bf16ToFloats(q), w_f = Bf16ToFloats(w_uk_t);
    std::vector<double> expected(tokens * d.num_heads * kv);
    for (int64_t t = 0; t < tokens; ++t) {
      for (int64_t h = 0; h < d.num_heads; ++h) {
        const float* qv = q_f.data() + (t * d.num_heads + h) * qk;
        double* out = expected.data() + (t * d.num_heads + h) * kv;
        for (int64_t r = 0; r < d.kv_lora_rank; ++r) {
          const float* w = w_f.data() + (h * d.kv_lora_rank + r) * d.nope_dim;
          double dot = 0.0;
          for (int64_t i = 0; i < d.nope_dim; ++i) dot += double{qv[i]} * w[i];
          out[r] = dot;
        }
        for (int64_t i = 0; i < d.rope_dim; ++i) out[d.kv_lora_rank + i] = qv[d.nope_dim + i];
      }
    }
    DeviceArray<uint16_t> q_d(q), w_d(w_uk_t), out_d(expected.size());
    out_d.Poison();
    const absl::Status s = MlaAbsorbQuery(*gemm_, d, q_d.data(), w_d.data(), tokens, out_d.data());
    ASSERT_TRUE(s.ok()) << s;
    ASSERT_TRUE(context_->Synchronize().ok());
    EXPECT_TRUE(MaxRelErrorAtMost(Bf16ToFloats(out_d.Download()), expected, 1e-2));
  }

  void CheckOutput(TestRng& rng, const MlaAbsorbDims& d, int64_t tokens) {
    SCOPED_TRACE(absl::StrCat("output heads=", d.num_heads, " tokens=", tokens));
    const std::vector<uint16_t> o_lat = rng.NormalBf16(tokens * d.num_heads * d.kv_lora_rank);
    const std::vector<uint16_t> w_uv = rng.NormalBf16(d.num_heads * d.v_dim * d.kv_lora_rank, 0.05);
    const std::vector<float> o_f = Bf16ToFloats(o_lat), w_f = Bf16ToFloats(w_uv);
    std::vector<double> expected(tokens * d.num_heads * d.v_dim);
    for (int64_t t = 0; t < tokens; ++t) {
      for (int64_t h = 0; h < d.num_heads; ++h) {
        const float* o = o_f.data() + (t * d.num_heads + h) * d.kv_lora_rank;
        for (int64_t v = 0; v < d.v_dim; ++v) {
          const float* w = w_f.data() + (h * d.v_dim + v) * d.kv_lora_rank;
          double dot = 0.0;
          for (int64_t r = 0; r < d.kv_lora_rank; ++r) dot += double{o[r]} * w[r];
          expected[(t * d.num_heads + h) * d.v_dim + v] = dot;
        }
      }
    }
    DeviceArray<uint16_t> o_d(o_lat), w_d(w_uv), out_d(expected.size());
    out_d.Poison();
    const absl::Status s = MlaAbsorbOutput(*gemm_, d, o_d.data(), w_d.data(), tokens, out_d.data());
    ASSERT_TRUE(s.ok()) << s;
    ASSERT_TRUE(context_->Synchronize().ok());
    EXPECT_TRUE(MaxRelErrorAtMost(Bf16ToFloats(out_d.Download()), expected, 1e-2));
  }

  std::unique_ptr<CudaContext> context_;
  std::unique_ptr<CublasLtGemm> gemm_;
};

TEST_F(MlaAbsorbCudaTest, QueryAbsorptionMatchesPerHeadProducts) {
  TestRng rng;
  for (int64_t heads : {16, 128}) {
    for (int64_t tokens : {1, 37}) CheckQuery(rng, {.num_heads = heads}, tokens);
  }
}

TEST_F(MlaAbsorbCudaTest, OutputAbsorptionMatchesPerHeadProducts) {
  TestRng rng(testing::kDefaultTestSeed + 1);
  for (int64_t heads : {16, 128}) {
    for (int64_t tokens : {1, 37}) CheckOutput(rng, {.num_heads = heads}, tokens);
  }
}

TEST_F(MlaAbsorbCudaTest, RejectsBadDims) {
  const absl::Status s = MlaAbsorbQuery(*gemm_, {.num_heads = 0}, nullptr, nullptr, 1, nullptr);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_NE(s.message().find("heads=0"), absl::string_view::npos) << s;
}

}  // namespace
}  // namespace moeserve::engine
