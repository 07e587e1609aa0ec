// Device-side pieces of DeepSeek's FP8 activation quantization (fp8_quant.h's contract), shared
// by every kernel that writes E4M3 activations: the plain quantizer (fp8_quant_cuda.cu), the
// fused SiLU·mul + requantization (silu_mul_fp8_cuda.cu) and the MoE gather
// (moe_permute_cuda.cu). Device code only; include from .cu files.
#pragma once

#include <cuda_fp8.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "engine/ops/cuda/reduce.cuh"

namespace moeserve::engine::fp8 {

constexpr int kGroupSize = 128;      // kFp8BlockSize
constexpr float kE4m3Max = 448.0f;   // kFp8E4M3Max
constexpr float kAmaxFloor = 1e-4f;  // kFp8ActivationAmaxFloor
// A warp covers one group: each lane holds channels lane, lane + 32, lane + 64, lane + 96.
constexpr int kValuesPerLane = kGroupSize / cuda::kWarpSize;

__device__ __forceinline__ uint8_t ToE4m3(float v) {
  return static_cast<uint8_t>(__nv_cvt_float_to_fp8(v, __NV_SATFINITE, __NV_E4M3));
}

__device__ __forceinline__ float E4m3ToFloat(uint8_t v) {
  __nv_fp8_e4m3 f;
  f.__x = static_cast<__nv_fp8_storage_t>(v);
  return static_cast<float>(f);
}

// Called by all 32 lanes of a warp with the group's values (0 for channels past the end of a
// narrower last group). Returns the group's scale, s = max(amax, 1e-4) / 448, in every lane and
// sets q[j] = e4m3(v[j] / s).
__device__ __forceinline__ float WarpQuantizeGroup(const float (&v)[kValuesPerLane],
                                                   uint8_t (&q)[kValuesPerLane]) {
  float amax = 0.0f;
#pragma unroll
  for (int j = 0; j < kValuesPerLane; ++j) amax = fmaxf(amax, fabsf(v[j]));
  // fmaxf drops NaN; a NaN input still turns into a NaN q below, as on the CPU.
  amax = fmaxf(cuda::WarpReduceMax(amax), kAmaxFloor);
  const float scale = amax / kE4m3Max;
#pragma unroll
  for (int j = 0; j < kValuesPerLane; ++j) q[j] = ToE4m3(v[j] / scale);
  return scale;
}

}  // namespace moeserve::engine::fp8
