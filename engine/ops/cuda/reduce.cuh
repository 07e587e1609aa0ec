// Warp and block reductions shared by the CUDA kernels (device code only; include from .cu).
// Block reductions assume blockDim.x is a multiple of 32 and at most 1024, and must be reached
// by every thread of the block.
#pragma once

#include <cuda_runtime.h>

namespace moeserve::engine::cuda {

constexpr int kWarpSize = 32;

__device__ __forceinline__ float WarpReduceSum(float value) {
  for (int offset = kWarpSize / 2; offset > 0; offset /= 2) {
    value += __shfl_xor_sync(0xffffffffu, value, offset);
  }
  return value;
}

__device__ __forceinline__ float WarpReduceMax(float value) {
  for (int offset = kWarpSize / 2; offset > 0; offset /= 2) {
    value = fmaxf(value, __shfl_xor_sync(0xffffffffu, value, offset));
  }
  return value;
}

// (value, index) pairs: the larger value wins, ties go to the lower index, NaN never wins
// (a NaN value is treated as -inf with index INT_MAX by callers that load it).
struct ArgMaxPair {
  float value;
  int index;
};

__device__ __forceinline__ bool Better(const ArgMaxPair& a, const ArgMaxPair& b) {
  return a.value > b.value || (a.value == b.value && a.index < b.index);
}

__device__ __forceinline__ ArgMaxPair WarpReduceArgMax(ArgMaxPair p) {
  for (int offset = kWarpSize / 2; offset > 0; offset /= 2) {
    ArgMaxPair other;
    other.value = __shfl_xor_sync(0xffffffffu, p.value, offset);
    other.index = __shfl_xor_sync(0xffffffffu, p.index, offset);
    if (Better(other, p)) p = other;
  }
  return p;
}

// Sum over the block; every thread gets the result.
__device__ __forceinline__ float BlockReduceSum(float value) {
  __shared__ float warp_values[32];
  __shared__ float result;
  value = WarpReduceSum(value);
  const int warp = threadIdx.x / kWarpSize;
  const int lane = threadIdx.x % kWarpSize;
  const int num_warps = blockDim.x / kWarpSize;
  if (lane == 0) warp_values[warp] = value;
  __syncthreads();
  if (warp == 0) {
    value = lane < num_warps ? warp_values[lane] : 0.0f;
    value = WarpReduceSum(value);
    if (lane == 0) result = value;
  }
  __syncthreads();
  const float out = result;
  __syncthreads();  // the shared slots may be reused by the next call
  return out;
}

__device__ __forceinline__ float BlockReduceMax(float value) {
  __shared__ float warp_values[32];
  __shared__ float result;
  value = WarpReduceMax(value);
  const int warp = threadIdx.x / kWarpSize;
  const int lane = threadIdx.x % kWarpSize;
  const int num_warps = blockDim.x / kWarpSize;
  if (lane == 0) warp_values[warp] = value;
  __syncthreads();
  if (warp == 0) {
    value = lane < num_warps ? warp_values[lane] : -INFINITY;
    value = WarpReduceMax(value);
    if (lane == 0) result = value;
  }
  __syncthreads();
  const float out = result;
  __syncthreads();
  return out;
}

__device__ __forceinline__ ArgMaxPair BlockReduceArgMax(ArgMaxPair p) {
  __shared__ float warp_values[32];
  __shared__ int warp_indices[32];
  __shared__ ArgMaxPair result;
  p = WarpReduceArgMax(p);
  const int warp = threadIdx.x / kWarpSize;
  const int lane = threadIdx.x % kWarpSize;
  const int num_warps = blockDim.x / kWarpSize;
  if (lane == 0) {
    warp_values[warp] = p.value;
    warp_indices[warp] = p.index;
  }
  __syncthreads();
  if (warp == 0) {
    ArgMaxPair q{-INFINITY, 0x7fffffff};
    if (lane < num_warps) q = ArgMaxPair{warp_values[lane], warp_indices[lane]};
    q = WarpReduceArgMax(q);
    if (lane == 0) result = q;
  }
  __syncthreads();
  const ArgMaxPair out = result;
  __syncthreads();
  return out;
}

}  // namespace moeserve::engine::cuda
