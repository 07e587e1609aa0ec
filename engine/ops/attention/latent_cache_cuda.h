// CUDA writes and reads of the paged latent KV cache (BF16), the GPU twins of latent_cache.h.
//
// LaunchWriteLatentCacheFusedBf16 is the MLA layer's whole "kv_a → cache" step in one kernel
// (reference §3.1, pitfall 2): for each new token, c_kv = RMSNorm(kv_a[:512]) with fp32
// statistics (as LaunchRmsNormBf16), k_pe = RoPE(kv_a[512:576]) on interleaved pairs at the
// token's position (as LaunchRopeInterleavedBf16), and [c_kv | k_pe] goes to the token's slot.
// LaunchGatherLatentCacheBf16 copies one sequence's cached vectors out in order, for the
// prefill path that expands a cached prefix through kv_b_proj. Plain C++ header.
#pragma once

#include <cstdint>

namespace moeserve::engine {

// kv_a: device [num_tokens, 576] bf16 rows kv_a_stride elements apart (the kv_a projection's
// output; stride ≥ 576); norm_weight: device [512] bf16 (kv_a_layernorm); inv_freq: device [32]
// fp32 (MakeRopeTable); positions: device [num_tokens] int32; slot_mapping: device
// [num_tokens] int64, slot = page · 64 + offset, negative = skip, slots ≥ num_slots skipped;
// pages: device [num_slots, 576] bf16. Returns the cudaError_t of the launch as an int.
int LaunchWriteLatentCacheFusedBf16(const uint16_t* kv_a, int64_t kv_a_stride,
                                    const uint16_t* norm_weight, float eps, const float* inv_freq,
                                    float attention_scaling, const int32_t* positions,
                                    const int64_t* slot_mapping, int64_t num_tokens,
                                    int64_t num_slots, uint16_t* pages, void* stream);

// out: device [num_tokens, 576] bf16 ← the first num_tokens cached vectors of the sequence
// whose block table (device, int32 page ids) is given. Pages outside [0, num_pages) read as
// zeros rather than faulting.
int LaunchGatherLatentCacheBf16(const uint16_t* pages, int64_t num_pages,
                                const int32_t* block_table, int64_t num_tokens, uint16_t* out,
                                void* stream);

}  // namespace moeserve::engine
