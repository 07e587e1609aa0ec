// Reads and writes of the paged latent KV cache, one layer at a time.
//
// A layer's pages are [num_blocks, block_size, kv_dim] with kv_dim = 576 = [c_kv(512) |
// k_pe(64)] (reference §3.1: c_kv after its RMSNorm, k_pe after RoPE). A slot is
// block_id * block_size + offset. The model's MLA layer writes each step's new tokens, then
// the attention ops read whole contexts through the sequence's block table.
#pragma once

#include <cstdint>

namespace moeserve::engine {

// latent: [num_tokens, kv_dim]; slot_mapping: [num_tokens] (negative = skip, e.g. padding).
void WriteLatentCacheCpu(const float* latent, const int64_t* slot_mapping, int64_t num_tokens,
                         int64_t kv_dim, float* pages);

// Copies the first `num_tokens` cached vectors of one sequence into out: [num_tokens, kv_dim].
void GatherLatentCacheCpu(const float* pages, const int32_t* block_table, int64_t num_tokens,
                          int64_t block_size, int64_t kv_dim, float* out);

}  // namespace moeserve::engine
