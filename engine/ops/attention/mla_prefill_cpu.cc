#include <cmath>
#include <limits>
#include <vector>

#include "engine/ops/attention/mla_prefill.h"

namespace moeserve::engine {

void MhaPrefillCpu(const MhaPrefillArgs& a) {
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
