// Absorbed MLA (reference §3.1) multiplies by kv_b_proj's per-head blocks: q_abs = q_nope ·
// W_UK[h] and o_h = o_lat · W_UV[h]ᵀ. The loader (weight_loader.cc) cuts W_UK[h]ᵀ and W_UV[h]
// out of kv_b_proj once, in kv_b_proj's own format, so they cost what kv_b_proj costs and the
// GEMM widens them in registers like every other weight; mla_layer.cc runs them one head at a
// time through HeadRows. The values are kv_b_proj's exactly, so absorbed and naive attention
// see the same weights. One exception: an FP8 kv_b_proj whose head dimensions are not multiples
// of 128 (a 128×128 scale block would span two heads, which small test models do) is split in
// fp32, the values it dequantizes to.
#pragma once

#include <cstdint>

#include "engine/model/weights.h"

namespace moeserve::engine {

// Whether the split keeps `format` (false: it is held as fp32).
bool AbsorbedKeepsFormat(WeightFormat format, int64_t nope_dim, int64_t v_dim,
                         int64_t kv_lora_rank);

// Fills mla.w_uk_t [heads * kv_lora_rank, nope_dim] and mla.w_uv [heads * v_dim, kv_lora_rank]
// from mla.kv_b_proj [heads * (nope_dim + v_dim), kv_lora_rank]. `heads`: the heads this rank
// holds.
void SplitAbsorbedWeights(int64_t heads, int64_t nope_dim, int64_t v_dim, int64_t kv_lora_rank,
                          MlaWeights& mla);

// Rows [head * rows_per_head, (head + 1) * rows_per_head) of `w` as one matrix. For FP8,
// rows_per_head is a multiple of 128 (true of every split AbsorbedKeepsFormat allows).
WeightMatrixView HeadRows(const LinearWeight& w, int64_t head, int64_t rows_per_head);

}  // namespace moeserve::engine
