// cuBLASLt GEMMs against an fp32 CPU reference (GemmCpu) on random inputs at DeepSeek-V3 and
// V2-Lite projection shapes:
//  * BF16: bf16 X, W → bf16 Y, relative Frobenius error ≤ 1e-2.
//  * FP8 block-scaled (reference §5.3): W quantized with QuantizeFp8BlockWeight, X by the CUDA
//    activation quantizer; the reference is GemmCpu on both operands dequantized in fp32, so
//    only accumulation order and the bf16 output differ: relative Frobenius error ≤ 1e-2.
//    All three paths run: the recipe's operand order, the sample's (Yᵀ, then a transpose) and
//    the dequantize-then-BF16 fallback. On a GPU with block-scaled FP8 (sm_90), a shape that
//    meets cuBLASLt's documented rules must take a cuBLASLt path: the fallback there fails the
//    test instead of passing slowly (issue 19).
// Outputs are NaN-poisoned first. Skips without a CUDA device.
#include "engine/ops/linear/gemm_cublaslt.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <initializer_list>
#include <string>
#include <vector>

#include "engine/ops/dtype.h"
#include "engine/ops/linear/fp8_quant.h"
#include "engine/ops/linear/fp8_quant_cuda.h"
#include "engine/ops/linear/gemm.h"
#include "tests/testing/cuda_test_util.h"
#include "tests/testing/random.h"
#include "tests/testing/tensor_compare.h"

namespace moeserve::engine {
namespace {

using ::moeserve::engine::testing::CompareTensors;
using ::moeserve::engine::testing::CudaTest;
using ::moeserve::engine::testing::DeviceArray;
using ::moeserve::engine::testing::LaunchedOk;
using ::moeserve::engine::testing::TensorError;
using ::moeserve::engine::testing::TestRng;

struct ProjectionShape {
  const char* name;
  int64_t n;  // out_features
  int64_t k;  // in_features
};

// V3 (hidden 7168, 128 heads, q_lora 1536, kv_lora 512, moe_intermediate 2048) and V2-Lite
// (hidden 2048, 16 heads, no q_lora, expert 1408, dense 10944).
constexpr ProjectionShape kShapes[] = {
    {"V3 q_a_proj", 1536, 7168},
    {"V3 q_b_proj", 24576, 1536},
    {"V3 kv_a_proj", 576, 7168},
    {"V3 o_proj", 7168, 16384},
    {"V3 expert gate_up", 4096, 7168},
    {"V3 expert down", 7168, 2048},
    {"V2-Lite q_proj", 3072, 2048},
    {"V2-Lite kv_b_proj", 4096, 512},
    {"V2-Lite expert gate_up", 2816, 2048},
    {"V2-Lite expert down", 2048, 1408},
    {"V2-Lite dense down", 2048, 10944},
};

::testing::AssertionResult RelativeFrobeniusAtMost(const std::vector<float>& actual,
                                                   const std::vector<float>& reference,
                                                   double tolerance) {
  const TensorError e = CompareTensors(actual, reference);
  const double rel = std::sqrt(e.nmse);
  if (!(rel <= tolerance)) {
    return ::testing::AssertionFailure()
           << "relative Frobenius " << rel << " > " << tolerance << " (" << e << ")";
  }
  return ::testing::AssertionSuccess();
}

class CublasLtGemmTest : public CudaTest {
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
    auto transposed = CublasLtGemm::Create(
        *context_, {.first_fp8_path = Fp8GemmPath::kCublasLtBlockScaledTransposed});
    ASSERT_TRUE(transposed.ok()) << transposed.status();
    transposed_ = *std::move(transposed);
    auto fallback =
        CublasLtGemm::Create(*context_, {.first_fp8_path = Fp8GemmPath::kDequantizedBf16});
    ASSERT_TRUE(fallback.ok()) << fallback.status();
    fallback_ = *std::move(fallback);
    std::printf("device: %s\n", context_->device().ToString().c_str());
  }

  std::unique_ptr<CudaContext> context_;
  std::unique_ptr<CublasLtGemm> gemm_;
  std::unique_ptr<CublasLtGemm> transposed_;  // starts at the sample's operand order
  std::unique_ptr<CublasLtGemm> fallback_;
};

TEST_F(CublasLtGemmTest, Bf16MatchesFp32Reference) {
  TestRng rng;
  for (const ProjectionShape& shape : kShapes) {
    for (const int64_t m : {int64_t{1}, int64_t{37}}) {
      SCOPED_TRACE(std::string(shape.name) + " m=" + std::to_string(m));
      const std::vector<uint16_t> x = rng.NormalBf16(static_cast<size_t>(m * shape.k));
      const std::vector<uint16_t> w = rng.NormalBf16(static_cast<size_t>(shape.n * shape.k), 0.02);
      std::vector<float> expected(static_cast<size_t>(m * shape.n));
      const std::vector<float> xf = Bf16ToFloats(x), wf = Bf16ToFloats(w);
      GemmCpu(xf.data(), shape.k, wf.data(), expected.data(), shape.n, m, shape.n, shape.k);

      DeviceArray<uint16_t> x_dev(x), w_dev(w);
      DeviceArray<uint16_t> y_dev(expected.size());
      DeviceArray<float> y32_dev(expected.size());
      y_dev.Poison();
      y32_dev.Poison();
      const absl::Status s = gemm_->Bf16(x_dev.data(), w_dev.data(), y_dev.data(),
                                         GemmOutputType::kBf16, m, shape.n, shape.k);
      ASSERT_TRUE(s.ok()) << s;
      const absl::Status s32 = gemm_->Bf16(x_dev.data(), w_dev.data(), y32_dev.data(),
                                           GemmOutputType::kF32, m, shape.n, shape.k);
      ASSERT_TRUE(s32.ok()) << s32;
      ASSERT_TRUE(context_->Synchronize().ok());
      EXPECT_TRUE(RelativeFrobeniusAtMost(Bf16ToFloats(y_dev.Download()), expected, 1e-2));
      // Tensor cores add the products of each 16-element k-block into fp32 by truncation, not
      // by rounding to nearest: ~2e-5 at K = 16384. A layout or operand error is O(1).
      EXPECT_TRUE(RelativeFrobeniusAtMost(y32_dev.Download(), expected, 1e-4));
    }
  }
}

// Runs one FP8 GEMM through `gemm` and compares with the fp32 dequantized reference. On sm_90
// the path must be one of `allowed` (cuBLASLt's rules: N and T padded to 4, K a multiple of 16,
// all pointers 16-B aligned, which DeviceArray's cudaMalloc gives).
void CheckFp8(CublasLtGemm& gemm, TestRng& rng, const ProjectionShape& shape, int64_t tokens,
              std::initializer_list<Fp8GemmPath> allowed) {
  const int64_t padded = Fp8PaddedTokens(tokens);
  const int64_t groups = (shape.k + kFp8BlockSize - 1) / kFp8BlockSize;
  const std::vector<float> w = rng.NormalFloats(static_cast<size_t>(shape.n * shape.k), 0.02);
  const Fp8BlockWeight wq = QuantizeFp8BlockWeight(w, shape.n, shape.k);
  const std::vector<float> w_deq = DequantizeFp8BlockWeight(wq.fp8, wq.scale_inv, shape.n, shape.k);
  const std::vector<float> x = rng.NormalFloats(static_cast<size_t>(tokens * shape.k));

  DeviceArray<uint8_t> w_dev(wq.fp8);
  DeviceArray<float> w_scales_dev(PadFp8WeightScales(wq.scale_inv, shape.n, shape.k));
  DeviceArray<float> x_dev(x);
  DeviceArray<uint8_t> xq_dev(static_cast<size_t>(padded * shape.k));
  DeviceArray<float> x_scales_dev(static_cast<size_t>(groups * padded));
  DeviceArray<uint16_t> y_dev(static_cast<size_t>(padded * shape.n));
  y_dev.Poison();
  ASSERT_TRUE(LaunchedOk(LaunchQuantizeActivationsFp8F32(
      x_dev.data(), tokens, padded, shape.k, xq_dev.data(), x_scales_dev.data(), nullptr)));
  const Fp8WeightView view{w_dev.data(), w_scales_dev.data(), shape.n, shape.k,
                           Fp8ScaleStride(shape.k)};
  auto path = gemm.Fp8PathFor({xq_dev.data(), x_scales_dev.data(), view, y_dev.data(), padded});
  ASSERT_TRUE(path.ok()) << path.status();
  std::printf("%-24s T=%-5lld path=%s\n", shape.name, static_cast<long long>(tokens),
              Fp8GemmPathName(*path));
  if (gemm.context().device().supports_block_scaled_fp8() && shape.n % 4 == 0 &&
      shape.k % 16 == 0) {
    EXPECT_NE(std::find(allowed.begin(), allowed.end(), *path), allowed.end())
        << "took " << Fp8GemmPathName(*path) << " on " << gemm.context().device().ToString();
  }
  const absl::Status s =
      gemm.Fp8BlockScaled(xq_dev.data(), x_scales_dev.data(), view, y_dev.data(), padded);
  ASSERT_TRUE(s.ok()) << s;
  ASSERT_TRUE(gemm.context().Synchronize().ok());

  // Reference: the GPU's own quantized X, dequantized in fp32.
  const std::vector<uint8_t> xq = xq_dev.Download();
  const std::vector<float> x_scales = x_scales_dev.Download();
  std::vector<float> x_deq(static_cast<size_t>(tokens * shape.k));
  for (int64_t t = 0; t < tokens; ++t) {
    for (int64_t c = 0; c < shape.k; ++c) {
      x_deq[t * shape.k + c] =
          Fp8E4M3ToFloat(xq[t * shape.k + c]) * x_scales[(c / kFp8BlockSize) * padded + t];
    }
  }
  std::vector<float> expected(static_cast<size_t>(tokens * shape.n));
  GemmCpu(x_deq.data(), shape.k, w_deq.data(), expected.data(), shape.n, tokens, shape.n, shape.k);
  std::vector<float> y = Bf16ToFloats(y_dev.Download());
  y.resize(expected.size());  // padding rows are not part of the result
  EXPECT_TRUE(RelativeFrobeniusAtMost(y, expected, 1e-2));
}

TEST_F(CublasLtGemmTest, Fp8BlockScaledMatchesDequantizedReference) {
  TestRng rng;
  for (const ProjectionShape& shape : kShapes) {
    for (const int64_t tokens : {int64_t{1}, int64_t{37}, int64_t{128}}) {
      SCOPED_TRACE(std::string(shape.name) + " T=" + std::to_string(tokens));
      CheckFp8(*gemm_, rng, shape, tokens,
               {Fp8GemmPath::kCublasLtBlockScaled, Fp8GemmPath::kCublasLtBlockScaledTransposed});
    }
  }
}

// The sample's operand order (A = X in VEC128, B = W in BLK128x128) writes Yᵀ; the transpose
// must give the same Y. Runs wherever cuBLASLt has that order, not only as a fallback.
TEST_F(CublasLtGemmTest, Fp8TransposedOperandOrderMatchesDequantizedReference) {
  TestRng rng(testing::kDefaultTestSeed + 2);
  for (const ProjectionShape& shape : kShapes) {
    for (const int64_t tokens : {int64_t{1}, int64_t{37}, int64_t{128}}) {
      SCOPED_TRACE(std::string(shape.name) + " T=" + std::to_string(tokens) + " transposed");
      CheckFp8(*transposed_, rng, shape, tokens, {Fp8GemmPath::kCublasLtBlockScaledTransposed});
    }
  }
}

TEST_F(CublasLtGemmTest, Fp8FallbackMatchesDequantizedReference) {
  TestRng rng(testing::kDefaultTestSeed + 1);
  for (const ProjectionShape& shape : kShapes) {
    SCOPED_TRACE(std::string(shape.name) + " fallback");
    CheckFp8(*fallback_, rng, shape, 9, {Fp8GemmPath::kDequantizedBf16});
  }
}

// Needs no device: the host-side layout helpers the GEMM relies on.
TEST(CublasLtGemmLayoutTest, ScalePaddingKeepsBlocksInPlace) {
  const std::vector<float> scales = {1, 2, 3, 4, 5, 6};  // [2 row blocks, 3 col blocks]
  const std::vector<float> padded = PadFp8WeightScales(scales, 200, 300);
  EXPECT_EQ(Fp8ScaleStride(300), 4);
  EXPECT_EQ(padded, (std::vector<float>{1, 2, 3, 0, 4, 5, 6, 0}));
  EXPECT_EQ(Fp8PaddedTokens(37), 40);
  EXPECT_EQ(Fp8PaddedTokens(0), 0);
}

}  // namespace
}  // namespace moeserve::engine
