// MLA weight absorption on the GPU (reference §3.1): the two per-head products around the
// absorbed decode kernel, each one strided-batched cuBLASLt GEMM over the heads.
//
//   q_mqa[t, h] = [q_nope[t, h] · W_UK[h] | q_pe[t, h]]   (W_UK[h]ᵀ stored [512, 128])
//   o[t, h]     = o_lat[t, h] · W_UV[h]ᵀ                   (W_UV[h] stored [128, 512])
//
// The weight layouts are MlaWeights' w_uk_t and w_uv (engine/model/weights.h) in BF16, so no
// transpose happens per step. The model's CUDA MLA layer calls these before and after
// LaunchMlaDecodeBf16. Everything is queued on the GEMM's CudaContext stream.
#pragma once

#include <cstdint>

#include "absl/status/status.h"
#include "engine/ops/linear/gemm_cublaslt.h"

namespace moeserve::engine {

struct MlaAbsorbDims {
  int64_t num_heads = 0;
  int64_t nope_dim = 128;
  int64_t rope_dim = 64;
  int64_t kv_lora_rank = 512;
  int64_t v_dim = 128;
};

// q: device [num_tokens, heads, nope + rope] bf16 (q_pe already rotated); w_uk_t: device
// [heads, rank, nope] bf16; q_mqa: device [num_tokens, heads, rank + rope] bf16.
absl::Status MlaAbsorbQuery(CublasLtGemm& gemm, const MlaAbsorbDims& dims, const uint16_t* q,
                            const uint16_t* w_uk_t, int64_t num_tokens, uint16_t* q_mqa);

// o_lat: device [num_tokens, heads, rank] bf16; w_uv: device [heads, v, rank] bf16;
// out: device [num_tokens, heads, v] bf16 (the o_proj input).
absl::Status MlaAbsorbOutput(CublasLtGemm& gemm, const MlaAbsorbDims& dims, const uint16_t* o_lat,
                             const uint16_t* w_uv, int64_t num_tokens, uint16_t* out);

}  // namespace moeserve::engine
