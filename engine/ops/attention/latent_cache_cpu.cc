#include <cstring>

#include "engine/ops/attention/latent_cache.h"

namespace moeserve::engine {

void WriteLatentCacheCpu(const float* latent, const int64_t* slot_mapping, int64_t num_tokens,
                         int64_t kv_dim, float* pages) {
  for (int64_t t = 0; t < num_tokens; ++t) {
    if (slot_mapping[t] < 0) continue;
    std::memcpy(pages + slot_mapping[t] * kv_dim, latent + t * kv_dim, kv_dim * sizeof(float));
  }
}

void GatherLatentCacheCpu(const float* pages, const int32_t* block_table, int64_t num_tokens,
                          int64_t block_size, int64_t kv_dim, float* out) {
  for (int64_t j = 0; j < num_tokens; ++j) {
    const int64_t slot =
        static_cast<int64_t>(block_table[j / block_size]) * block_size + j % block_size;
    std::memcpy(out + j * kv_dim, pages + slot * kv_dim, kv_dim * sizeof(float));
  }
}

}  // namespace moeserve::engine
