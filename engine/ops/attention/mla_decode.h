// MLA attention in the weight-absorbed ("MQA") form over the paged latent cache.
//
// One 576-dim KV head shared by all query heads: s = τ·[q_abs | q_pe]·[c_kv | k_pe] and
// o_lat = Σ softmax(s)·c_kv (V is the first 512 dims of each cached vector), reference §3.1.
// The contract is FlashMLA's (reference §6) so a GPU kernel can replace it: explicit softmax
// scale, several query tokens per sequence with the causal rule, output plus log-sum-exp.
// Used by the MLA layer for decode steps (and for any step when forced, for testing).
#pragma once

#include <cstdint>

#include "engine/ops/attention/latent_cache.h"
#include "engine/ops/cpu/cpu_features.h"

namespace moeserve::engine {

struct MlaDecodeArgs {
  const float* q = nullptr;                  // [num_tokens, num_heads, kv_dim] = [q_abs | q_pe]
  LatentPagesView pages;                     // [num_blocks, block_size, kv_dim], fp32 or BF16
  const int32_t* block_tables = nullptr;     // [num_seqs, max_blocks_per_seq]
  const int32_t* query_start_loc = nullptr;  // [num_seqs + 1] tokens of each sequence in q
  const int32_t* seq_lens = nullptr;         // [num_seqs] keys visible to a sequence's last query
  int64_t max_blocks_per_seq = 0;
  int64_t num_seqs = 0;
  int64_t num_heads = 0;
  int64_t kv_dim = 576;
  int64_t v_dim = 512;
  int64_t block_size = 64;
  float softmax_scale = 0.0f;  // τ = qk_head_dim^-1/2 · m², never kv_dim^-1/2
  float* out = nullptr;        // [num_tokens, num_heads, v_dim]
  float* lse = nullptr;        // [num_tokens, num_heads] natural log; optional
  // kPortable: the scalar reference loops. kAvx2/kAvx512: per group of a sequence's queries
  // and cache block, S = Q·blockᵀ by WeightGemmCpu (all queries and heads at once, the block
  // read in place) and P·V by GemmNnCpu; keys past a sequence's length are never read (they may
  // hold anything), and a query's result does not depend on the other queries of its call.
  CpuIsa isa = CpuIsa::kPortable;
};

// Query i (0-based) of a sequence with n queries and seq_len keys sees keys
// [0, seq_len - n + i] (FlashMLA's causal rule for s_q > 1).
void MlaDecodeCpu(const MlaDecodeArgs& args);

}  // namespace moeserve::engine
