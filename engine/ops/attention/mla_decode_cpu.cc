#include <cmath>
#include <limits>
#include <vector>

#include "engine/ops/attention/mla_decode.h"

namespace moeserve::engine {

void MlaDecodeCpu(const MlaDecodeArgs& a) {
  for (int64_t s = 0; s < a.num_seqs; ++s) {
    const int64_t q_begin = a.query_start_loc[s];
    const int64_t num_queries = a.query_start_loc[s + 1] - q_begin;
    const int64_t seq_len = a.seq_lens[s];
    const int32_t* block_table = a.block_tables + s * a.max_blocks_per_seq;
#pragma omp parallel for collapse(2) if (num_queries * a.num_heads * seq_len > 4096)
    for (int64_t i = 0; i < num_queries; ++i) {
      for (int64_t h = 0; h < a.num_heads; ++h) {
        const int64_t token = q_begin + i;
        const int64_t visible = seq_len - num_queries + i + 1;
        const float* q = a.q + (token * a.num_heads + h) * a.kv_dim;
        float* out = a.out + (token * a.num_heads + h) * a.v_dim;
        std::vector<float> scores(static_cast<size_t>(std::max<int64_t>(visible, 0)));
        float max_score = -std::numeric_limits<float>::infinity();
        for (int64_t j = 0; j < visible; ++j) {
          const int64_t slot =
              static_cast<int64_t>(block_table[j / a.block_size]) * a.block_size + j % a.block_size;
          const float* kv = a.pages + slot * a.kv_dim;
          float dot = 0.0f;
          for (int64_t d = 0; d < a.kv_dim; ++d) dot += q[d] * kv[d];
          scores[j] = dot * a.softmax_scale;
          max_score = std::max(max_score, scores[j]);
        }
        for (int64_t d = 0; d < a.v_dim; ++d) out[d] = 0.0f;
        float sum = 0.0f;
        for (int64_t j = 0; j < visible; ++j) {
          const int64_t slot =
              static_cast<int64_t>(block_table[j / a.block_size]) * a.block_size + j % a.block_size;
          const float* kv = a.pages + slot * a.kv_dim;
          const float p = std::exp(scores[j] - max_score);
          sum += p;
          for (int64_t d = 0; d < a.v_dim; ++d) out[d] += p * kv[d];
        }
        // A query with no keys gets out = 0 and lse = +inf, as FlashMLA does.
        const float inv_sum = sum > 0.0f ? 1.0f / sum : 0.0f;
        for (int64_t d = 0; d < a.v_dim; ++d) out[d] *= inv_sum;
        if (a.lse != nullptr) {
          a.lse[token * a.num_heads + h] =
              sum > 0.0f ? max_score + std::log(sum) : std::numeric_limits<float>::infinity();
        }
      }
    }
  }
}

}  // namespace moeserve::engine
