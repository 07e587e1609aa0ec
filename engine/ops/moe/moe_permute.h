// MoE token permutation: routed (token, slot) pairs → expert-contiguous row segments, and back.
//
// The MoE layer on the GPU runs each expert's two GEMMs over one contiguous block of rows, so the
// router's output (expert_ids [T, k]) is turned into a permutation (reference §5.4):
//   * counts[e]: the entries (t, slot) routed to expert e;
//   * offsets[e]: where e's segment begins; segments are padded to a multiple of `alignment` rows
//     (4 for the per-expert cuBLASLt loop, the block M — 128 — for DeepGEMM's contiguous layout),
//     offsets[E] is the total row count, and an empty expert has an empty segment;
//   * gather[row]: the entry t·k + slot whose token fills `row`, or -1 for a padding row;
//   * scatter[t·k + slot]: the row holding that entry (the inverse of gather).
// Inside a segment rows follow the entries in ascending (t, slot) order, so the layout depends
// only on the routing. The un-permute sums each token's k expert outputs, weighted by the
// routing weights, in slot order.
//
// The CPU functions here are the contract that the CUDA kernels (moe_permute_cuda.h) reproduce
// exactly; the MoE layer (moe_layer_cuda.h) and the tests call them.
#pragma once

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace moeserve::engine {

struct MoePermutation {
  int64_t num_tokens = 0;
  int64_t top_k = 0;
  int64_t num_experts = 0;
  int64_t alignment = 1;
  std::vector<int32_t> counts;   // [num_experts]
  std::vector<int32_t> offsets;  // [num_experts + 1]
  std::vector<int32_t> gather;   // [offsets[num_experts]]
  std::vector<int32_t> scatter;  // [num_tokens * top_k]

  int64_t num_rows() const { return offsets.empty() ? 0 : offsets.back(); }
};

// The most rows a permutation of num_tokens · top_k entries over num_experts can need: every
// non-empty segment adds at most alignment - 1 padding rows. Sizes the device buffers.
int64_t MoePermutedRowsUpperBound(int64_t num_tokens, int64_t top_k, int64_t num_experts,
                                  int64_t alignment);

// expert_ids: [num_tokens, top_k]. InvalidArgument (naming the entry) for an id outside
// [0, num_experts), a non-positive top_k, num_experts or alignment, or a size mismatch.
absl::StatusOr<MoePermutation> BuildMoePermutation(absl::Span<const int32_t> expert_ids,
                                                   int64_t num_tokens, int64_t top_k,
                                                   int64_t num_experts, int64_t alignment);

// out[t, :] = Σ_slot weights[t, slot] · expert_out[scatter[t·k + slot], :] (+ shared[t, :]),
// summed in fp32 in slot order, the shared term last. expert_out: [rows, hidden] with row
// stride hidden; weights: [num_tokens, top_k]; shared: [num_tokens, hidden] or null;
// out: [num_tokens, hidden]. An entry with scatter -1 contributes nothing.
void UnpermuteMoeCpu(const float* expert_out, absl::Span<const int32_t> scatter,
                     const float* weights, int64_t num_tokens, int64_t top_k, int64_t hidden,
                     const float* shared, float* out);

}  // namespace moeserve::engine
