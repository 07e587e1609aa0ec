// The MoE permutation on the GPU; the contract is moe_permute.h's (BuildMoePermutation,
// UnpermuteMoeCpu), reproduced exactly, plus the gather that feeds the first expert GEMM.
//
// Every kernel takes its sizes from the device-side offsets, never from the host: grids are
// sized by MoePermutedRowsUpperBound and rows at or past offsets[num_experts] do nothing. Only
// the per-expert GEMM loop of the MoE layer (moe_layer_cuda.h) copies the offsets to the host.
// Plain C++ header (no CUDA headers); `stream` is a cudaStream_t, the result a cudaError_t.
#pragma once

#include <cstdint>

namespace moeserve::engine {

// expert_ids: device [num_tokens, top_k]. Writes counts [num_experts], offsets
// [num_experts + 1], scatter [num_tokens * top_k] and gather rows [0, offsets[num_experts]) of a
// buffer of MoePermutedRowsUpperBound(...) entries. Unlike the CPU twin, which rejects them, ids
// outside [0, num_experts) are dropped: their scatter entry is -1 and they fill no row.
// Needs num_experts <= 12288 (the counts live in shared memory) and alignment > 0.
int LaunchBuildMoePermutation(const int32_t* expert_ids, int64_t num_tokens, int64_t top_k,
                              int64_t num_experts, int64_t alignment, int32_t* counts,
                              int32_t* offsets, int32_t* gather, int32_t* scatter, void* stream);

// The first expert GEMM's input: row r of the permutation gets token gather[r] / top_k of x,
// quantized to E4M3 per 128 channels, with its scales in the segmented layout of
// fp8_segmented_layout.h (segments = experts). Padding rows get q = 0 and a finite scale.
// x: device [num_tokens, hidden] bf16; q: device [max_rows, hidden]; scales: device
// [max_rows * ceil(hidden / 128)], where max_rows is the gather buffer's size.
int LaunchMoeGatherQuantizeFp8(const uint16_t* x, int64_t hidden, int64_t top_k,
                               const int32_t* gather, const int32_t* offsets, int64_t num_experts,
                               int64_t max_rows, uint8_t* q, float* scales, void* stream);

// out[t, :] = bf16(Σ_slot weights[t, slot] · expert_out[scatter[t·k + slot], :] + shared[t, :])
// in fp32, slot order, shared last (UnpermuteMoeCpu's order and roundings).
// expert_out: device [rows, hidden] bf16; weights: device [num_tokens, top_k] fp32; shared:
// device [num_tokens, hidden] bf16 or null; out: device [num_tokens, hidden] bf16.
int LaunchMoeUnpermute(const uint16_t* expert_out, const int32_t* scatter, const float* weights,
                       int64_t num_tokens, int64_t top_k, int64_t hidden, const uint16_t* shared,
                       uint16_t* out, void* stream);

// totals[e] += counts[e] for e < num_experts (int64 totals on the device): the per-expert
// token counts the engine reports, kept on the GPU so a step never waits for them.
int LaunchAccumulateExpertCounts(const int32_t* counts, int64_t num_experts, int64_t* totals,
                                 void* stream);

}  // namespace moeserve::engine
