// Both grouped no-sync FP8 GEMMs (moe_grouped_gemm_cuda.h: CUDA cores and tensor cores) against
// a double-precision reference
// written here: for each row of each expert segment, the dequantized x row (E4M3 · its
// segmented scale) times the dequantized expert weight (DequantizeFp8BlockWeight). Only fp32
// summation order and the bf16 output differ, so the relative Frobenius error must be ≤ 1e-2
// (bf16 alone gives ~2e-3). Segments from real permutations: random routing, every token to
// one expert, T = 1, 128-row padding; V2-Lite gate_up and down shapes and a K that is not a
// multiple of 512. Rows past the last segment must stay untouched. Skips without a device.
#include "engine/ops/moe/moe_grouped_gemm_cuda.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "engine/ops/dtype.h"
#include "engine/ops/linear/fp8_quant.h"
#include "engine/ops/linear/fp8_segmented_layout.h"
#include "engine/ops/moe/moe_permute.h"
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

class MoeGroupedGemmCudaTest : public CudaTest {};

uint8_t RandomFiniteE4m3(TestRng& rng) {
  const uint8_t b = static_cast<uint8_t>(rng.Bits());
  return (b & 0x7F) == 0x7F ? static_cast<uint8_t>(b & 0xF0) : b;  // 0x7F, 0xFF are NaN
}

void CheckCase(TestRng& rng, const std::string& name, const std::vector<int32_t>& ids,
               int64_t tokens, int64_t top_k, int64_t experts, int64_t alignment, int64_t n,
               int64_t k) {
  SCOPED_TRACE(name + " T=" + std::to_string(tokens) + " n=" + std::to_string(n) +
               " k=" + std::to_string(k) + " alignment=" + std::to_string(alignment));
  absl::StatusOr<MoePermutation> p = BuildMoePermutation(ids, tokens, top_k, experts, alignment);
  ASSERT_TRUE(p.ok()) << p.status();
  const int64_t rows = p->num_rows(), max_rows = rows + 8;  // 8 rows no segment owns
  // Scale rows padded to a multiple of 4 columns, as Fp8ScaleStride (gemm_cublaslt.h) does.
  const int64_t groups = (k + 127) / 128, stride = (groups + 3) / 4 * 4;
  const int64_t scale_rows = (n + 127) / 128;

  std::vector<uint8_t> x(static_cast<size_t>(max_rows * k));
  for (uint8_t& b : x) b = RandomFiniteE4m3(rng);
  const std::vector<float> x_scales =
      rng.UniformFloats(static_cast<size_t>(max_rows * groups), 1e-3, 2e-3);
  std::vector<uint8_t> w(static_cast<size_t>(experts * n * k));
  for (uint8_t& b : w) b = RandomFiniteE4m3(rng);
  std::vector<float> w_scales(static_cast<size_t>(experts * scale_rows * stride), 0.0f);
  std::vector<float> w_scale_inv(static_cast<size_t>(experts * scale_rows * groups));
  for (int64_t e = 0; e < experts; ++e) {
    for (int64_t i = 0; i < scale_rows; ++i) {
      for (int64_t j = 0; j < groups; ++j) {
        const float s = static_cast<float>(rng.Uniform(1e-3, 2e-3));
        w_scales[(e * scale_rows + i) * stride + j] = s;
        w_scale_inv[(e * scale_rows + i) * groups + j] = s;
      }
    }
  }

  // Reference over the segment rows only.
  std::vector<float> expected(static_cast<size_t>(rows * n));
  for (int64_t e = 0; e < experts; ++e) {
    const int64_t begin = p->offsets[e], end = p->offsets[e + 1];
    if (begin == end) continue;
    const std::vector<float> we = DequantizeFp8BlockWeight(
        absl::MakeConstSpan(w).subspan(e * n * k, n * k),
        absl::MakeConstSpan(w_scale_inv).subspan(e * scale_rows * groups, scale_rows * groups), n,
        k);
    for (int64_t r = begin; r < end; ++r) {
      std::vector<double> xr(static_cast<size_t>(k));
      for (int64_t c = 0; c < k; ++c) {
        xr[c] = static_cast<double>(Fp8E4M3ToFloat(x[r * k + c])) *
                x_scales[SegmentedScaleIndex(begin, end, groups, r, c / 128)];
      }
      for (int64_t j = 0; j < n; ++j) {
        double sum = 0.0;
        for (int64_t c = 0; c < k; ++c) sum += xr[c] * we[j * k + c];
        expected[r * n + j] = static_cast<float>(sum);
      }
    }
  }

  DeviceArray<uint8_t> x_dev(x), w_dev(w);
  DeviceArray<float> x_scales_dev(x_scales), w_scales_dev(w_scales);
  DeviceArray<int32_t> offsets(p->offsets);
  for (const bool tensor_cores : {false, true}) {
    SCOPED_TRACE(tensor_cores ? "tensor cores" : "CUDA cores");
    DeviceArray<uint16_t> y(static_cast<size_t>(max_rows * n));
    y.Poison();
    ASSERT_TRUE(LaunchedOk(
        tensor_cores ? LaunchMoeGroupedFp8GemmMma(
                           x_dev.data(), x_scales_dev.data(), offsets.data(), experts, max_rows,
                           w_dev.data(), w_scales_dev.data(), n, k, stride, y.data(), nullptr)
                     : LaunchMoeGroupedFp8Gemm(x_dev.data(), x_scales_dev.data(), offsets.data(),
                                               experts, w_dev.data(), w_scales_dev.data(), n, k,
                                               stride, y.data(), nullptr)));
    const std::vector<uint16_t> y_host = y.Download();
    std::vector<float> actual(expected.size());
    for (size_t i = 0; i < actual.size(); ++i) actual[i] = Bf16ToFloat(y_host[i]);
    const TensorError error = CompareTensors(actual, expected);
    std::printf("%-22s %-4s T=%-4lld n=%-5lld k=%-5lld relative Frobenius error %.3g\n",
                name.c_str(), tensor_cores ? "mma" : "cuda", static_cast<long long>(tokens),
                static_cast<long long>(n), static_cast<long long>(k), std::sqrt(error.nmse));
    EXPECT_LE(std::sqrt(error.nmse), 1e-2) << error;
    for (size_t i = expected.size(); i < y_host.size(); ++i) {
      ASSERT_EQ(y_host[i], 0xFFFF) << "element " << i << " past the last segment was written";
    }
  }
}

std::vector<int32_t> DistinctRouting(TestRng& rng, int64_t tokens, int64_t top_k, int64_t experts) {
  std::vector<int32_t> ids;
  for (int64_t t = 0; t < tokens; ++t) {
    const std::vector<int32_t> perm = rng.Permutation(experts);
    ids.insert(ids.end(), perm.begin(), perm.begin() + top_k);
  }
  return ids;
}

TEST_F(MoeGroupedGemmCudaTest, MatchesDequantizedReferenceOnExpertSegments) {
  TestRng rng;
  // V2-Lite expert gate_up [2816, 2048] and down [2048, 1408] over 64 experts, top-6.
  CheckCase(rng, "V2-Lite gate_up", DistinctRouting(rng, 5, 6, 64), 5, 6, 64, 4, 2816, 2048);
  CheckCase(rng, "V2-Lite down", DistinctRouting(rng, 5, 6, 64), 5, 6, 64, 4, 2048, 1408);
  CheckCase(rng, "V2-Lite down T=1", DistinctRouting(rng, 1, 6, 64), 1, 6, 64, 4, 2048, 1408);
  // Every token to expert 3 (top-1 over 8 experts): one long segment, 7 empty.
  CheckCase(rng, "all to one expert", std::vector<int32_t>(40, 3), 40, 1, 8, 4, 256, 384);
  // 128-row padding (DeepGEMM's contiguous layout), n not a multiple of 64, k = 208.
  CheckCase(rng, "padded to 128", DistinctRouting(rng, 9, 2, 8), 9, 2, 8, 128, 200, 208);
  // Prefill-sized segments: several 64-row tiles per expert, a partial last tile, n and k
  // that are not multiples of the 128-wide tiles.
  CheckCase(rng, "prefill 300 tokens", DistinctRouting(rng, 300, 6, 16), 300, 6, 16, 4, 704, 400);
  CheckCase(rng, "all to one, 3 tiles", std::vector<int32_t>(150, 5), 150, 1, 8, 4, 136, 272);
}

TEST_F(MoeGroupedGemmCudaTest, RejectsKNotAMultipleOf16) {
  DeviceArray<uint8_t> buffer(4096);
  DeviceArray<int32_t> offsets(std::vector<int32_t>{0, 4});
  EXPECT_NE(LaunchMoeGroupedFp8Gemm(buffer.data(), reinterpret_cast<float*>(buffer.data()),
                                    offsets.data(), 1, buffer.data(),
                                    reinterpret_cast<float*>(buffer.data()), 16, 24, 1,
                                    reinterpret_cast<uint16_t*>(buffer.data()), nullptr),
            0);
}

}  // namespace
}  // namespace moeserve::engine
