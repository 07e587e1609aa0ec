// The size of the paged latent KV cache for a model: bytes per token and per block.
//
// One block holds kKvBlockSize (64) tokens of every layer's latent cache, each token
// kv_cache_dim() = kv_lora_rank + qk_rope_head_dim = 512 + 64 = 576 elements ([c_kv | k_pe],
// DESIGN.md §3, reference §3.1), so
//   bytes per block = 64 x 576 x num_hidden_layers x dtype bytes.
// DeepSeek-V3 (61 layers) in BF16: 70,272 B per token, 4,497,408 B per block; V2-Lite (27
// layers): 31,104 B per token. MTP layers (num_nextn_predict_layers) count only when they are
// loaded for speculative decoding (the `mtp_layers` argument): each has its own latent layer. The
// memory planner divides its budget by BytesPerBlock() (NumBlocksForBudget), and that one number
// sizes both the KV pages and KvCacheManager.
#pragma once

#include <cstdint>

#include "engine/batch/forward_batch.h"
#include "engine/model/model_config.h"
#include "engine/ops/dtype.h"

namespace moeserve::engine {

struct KvCacheSpec {
  int64_t num_layers = 0;
  int64_t kv_dim = 0;  // elements per token per layer (576 for DeepSeek)
  int64_t dtype_bytes = 0;

  int64_t BytesPerTokenPerLayer() const { return kv_dim * dtype_bytes; }
  int64_t BytesPerToken() const { return BytesPerTokenPerLayer() * num_layers; }
  // One layer's share of a block: the stride between blocks in a layer's page pool.
  int64_t BytesPerBlockPerLayer() const { return BytesPerTokenPerLayer() * kKvBlockSize; }
  int64_t BytesPerBlock() const { return BytesPerToken() * kKvBlockSize; }
};

// `mtp_layers`: MTP modules loaded for speculative decoding, each with its own latent layer.
inline KvCacheSpec KvCacheSpecFor(const ModelConfig& config, DType dtype, int64_t mtp_layers = 0) {
  return KvCacheSpec{.num_layers = config.num_hidden_layers + mtp_layers,
                     .kv_dim = config.kv_cache_dim(),
                     .dtype_bytes = DTypeSize(dtype)};
}

// Whole blocks that fit in `bytes` (0 for a non-positive budget or an empty spec).
inline int64_t NumBlocksForBudget(int64_t bytes, const KvCacheSpec& spec) {
  const int64_t block_bytes = spec.BytesPerBlock();
  return bytes > 0 && block_bytes > 0 ? bytes / block_bytes : 0;
}

inline int64_t NumBlocksForBudget(int64_t bytes, const ModelConfig& config, DType dtype) {
  return NumBlocksForBudget(bytes, KvCacheSpecFor(config, dtype));
}

}  // namespace moeserve::engine
