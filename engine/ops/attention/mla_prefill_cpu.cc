#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "engine/ops/attention/mla_prefill.h"
#include "engine/ops/cpu/parallel_for.h"
#include "engine/ops/linear/gemm_nn.h"
#include "engine/ops/linear/weight_gemm.h"

namespace moeserve::engine {
namespace {

// The same attention as the reference loops below, as two GEMMs per head on a SIMD
// instruction set: scores [num_queries, ctx] = Q_h·K_hᵀ, causal softmax, out_h = P·V_h.
void MhaPrefillGemm(const MhaPrefillArgs& a) {
  const int64_t qk_dim = a.nope_dim + a.rope_dim;
  const int64_t kv_stride = a.num_heads * (a.nope_dim + a.v_dim);
  const int64_t nq = a.num_queries, ctx = a.ctx;
  std::vector<float> k_h(static_cast<size_t>(ctx * qk_dim));  // [ctx, nope + rope]
  std::vector<float> probs(static_cast<size_t>(nq * ctx));    // scores, then probabilities
  std::vector<float> sums(static_cast<size_t>(nq));
  for (int64_t h = 0; h < a.num_heads; ++h) {
    // K_h = [k_nope_h | k_pe] made contiguous: the "weight" rows of the score GEMM.
    ParallelFor(ctx, ctx * qk_dim > (1 << 16), [&](int64_t j) {
      const float* k_nope = a.k_nope_v + j * kv_stride + h * (a.nope_dim + a.v_dim);
      std::copy(k_nope, k_nope + a.nope_dim, k_h.begin() + j * qk_dim);
      const float* k_pe = a.k_pe + j * a.k_pe_stride;
      std::copy(k_pe, k_pe + a.rope_dim, k_h.begin() + j * qk_dim + a.nope_dim);
    });
    const WeightMatrixView keys{WeightFormat::kF32, k_h.data(), nullptr, ctx, qk_dim};
    WeightGemmCpu(a.q + h * qk_dim, a.num_heads * qk_dim, keys, probs.data(), ctx, nq,
                  /*accumulate=*/false, a.isa);
    ParallelFor(nq, nq * ctx > (1 << 14), [&](int64_t i) {
      float* row = probs.data() + i * ctx;
      const int64_t visible = ctx - nq + i + 1;
      float max_score = -std::numeric_limits<float>::infinity();
      for (int64_t j = 0; j < visible; ++j) {
        row[j] *= a.softmax_scale;
        max_score = std::max(max_score, row[j]);
      }
      float sum = 0.0f;
      for (int64_t j = 0; j < visible; ++j) {
        row[j] = std::exp(row[j] - max_score);
        sum += row[j];
      }
      std::fill(row + visible, row + ctx, 0.0f);  // masked keys add exactly nothing
      sums[i] = sum;
    });
    float* out_h = a.out + h * a.v_dim;
    const float* v_h = a.k_nope_v + h * (a.nope_dim + a.v_dim) + a.nope_dim;
    GemmNnCpu(probs.data(), ctx, v_h, kv_stride, out_h, a.num_heads * a.v_dim, nq, a.v_dim, ctx,
              /*accumulate=*/false, a.isa);
    for (int64_t i = 0; i < nq; ++i) {
      float* out = out_h + i * a.num_heads * a.v_dim;
      for (int64_t d = 0; d < a.v_dim; ++d) out[d] /= sums[i];
    }
  }
}

}  // namespace

void MhaPrefillCpu(const MhaPrefillArgs& a) {
  if (a.isa != CpuIsa::kPortable) {
    MhaPrefillGemm(a);
    return;
  }
  const int64_t qk_dim = a.nope_dim + a.rope_dim;
  const int64_t kv_stride = a.num_heads * (a.nope_dim + a.v_dim);
#pragma omp parallel for collapse(2) if (a.num_queries * a.num_heads * a.ctx > 4096)
  for (int64_t i = 0; i < a.num_queries; ++i) {
    for (int64_t h = 0; h < a.num_heads; ++h) {
      const int64_t visible = a.ctx - a.num_queries + i + 1;
      const float* q = a.q + (i * a.num_heads + h) * qk_dim;
      std::vector<float> scores(static_cast<size_t>(visible));
      float max_score = -std::numeric_limits<float>::infinity();
      for (int64_t j = 0; j < visible; ++j) {
        const float* k_nope = a.k_nope_v + j * kv_stride + h * (a.nope_dim + a.v_dim);
        const float* k_pe = a.k_pe + j * a.k_pe_stride;
        float dot = 0.0f;
        for (int64_t d = 0; d < a.nope_dim; ++d) dot += q[d] * k_nope[d];
        for (int64_t d = 0; d < a.rope_dim; ++d) dot += q[a.nope_dim + d] * k_pe[d];
        scores[j] = dot * a.softmax_scale;
        max_score = std::max(max_score, scores[j]);
      }
      float* out = a.out + (i * a.num_heads + h) * a.v_dim;
      for (int64_t d = 0; d < a.v_dim; ++d) out[d] = 0.0f;
      float sum = 0.0f;
      for (int64_t j = 0; j < visible; ++j) {
        const float* v = a.k_nope_v + j * kv_stride + h * (a.nope_dim + a.v_dim) + a.nope_dim;
        const float p = std::exp(scores[j] - max_score);
        sum += p;
        for (int64_t d = 0; d < a.v_dim; ++d) out[d] += p * v[d];
      }
      for (int64_t d = 0; d < a.v_dim; ++d) out[d] /= sum;
    }
  }
}

}  // namespace moeserve::engine
