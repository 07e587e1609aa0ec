#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include "engine/ops/linear/fp8_quant.cuh"
#include "engine/ops/linear/fp8_segmented_layout.h"
#include "engine/ops/moe/moe_permute_cuda.h"

namespace moeserve::engine {
namespace {

constexpr int kCountThreads = 1024;
constexpr int kAssignThreads = 256;
constexpr int kAssignWarps = kAssignThreads / cuda::kWarpSize;
constexpr int kMaxExperts = 12288;  // 48 KiB of int32 counts in shared memory
constexpr int kWarpsPerQuantBlock = 8;
constexpr int kUnpermuteThreads = 256;

// One block: counts in shared memory, then one thread scans them into the padded offsets (E is
// at most a few hundred, so a serial scan is cheaper than a second launch).
__global__ void CountAndOffsetKernel(const int32_t* __restrict__ expert_ids, int64_t entries,
                                     int num_experts, int64_t alignment,
                                     int32_t* __restrict__ counts, int32_t* __restrict__ offsets,
                                     int32_t* __restrict__ scatter) {
  extern __shared__ int32_t shared_counts[];
  for (int e = threadIdx.x; e < num_experts; e += blockDim.x) shared_counts[e] = 0;
  __syncthreads();
  for (int64_t i = threadIdx.x; i < entries; i += blockDim.x) {
    const int32_t e = expert_ids[i];
    if (e >= 0 && e < num_experts) {
      atomicAdd(&shared_counts[e], 1);
    } else {
      scatter[i] = -1;  // dropped; AssignRowsKernel never matches it
    }
  }
  __syncthreads();
  for (int e = threadIdx.x; e < num_experts; e += blockDim.x) counts[e] = shared_counts[e];
  if (threadIdx.x == 0) {
    int64_t running = 0;
    offsets[0] = 0;
    for (int e = 0; e < num_experts; ++e) {
      running += AlignUp(shared_counts[e], alignment);
      offsets[e + 1] = static_cast<int32_t>(running);
    }
  }
}

// grid: [num_experts]. Block e walks all entries in order, kAssignThreads at a time; a ballot
// and the per-warp totals give each match its rank among the matches before it, so rows follow
// (t, slot) order exactly as BuildMoePermutation's counting sort does. Then the padding rows.
__global__ void AssignRowsKernel(const int32_t* __restrict__ expert_ids, int64_t entries,
                                 const int32_t* __restrict__ counts,
                                 const int32_t* __restrict__ offsets, int32_t* __restrict__ gather,
                                 int32_t* __restrict__ scatter) {
  __shared__ int32_t warp_matches[kAssignWarps];
  const int e = blockIdx.x;
  const int warp = threadIdx.x / cuda::kWarpSize;
  const int lane = threadIdx.x % cuda::kWarpSize;
  const int32_t begin = offsets[e];
  int64_t matched_before_chunk = 0;
  for (int64_t chunk = 0; chunk < entries; chunk += kAssignThreads) {  // same trip count for all
    const int64_t i = chunk + threadIdx.x;
    const bool match = i < entries && expert_ids[i] == e;
    const unsigned ballot = __ballot_sync(0xffffffffu, match);
    if (lane == 0) warp_matches[warp] = __popc(ballot);
    __syncthreads();
    int32_t before_warp = 0, in_chunk = 0;
    for (int w = 0; w < kAssignWarps; ++w) {
      if (w < warp) before_warp += warp_matches[w];
      in_chunk += warp_matches[w];
    }
    if (match) {
      const int32_t before_lane = __popc(ballot & ((1u << lane) - 1u));
      const int32_t row =
          begin + static_cast<int32_t>(matched_before_chunk) + before_warp + before_lane;
      gather[row] = static_cast<int32_t>(i);
      scatter[i] = row;
    }
    matched_before_chunk += in_chunk;
    __syncthreads();  // warp_matches is rewritten by the next chunk
  }
  for (int32_t row = begin + counts[e] + threadIdx.x; row < offsets[e + 1]; row += blockDim.x) {
    gather[row] = -1;
  }
}

// One warp per (row, 128-channel group); grid: [ceil(max_rows * groups / 8)].
__global__ void GatherQuantizeKernel(const __nv_bfloat16* __restrict__ x, int64_t hidden,
                                     int64_t groups, int64_t top_k,
                                     const int32_t* __restrict__ gather,
                                     const int32_t* __restrict__ offsets, int64_t num_experts,
                                     int64_t max_rows, uint8_t* __restrict__ q,
                                     float* __restrict__ scales) {
  const int64_t warp_id =
      static_cast<int64_t>(blockIdx.x) * kWarpsPerQuantBlock + threadIdx.x / cuda::kWarpSize;
  const int lane = threadIdx.x % cuda::kWarpSize;
  if (warp_id >= max_rows * groups) return;  // whole warps exit together
  const int64_t row = warp_id / groups;
  const int64_t g = warp_id % groups;
  if (row >= offsets[num_experts]) return;
  const int32_t entry = gather[row];
  const __nv_bfloat16* src = entry >= 0 ? x + (entry / top_k) * hidden : nullptr;
  float v[fp8::kValuesPerLane];
#pragma unroll
  for (int j = 0; j < fp8::kValuesPerLane; ++j) {
    const int64_t c = g * fp8::kGroupSize + lane + j * cuda::kWarpSize;
    v[j] = (src != nullptr && c < hidden) ? __bfloat162float(src[c]) : 0.0f;
  }
  uint8_t qv[fp8::kValuesPerLane];
  const float scale = fp8::WarpQuantizeGroup(v, qv);
#pragma unroll
  for (int j = 0; j < fp8::kValuesPerLane; ++j) {
    const int64_t c = g * fp8::kGroupSize + lane + j * cuda::kWarpSize;
    if (c < hidden) q[row * hidden + c] = qv[j];
  }
  if (lane == 0) {
    const int64_t s = FindSegment(offsets, num_experts, row);
    scales[SegmentedScaleIndex(offsets[s], offsets[s + 1], groups, row, g)] = scale;
  }
}

// grid: [num_tokens, ceil(hidden / 256)]. Explicit _rn operations: no FMA contraction, so the
// roundings are UnpermuteMoeCpu's.
__global__ void UnpermuteKernel(const __nv_bfloat16* __restrict__ expert_out,
                                const int32_t* __restrict__ scatter,
                                const float* __restrict__ weights, int64_t top_k, int64_t hidden,
                                const __nv_bfloat16* __restrict__ shared,
                                __nv_bfloat16* __restrict__ out) {
  const int64_t t = blockIdx.x;
  const int64_t d = static_cast<int64_t>(blockIdx.y) * blockDim.x + threadIdx.x;
  if (d >= hidden) return;
  float sum = 0.0f;
  for (int64_t slot = 0; slot < top_k; ++slot) {
    const int32_t row = scatter[t * top_k + slot];
    if (row < 0) continue;
    const float v = __bfloat162float(expert_out[static_cast<int64_t>(row) * hidden + d]);
    sum = __fadd_rn(sum, __fmul_rn(weights[t * top_k + slot], v));
  }
  if (shared != nullptr) sum = __fadd_rn(sum, __bfloat162float(shared[t * hidden + d]));
  out[t * hidden + d] = __float2bfloat16(sum);
}

}  // namespace

int LaunchBuildMoePermutation(const int32_t* expert_ids, int64_t num_tokens, int64_t top_k,
                              int64_t num_experts, int64_t alignment, int32_t* counts,
                              int32_t* offsets, int32_t* gather, int32_t* scatter, void* stream) {
  if (num_tokens < 0 || top_k <= 0 || num_experts <= 0 || num_experts > kMaxExperts ||
      alignment <= 0) {
    return static_cast<int>(cudaErrorInvalidValue);
  }
  const cudaStream_t s = static_cast<cudaStream_t>(stream);
  const int64_t entries = num_tokens * top_k;
  const size_t shared_bytes = static_cast<size_t>(num_experts) * sizeof(int32_t);
  CountAndOffsetKernel<<<1, kCountThreads, shared_bytes, s>>>(
      expert_ids, entries, static_cast<int>(num_experts), alignment, counts, offsets, scatter);
  if (const cudaError_t error = cudaGetLastError(); error != cudaSuccess) {
    return static_cast<int>(error);
  }
  AssignRowsKernel<<<static_cast<unsigned>(num_experts), kAssignThreads, 0, s>>>(
      expert_ids, entries, counts, offsets, gather, scatter);
  return static_cast<int>(cudaGetLastError());
}

int LaunchMoeGatherQuantizeFp8(const uint16_t* x, int64_t hidden, int64_t top_k,
                               const int32_t* gather, const int32_t* offsets, int64_t num_experts,
                               int64_t max_rows, uint8_t* q, float* scales, void* stream) {
  if (hidden < 0 || top_k <= 0 || num_experts <= 0 || max_rows < 0) {
    return static_cast<int>(cudaErrorInvalidValue);
  }
  if (max_rows == 0 || hidden == 0) return cudaSuccess;
  const int64_t groups = (hidden + fp8::kGroupSize - 1) / fp8::kGroupSize;
  const int64_t warps = max_rows * groups;
  const unsigned grid =
      static_cast<unsigned>((warps + kWarpsPerQuantBlock - 1) / kWarpsPerQuantBlock);
  GatherQuantizeKernel<<<grid, kWarpsPerQuantBlock * cuda::kWarpSize, 0,
                         static_cast<cudaStream_t>(stream)>>>(
      reinterpret_cast<const __nv_bfloat16*>(x), hidden, groups, top_k, gather, offsets,
      num_experts, max_rows, q, scales);
  return static_cast<int>(cudaGetLastError());
}

int LaunchMoeUnpermute(const uint16_t* expert_out, const int32_t* scatter, const float* weights,
                       int64_t num_tokens, int64_t top_k, int64_t hidden, const uint16_t* shared,
                       uint16_t* out, void* stream) {
  if (num_tokens < 0 || top_k <= 0 || hidden < 0) return static_cast<int>(cudaErrorInvalidValue);
  if (num_tokens == 0 || hidden == 0) return cudaSuccess;
  const dim3 grid(static_cast<unsigned>(num_tokens),
                  static_cast<unsigned>((hidden + kUnpermuteThreads - 1) / kUnpermuteThreads));
  UnpermuteKernel<<<grid, kUnpermuteThreads, 0, static_cast<cudaStream_t>(stream)>>>(
      reinterpret_cast<const __nv_bfloat16*>(expert_out), scatter, weights, top_k, hidden,
      reinterpret_cast<const __nv_bfloat16*>(shared), reinterpret_cast<__nv_bfloat16*>(out));
  return static_cast<int>(cudaGetLastError());
}

}  // namespace moeserve::engine

namespace moeserve::engine {
namespace {

__global__ void AccumulateExpertCountsKernel(const int32_t* counts, int64_t num_experts,
                                             int64_t* totals) {
  const int64_t e = blockIdx.x * int64_t{blockDim.x} + threadIdx.x;
  if (e < num_experts) totals[e] += counts[e];
}

}  // namespace

int LaunchAccumulateExpertCounts(const int32_t* counts, int64_t num_experts, int64_t* totals,
                                 void* stream) {
  if (num_experts < 0) return static_cast<int>(cudaErrorInvalidValue);
  if (num_experts == 0) return cudaSuccess;
  constexpr int kThreads = 256;
  const unsigned grid = static_cast<unsigned>((num_experts + kThreads - 1) / kThreads);
  AccumulateExpertCountsKernel<<<grid, kThreads, 0, static_cast<cudaStream_t>(stream)>>>(
      counts, num_experts, totals);
  return static_cast<int>(cudaGetLastError());
}

}  // namespace moeserve::engine
