// The CUDA kernels of engine/ops (embedding, SiLU-and-mul, RoPE, FP8 activation quantization,
// the MoE router, greedy argmax) against their CPU twins on fresh random inputs at DeepSeek-V3
// and V2-Lite shapes. Outputs are NaN-poisoned before each launch and NaN never passes the
// comparisons. Skips, with cudaGetDeviceCount's error, when no CUDA device is present.
// (RMSNorm has its own file, norm/rms_norm_cuda_test.cc; the GEMMs linear/gemm_cublaslt_test.cc.)
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "engine/ops/activation/silu_mul.h"
#include "engine/ops/activation/silu_mul_cuda.h"
#include "engine/ops/dtype.h"
#include "engine/ops/embedding/embedding_cuda.h"
#include "engine/ops/linear/fp8_quant.h"
#include "engine/ops/linear/fp8_quant_cuda.h"
#include "engine/ops/linear/transpose_cuda.h"
#include "engine/ops/moe/moe_route.h"
#include "engine/ops/moe/moe_route_cuda.h"
#include "engine/ops/rope/rope.h"
#include "engine/ops/rope/rope_cuda.h"
#include "engine/sampling/argmax_cuda.h"
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

// ---------------------------------------------------------------- embedding
using EmbeddingCudaTest = CudaTest;

TEST_F(EmbeddingCudaTest, GathersRowsExactlyAndZeroesOutOfRangeIds) {
  TestRng rng;
  for (const int64_t hidden : {int64_t{7168}, int64_t{2048}, int64_t{100}}) {
    SCOPED_TRACE("hidden=" + std::to_string(hidden));
    const int64_t vocab = 1000, tokens = 37;
    const std::vector<uint16_t> table = rng.NormalBf16(static_cast<size_t>(vocab * hidden));
    std::vector<int32_t> ids(static_cast<size_t>(tokens));
    for (int32_t& id : ids) id = static_cast<int32_t>(rng.Int(0, vocab - 1));
    ids[3] = -1;  // out of range: zeros, never a stray read
    ids[5] = static_cast<int32_t>(vocab);
    DeviceArray<uint16_t> table_dev(table);
    DeviceArray<int32_t> ids_dev(ids);
    DeviceArray<uint16_t> out_dev(static_cast<size_t>(tokens * hidden));
    out_dev.Poison();
    ASSERT_TRUE(LaunchedOk(LaunchEmbeddingGatherBf16(
        table_dev.data(), vocab, hidden, ids_dev.data(), tokens, out_dev.data(), nullptr)));
    const std::vector<uint16_t> out = out_dev.Download();
    for (int64_t t = 0; t < tokens; ++t) {
      for (int64_t i = 0; i < hidden; ++i) {
        const uint16_t expected =
            ids[t] < 0 || ids[t] >= vocab ? uint16_t{0} : table[ids[t] * hidden + i];
        ASSERT_EQ(out[t * hidden + i], expected) << "token " << t << " channel " << i;
      }
    }
  }
}

// The MTP module's gather: rows at position 0 are zeros, decided per token on the device.
TEST_F(EmbeddingCudaTest, MtpGatherZeroesTheRowsAtPositionZero) {
  TestRng rng;
  const int64_t vocab = 500, hidden = 256, tokens = 23;
  const std::vector<uint16_t> table = rng.NormalBf16(static_cast<size_t>(vocab * hidden));
  std::vector<int32_t> ids(static_cast<size_t>(tokens)), positions(ids.size());
  for (int64_t t = 0; t < tokens; ++t) {
    ids[t] = static_cast<int32_t>(rng.Int(0, vocab - 1));
    positions[t] = rng.Int(0, 2) == 0 ? 0 : static_cast<int32_t>(rng.Int(1, 4000));
  }
  positions[0] = 0;
  positions[1] = 1;
  DeviceArray<uint16_t> table_dev(table);
  DeviceArray<int32_t> ids_dev(ids), positions_dev(positions);
  DeviceArray<uint16_t> out_dev(static_cast<size_t>(tokens * hidden));
  out_dev.Poison();
  ASSERT_TRUE(LaunchedOk(LaunchMtpEmbeddingGatherBf16(table_dev.data(), vocab, hidden,
                                                      ids_dev.data(), positions_dev.data(), tokens,
                                                      out_dev.data(), nullptr)));
  const std::vector<uint16_t> out = out_dev.Download();
  for (int64_t t = 0; t < tokens; ++t) {
    for (int64_t i = 0; i < hidden; ++i) {
      const uint16_t expected = positions[t] == 0 ? uint16_t{0} : table[ids[t] * hidden + i];
      ASSERT_EQ(out[t * hidden + i], expected) << "token " << t << " channel " << i;
    }
  }
}

// ---------------------------------------------------------------- SiLU-and-mul
using SiluMulCudaTest = CudaTest;

TEST_F(SiluMulCudaTest, MatchesCpuAtDeepSeekWidths) {
  TestRng rng;
  // V3 expert / shared (2048), V3 dense (18432), V2-Lite expert (1408) and dense (10944).
  for (const int64_t width : {int64_t{2048}, int64_t{18432}, int64_t{1408}, int64_t{10944}}) {
    SCOPED_TRACE("width=" + std::to_string(width));
    const int64_t tokens = 19;
    const std::vector<float> gate_up =
        rng.NormalFloats(static_cast<size_t>(tokens * 2 * width), 2.0);
    std::vector<float> expected(static_cast<size_t>(tokens * width));
    SiluMulCpu(gate_up.data(), tokens, width, expected.data());

    DeviceArray<float> in_f32(gate_up);
    DeviceArray<float> out_f32(expected.size());
    out_f32.Poison();
    ASSERT_TRUE(
        LaunchedOk(LaunchSiluMulF32(in_f32.data(), tokens, width, out_f32.data(), nullptr)));
    EXPECT_TRUE(MaxRelErrorAtMost(out_f32.Download(), expected, 1e-6));

    // bf16: the CPU runs on the same bf16-rounded inputs; the only extra error is the output
    // rounding.
    const std::vector<uint16_t> gate_up_bf16 = FloatsToBf16(gate_up);
    std::vector<float> expected_bf16(expected.size());
    SiluMulCpu(Bf16ToFloats(gate_up_bf16).data(), tokens, width, expected_bf16.data());
    DeviceArray<uint16_t> in_bf16(gate_up_bf16);
    DeviceArray<uint16_t> out_bf16(expected.size());
    out_bf16.Poison();
    ASSERT_TRUE(
        LaunchedOk(LaunchSiluMulBf16(in_bf16.data(), tokens, width, out_bf16.data(), nullptr)));
    EXPECT_TRUE(MaxRelErrorAtMost(Bf16ToFloats(out_bf16.Download()), expected_bf16, 1e-2));
  }
}

// ---------------------------------------------------------------- RoPE
using RopeCudaTest = CudaTest;

struct RopeShape {
  const char* name;
  int64_t heads;
  double base;
  YarnParams yarn;
  int64_t max_position;
};

TEST_F(RopeCudaTest, MatchesCpuOnQpeOfEveryHeadWithYarn) {
  TestRng rng;
  const RopeShape shapes[] = {
      {"V3", 128, 10000.0, {40.0, 4096, 32.0, 1.0, 1.0, 1.0}, 163840},
      {"V2-Lite", 16, 10000.0, {40.0, 4096, 32.0, 1.0, 0.707, 0.707}, 163840},
  };
  const int64_t rotary_dim = 64, head_dim = 192, nope = 128;
  for (const RopeShape& shape : shapes) {
    SCOPED_TRACE(shape.name);
    const RopeTable table = MakeRopeTable(rotary_dim, shape.base, shape.yarn);
    const int64_t tokens = 23;
    std::vector<int32_t> positions(static_cast<size_t>(tokens));
    for (int32_t& p : positions) p = static_cast<int32_t>(rng.Int(0, shape.max_position - 1));
    positions[0] = 0;
    const int64_t token_stride = shape.heads * head_dim;
    const std::vector<float> q = rng.NormalFloats(static_cast<size_t>(tokens * token_stride));

    std::vector<float> expected = q;  // q_pe = the last 64 of each head's 192
    ApplyRopeInterleavedCpu(table, positions.data(), tokens, shape.heads, token_stride, head_dim,
                            expected.data() + nope);

    DeviceArray<float> inv_freq(table.inv_freq);
    DeviceArray<int32_t> positions_dev(positions);
    DeviceArray<float> x_f32(q);
    ASSERT_TRUE(LaunchedOk(LaunchRopeInterleavedF32(
        inv_freq.data(), rotary_dim, table.attention_scaling, positions_dev.data(), tokens,
        shape.heads, token_stride, head_dim, x_f32.data() + nope, nullptr)));
    // cosf/sinf differ from std::cos/sin by an ulp or two at large angles.
    EXPECT_TRUE(MaxRelErrorAtMost(x_f32.Download(), expected, 2e-6));

    const std::vector<uint16_t> q_bf16 = FloatsToBf16(q);
    std::vector<float> expected_bf16 = Bf16ToFloats(q_bf16);
    ApplyRopeInterleavedCpu(table, positions.data(), tokens, shape.heads, token_stride, head_dim,
                            expected_bf16.data() + nope);
    DeviceArray<uint16_t> x_bf16(q_bf16);
    ASSERT_TRUE(LaunchedOk(LaunchRopeInterleavedBf16(
        inv_freq.data(), rotary_dim, table.attention_scaling, positions_dev.data(), tokens,
        shape.heads, token_stride, head_dim, x_bf16.data() + nope, nullptr)));
    EXPECT_TRUE(MaxRelErrorAtMost(Bf16ToFloats(x_bf16.Download()), expected_bf16, 1e-2));
  }
}

// ---------------------------------------------------------------- FP8 activation quantization
using Fp8QuantCudaTest = CudaTest;

// Checks q and the transposed scales bit for bit against QuantizeActivationsFp8 on `x`, and the
// padding rows (q = 0, finite scale).
void CheckQuantization(const std::vector<float>& x, int64_t rows, int64_t padded_rows, int64_t cols,
                       const std::vector<uint8_t>& q, const std::vector<float>& scales) {
  const int64_t groups = (cols + kFp8BlockSize - 1) / kFp8BlockSize;
  std::vector<uint8_t> q_cpu(static_cast<size_t>(rows * cols));
  std::vector<float> scales_cpu(static_cast<size_t>(rows * groups));
  QuantizeActivationsFp8(x, rows, cols, absl::MakeSpan(q_cpu), absl::MakeSpan(scales_cpu));
  int64_t q_mismatches = 0;
  for (int64_t t = 0; t < rows; ++t) {
    for (int64_t c = 0; c < cols; ++c) q_mismatches += q[t * cols + c] != q_cpu[t * cols + c];
    for (int64_t g = 0; g < groups; ++g) {
      ASSERT_EQ(scales[g * padded_rows + t], scales_cpu[t * groups + g])
          << "scale of token " << t << " group " << g;
    }
  }
  EXPECT_EQ(q_mismatches, 0);
  for (int64_t t = rows; t < padded_rows; ++t) {
    for (int64_t c = 0; c < cols; ++c) ASSERT_EQ(q[t * cols + c], 0) << "padding row " << t;
    for (int64_t g = 0; g < groups; ++g) ASSERT_TRUE(std::isfinite(scales[g * padded_rows + t]));
  }
}

TEST_F(Fp8QuantCudaTest, MatchesCpuBitForBitWithTransposedScales) {
  TestRng rng;
  // V3 hidden and o_proj input, V2-Lite hidden and expert down input (L = 11), V2-Lite dense
  // down input (a partial last group).
  for (const int64_t cols :
       {int64_t{7168}, int64_t{16384}, int64_t{2048}, int64_t{1408}, int64_t{10944}}) {
    for (const int64_t rows : {int64_t{1}, int64_t{37}, int64_t{64}}) {
      SCOPED_TRACE("rows=" + std::to_string(rows) + " cols=" + std::to_string(cols));
      const int64_t padded = (rows + 3) / 4 * 4;
      const int64_t groups = (cols + kFp8BlockSize - 1) / kFp8BlockSize;
      std::vector<float> x = rng.NormalFloats(static_cast<size_t>(rows * cols), 3.0);
      for (int64_t c = 0; c < std::min<int64_t>(cols, 128); ++c) x[c] = 0.0f;  // amax floor
      x[cols - 1] = 1e4f;                                                      // large value

      DeviceArray<float> x_dev(x);
      DeviceArray<uint8_t> q_dev(static_cast<size_t>(padded * cols));
      DeviceArray<float> scales_dev(static_cast<size_t>(groups * padded));
      q_dev.Poison();
      scales_dev.Poison();
      ASSERT_TRUE(LaunchedOk(LaunchQuantizeActivationsFp8F32(
          x_dev.data(), rows, padded, cols, q_dev.data(), scales_dev.data(), nullptr)));
      CheckQuantization(x, rows, padded, cols, q_dev.Download(), scales_dev.Download());

      const std::vector<uint16_t> x_bf16 = FloatsToBf16(x);
      DeviceArray<uint16_t> xb_dev(x_bf16);
      q_dev.Poison();
      scales_dev.Poison();
      ASSERT_TRUE(LaunchedOk(LaunchQuantizeActivationsFp8Bf16(
          xb_dev.data(), rows, padded, cols, q_dev.data(), scales_dev.data(), nullptr)));
      CheckQuantization(Bf16ToFloats(x_bf16), rows, padded, cols, q_dev.Download(),
                        scales_dev.Download());
    }
  }
}

TEST_F(Fp8QuantCudaTest, DequantizeKernelsInvertTheLayouts) {
  TestRng rng;
  const int64_t n = 576, k = 1408;  // partial row block (576 = 4.5 × 128), L = 11
  const std::vector<float> w = rng.NormalFloats(static_cast<size_t>(n * k));
  const Fp8BlockWeight quantized = QuantizeFp8BlockWeight(w, n, k);
  const std::vector<float> expected =
      DequantizeFp8BlockWeight(quantized.fp8, quantized.scale_inv, n, k);
  DeviceArray<uint8_t> fp8(quantized.fp8);
  DeviceArray<float> scales(quantized.scale_inv);
  DeviceArray<uint16_t> out(static_cast<size_t>(n * k));
  out.Poison();
  ASSERT_TRUE(LaunchedOk(LaunchDequantizeFp8BlockWeightBf16(
      fp8.data(), scales.data(), (k + 127) / 128, n, k, out.data(), nullptr)));
  EXPECT_TRUE(MaxRelErrorAtMost(Bf16ToFloats(out.Download()), expected, 1e-2));
}

// ---------------------------------------------------------------- BF16 transpose
using TransposeCudaTest = CudaTest;

// Exact: a transpose moves bits. Shapes cover whole tiles, ragged edges and single rows/columns
// (Yᵀ of a one-token GEMM is [N, 4] after padding; [N, 1] and [1, N] are the degenerate ends).
TEST_F(TransposeCudaTest, MovesEveryElementExactly) {
  TestRng rng;
  for (const auto& [rows, cols] : std::vector<std::pair<int64_t, int64_t>>{
           {64, 32}, {7168, 4}, {4096, 40}, {37, 1000}, {1, 577}, {577, 1}, {24576, 132}}) {
    SCOPED_TRACE(std::to_string(rows) + "x" + std::to_string(cols));
    const std::vector<uint16_t> in = rng.NormalBf16(static_cast<size_t>(rows * cols));
    DeviceArray<uint16_t> in_dev(in);
    DeviceArray<uint16_t> out_dev(in.size());
    out_dev.Poison();
    ASSERT_TRUE(
        LaunchedOk(LaunchTransposeBf16(in_dev.data(), rows, cols, out_dev.data(), nullptr)));
    const std::vector<uint16_t> out = out_dev.Download();
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t c = 0; c < cols; ++c) {
        ASSERT_EQ(out[c * rows + r], in[r * cols + c]) << "element (" << r << ", " << c << ")";
      }
    }
  }
}

// ---------------------------------------------------------------- MoE router
using RouteCudaTest = CudaTest;

struct RouterCase {
  const char* name;
  RoutingParams params;
};

// `nan_fraction` of the logits become NaN (a diverged activation): the kernel must read them as
// −inf, as RouteCpu does, so a NaN expert is never chosen over a finite one.
void CheckRouting(TestRng& rng, RoutingParams params, int64_t tokens, double nan_fraction = 0.0) {
  const int64_t e = params.num_experts, k = params.top_k;
  std::vector<float> logits = rng.NormalFloats(static_cast<size_t>(tokens * e), 2.0);
  for (float& logit : logits) {
    if (rng.Uniform(0.0, 1.0) < nan_fraction) logit = std::numeric_limits<float>::quiet_NaN();
  }
  std::vector<float> bias;
  if (params.rule == RoutingRule::kSigmoidNoauxTc) bias = rng.UniformFloats(e, -0.5, 0.5);
  std::vector<int32_t> ids_cpu(static_cast<size_t>(tokens * k));
  std::vector<float> weights_cpu(ids_cpu.size());
  RoutingParams cpu_params = params;
  cpu_params.correction_bias = bias.empty() ? nullptr : bias.data();
  RouteCpu(cpu_params, logits.data(), tokens, ids_cpu.data(), weights_cpu.data());

  DeviceArray<float> logits_dev(logits);
  DeviceArray<float> bias_dev(bias.empty() ? std::vector<float>(1) : bias);
  DeviceArray<int32_t> ids_dev(ids_cpu.size());
  DeviceArray<float> weights_dev(ids_cpu.size());
  ids_dev.Poison();
  weights_dev.Poison();
  RoutingParams gpu_params = params;
  gpu_params.correction_bias = bias.empty() ? nullptr : bias_dev.data();
  ASSERT_TRUE(LaunchedOk(LaunchRouteCuda(gpu_params, logits_dev.data(), tokens, ids_dev.data(),
                                         weights_dev.data(), nullptr)));
  const std::vector<int32_t> ids = ids_dev.Download();
  const std::vector<float> weights = weights_dev.Download();
  // Sets per token (tie order is not part of the contract, reference §3.3), then the weight of
  // each selected expert.
  for (int64_t t = 0; t < tokens; ++t) {
    std::set<int32_t> cpu(ids_cpu.begin() + t * k, ids_cpu.begin() + (t + 1) * k);
    std::set<int32_t> gpu(ids.begin() + t * k, ids.begin() + (t + 1) * k);
    ASSERT_EQ(gpu, cpu) << "token " << t;
    for (int64_t i = 0; i < k; ++i) {
      const int32_t expert = ids[t * k + i];
      // At these sizes every token keeps far more than top_k finite logits.
      ASSERT_FALSE(std::isnan(logits[t * e + expert])) << "token " << t << " chose NaN expert";
      for (int64_t j = 0; j < k; ++j) {
        if (ids_cpu[t * k + j] != expert) continue;
        const float expected = weights_cpu[t * k + j];
        ASSERT_TRUE(std::isfinite(weights[t * k + i]));
        ASSERT_NEAR(weights[t * k + i], expected, 1e-5f * std::max(1.0f, std::fabs(expected)))
            << "token " << t << " expert " << expert;
      }
    }
  }
}

TEST_F(RouteCudaTest, MatchesCpuForAllThreeRules) {
  TestRng rng;
  RoutingParams v3;  // noaux_tc: 256 experts, 8 groups keep 4, top-8, renormalised, × 2.5
  v3.rule = RoutingRule::kSigmoidNoauxTc;
  v3.num_experts = 256;
  v3.top_k = 8;
  v3.num_groups = 8;
  v3.topk_groups = 4;
  v3.renormalize = true;
  v3.scaling = 2.5f;
  RoutingParams v2;  // group-limited greedy: 160 experts, 8 groups keep 3, top-6, × 16
  v2.rule = RoutingRule::kSoftmaxGroupLimited;
  v2.num_experts = 160;
  v2.top_k = 6;
  v2.num_groups = 8;
  v2.topk_groups = 3;
  v2.scaling = 16.0f;
  RoutingParams v2_lite;  // greedy: 64 experts, top-6
  v2_lite.rule = RoutingRule::kSoftmaxGreedy;
  v2_lite.num_experts = 64;
  v2_lite.top_k = 6;
  for (const RouterCase& c :
       {RouterCase{"V3", v3}, RouterCase{"V2", v2}, RouterCase{"V2-Lite", v2_lite}}) {
    SCOPED_TRACE(c.name);
    CheckRouting(rng, c.params, 1);
    CheckRouting(rng, c.params, 133);
  }
}

TEST_F(RouteCudaTest, NanLogitsAreNeverChosenAndMatchCpu) {
  TestRng rng(testing::kDefaultTestSeed + 7);
  RoutingParams v3;
  v3.rule = RoutingRule::kSigmoidNoauxTc;
  v3.num_experts = 256;
  v3.top_k = 8;
  v3.num_groups = 8;
  v3.topk_groups = 4;
  v3.renormalize = true;
  v3.scaling = 2.5f;
  RoutingParams v2_lite;
  v2_lite.rule = RoutingRule::kSoftmaxGreedy;
  v2_lite.num_experts = 64;
  v2_lite.top_k = 6;
  for (const RouterCase& c : {RouterCase{"V3", v3}, RouterCase{"V2-Lite", v2_lite}}) {
    SCOPED_TRACE(c.name);
    // The first candidate each thread sees is often a NaN at 30 %: the case that went wrong.
    CheckRouting(rng, c.params, 64, 0.3);
  }
}

// ---------------------------------------------------------------- argmax
using ArgmaxCudaTest = CudaTest;

// The CPU sampler's greedy rule: first maximum, NaN never wins, 0 when all are NaN.
int32_t ReferenceArgmax(const float* row, int64_t vocab) {
  int32_t best = -1;
  for (int64_t i = 0; i < vocab; ++i) {
    if (std::isnan(row[i])) continue;
    if (best < 0 || row[i] > row[best]) best = static_cast<int32_t>(i);
  }
  return best < 0 ? 0 : best;
}

TEST_F(ArgmaxCudaTest, MatchesCpuRuleWithTiesAndNans) {
  TestRng rng;
  for (const int64_t vocab : {int64_t{129280}, int64_t{102400}, int64_t{1000}}) {
    SCOPED_TRACE("vocab=" + std::to_string(vocab));
    const int64_t rows = 9;
    std::vector<float> logits = rng.NormalFloats(static_cast<size_t>(rows * vocab), 4.0);
    const float nan = std::numeric_limits<float>::quiet_NaN();
    logits[1 * vocab + 5] = 100.0f;  // a tie: the lower id wins
    logits[1 * vocab + vocab - 3] = 100.0f;
    logits[2 * vocab + 7] = nan;                                            // NaN never wins
    for (int64_t i = 0; i < vocab; ++i) logits[3 * vocab + i] = nan;        // all NaN → 0
    for (int64_t i = 0; i < vocab; ++i) logits[4 * vocab + i] = -INFINITY;  // all -inf → 0
    logits[4 * vocab + vocab / 2] = nan;
    std::vector<uint16_t> logits_bf16 = FloatsToBf16(logits);
    const std::vector<float> logits_bf16_f = Bf16ToFloats(logits_bf16);

    DeviceArray<float> logits_dev(logits);
    DeviceArray<uint16_t> logits_bf16_dev(logits_bf16);
    DeviceArray<int32_t> ids_dev(static_cast<size_t>(rows));
    ids_dev.Poison();
    ASSERT_TRUE(
        LaunchedOk(LaunchArgmaxF32(logits_dev.data(), rows, vocab, ids_dev.data(), nullptr)));
    std::vector<int32_t> ids = ids_dev.Download();
    for (int64_t r = 0; r < rows; ++r) {
      EXPECT_EQ(ids[r], ReferenceArgmax(logits.data() + r * vocab, vocab)) << "row " << r;
    }
    ids_dev.Poison();
    ASSERT_TRUE(
        LaunchedOk(LaunchArgmaxBf16(logits_bf16_dev.data(), rows, vocab, ids_dev.data(), nullptr)));
    ids = ids_dev.Download();
    for (int64_t r = 0; r < rows; ++r) {
      EXPECT_EQ(ids[r], ReferenceArgmax(logits_bf16_f.data() + r * vocab, vocab))
          << "bf16 row " << r;
    }
  }
}

}  // namespace
}  // namespace moeserve::engine
