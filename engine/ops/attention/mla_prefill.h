// MLA attention in the naive ("MHA") form for one sequence: d_qk = 192, d_v = 128.
//
// k_h = [k_nope_h | k_pe] and v_h come from expanding the cached latents through kv_b_proj
// (the caller does that GEMM); k_pe is one 64-dim vector per token shared by all heads
// (reference §3.1). Causal over absolute positions: the n new queries are the last n of the
// ctx keys. Used by the MLA layer for prefill chunks, including chunks after a cached prefix.
#pragma once

#include <cstdint>

#include "engine/ops/cpu/cpu_features.h"

namespace moeserve::engine {

struct MhaPrefillArgs {
  const float* q = nullptr;         // [num_queries, num_heads, nope_dim + rope_dim]
  const float* k_nope_v = nullptr;  // [ctx, num_heads, nope_dim + v_dim] (kv_b_proj output)
  const float* k_pe = nullptr;      // [ctx, rope_dim], rows k_pe_stride floats apart
  int64_t k_pe_stride = 0;
  int64_t num_queries = 0;
  int64_t ctx = 0;
  int64_t num_heads = 0;
  int64_t nope_dim = 128;
  int64_t rope_dim = 64;
  int64_t v_dim = 128;
  float softmax_scale = 0.0f;
  float* out = nullptr;  // [num_queries, num_heads, v_dim]
  // kPortable: the scalar reference loops. kAvx2/kAvx512: per head, S = Q·Kᵀ by WeightGemmCpu
  // and P·V by GemmNnCpu on that instruction set; every query's result is independent of the
  // other queries and of masked keys in its call, so chunking and batching do not change it.
  CpuIsa isa = CpuIsa::kPortable;
};

void MhaPrefillCpu(const MhaPrefillArgs& args);

}  // namespace moeserve::engine
