// CUDA MLA prefill attention in the naive ("MHA") form, BF16: the contract of mla_prefill.h's
// MhaPrefillCpu for DeepSeek's head dims (nope 128, rope 64, v 128), one sequence per call.
//
// The n new queries are the last n of the ctx keys, so a chunk after a cached prefix (chunked
// prefill, prefix-cache hit) attends to the prefix too: the caller gathers the sequence's
// latents from the paged cache (LaunchGatherLatentCacheBf16), expands them through kv_b_proj
// into k_nope_v, and passes k_pe as a strided view of the gathered latents. The kernel is
// flash-attention style (docs/performance.md): a CTA owns 64 queries of one head, streams
// 64-key tiles of K and V through double-buffered shared memory, and keeps scores,
// probabilities and the output in registers (mma.sync BF16, fp32 online softmax), so no
// ctx × ctx matrix exists anywhere. Plain C++ header (no CUDA headers).
#pragma once

#include <cstdint>

namespace moeserve::engine {

inline constexpr int kMhaNopeDim = 128;
inline constexpr int kMhaRopeDim = 64;
inline constexpr int kMhaVDim = 128;

struct MhaPrefillCudaArgs {
  const uint16_t* q = nullptr;         // device [num_queries, num_heads, 192] bf16
  const uint16_t* k_nope_v = nullptr;  // device [ctx, num_heads, 128 + 128] bf16
  const uint16_t* k_pe = nullptr;      // device [ctx, 64] bf16, rows k_pe_stride apart
  int64_t k_pe_stride = 0;             // elements; a multiple of 8 (16-byte rows)
  int64_t num_queries = 0;
  int64_t ctx = 0;  // ≥ num_queries
  int64_t num_heads = 0;
  float softmax_scale = 0.0f;
  uint16_t* out = nullptr;  // device [num_queries, num_heads, 128] bf16
};

// Returns the cudaError_t of the launch as an int; cudaErrorInvalidValue for bad shapes or
// pointers not 16-byte aligned.
int LaunchMhaPrefillBf16(const MhaPrefillCudaArgs& args, void* stream);

}  // namespace moeserve::engine
