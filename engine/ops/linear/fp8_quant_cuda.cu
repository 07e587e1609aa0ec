#include <cuda_bf16.h>
#include <cuda_fp8.h>
#include <cuda_runtime.h>

#include "engine/ops/linear/fp8_quant.cuh"
#include "engine/ops/linear/fp8_quant_cuda.h"

namespace moeserve::engine {
namespace {

constexpr int kBlock = fp8::kGroupSize;
constexpr int kWarpsPerBlock = 8;

using fp8::E4m3ToFloat;

__device__ __forceinline__ float Load(const float* p) { return *p; }
__device__ __forceinline__ float Load(const __nv_bfloat16* p) { return __bfloat162float(*p); }

// One warp per (token, 128-channel group); each lane handles 4 channels. The last group may
// be narrower when cols % 128 != 0. grid: [ceil(padded_rows * groups / 8)], block: 8 warps.
template <typename T>
__global__ void QuantizeActivationsKernel(const T* __restrict__ x, int64_t rows,
                                          int64_t padded_rows, int64_t cols, int64_t groups,
                                          uint8_t* __restrict__ q, float* __restrict__ scales) {
  const int64_t warp_id = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (warp_id >= padded_rows * groups) return;  // whole warps exit together
  const int64_t t = warp_id / groups;
  const int64_t g = warp_id % groups;
  const int64_t begin = g * kBlock;
  float v[fp8::kValuesPerLane];
#pragma unroll
  for (int j = 0; j < fp8::kValuesPerLane; ++j) {
    const int64_t c = begin + lane + j * 32;
    v[j] = (t < rows && c < cols) ? Load(x + t * cols + c) : 0.0f;
  }
  uint8_t qv[fp8::kValuesPerLane];
  const float scale = fp8::WarpQuantizeGroup(v, qv);
#pragma unroll
  for (int j = 0; j < fp8::kValuesPerLane; ++j) {
    const int64_t c = begin + lane + j * 32;
    if (c < cols) q[t * cols + c] = qv[j];
  }
  if (lane == 0) scales[g * padded_rows + t] = scale;
}

__global__ void DequantizeWeightKernel(const uint8_t* __restrict__ fp8,
                                       const float* __restrict__ scale_inv, int64_t scale_ld,
                                       int64_t rows, int64_t cols,
                                       __nv_bfloat16* __restrict__ out) {
  const int64_t n = rows * cols;
  for (int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; idx < n;
       idx += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t i = idx / cols, j = idx % cols;
    out[idx] =
        __float2bfloat16(E4m3ToFloat(fp8[idx]) * scale_inv[(i / kBlock) * scale_ld + j / kBlock]);
  }
}

__global__ void DequantizeActivationsKernel(const uint8_t* __restrict__ q,
                                            const float* __restrict__ scales, int64_t padded_rows,
                                            int64_t cols, __nv_bfloat16* __restrict__ out) {
  const int64_t n = padded_rows * cols;
  for (int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; idx < n;
       idx += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t t = idx / cols, k = idx % cols;
    out[idx] = __float2bfloat16(E4m3ToFloat(q[idx]) * scales[(k / kBlock) * padded_rows + t]);
  }
}

unsigned GridFor(int64_t n) {
  const int64_t blocks = (n + 255) / 256;
  return static_cast<unsigned>(blocks < 65536 ? (blocks > 0 ? blocks : 1) : 65536);
}

template <typename T>
int LaunchQuantize(const T* x, int64_t rows, int64_t padded_rows, int64_t cols, uint8_t* q,
                   float* scales, void* stream) {
  if (padded_rows < rows) return static_cast<int>(cudaErrorInvalidValue);
  if (padded_rows == 0 || cols == 0) return cudaSuccess;
  const int64_t groups = (cols + kBlock - 1) / kBlock;
  const int64_t warps = padded_rows * groups;
  const unsigned grid = static_cast<unsigned>((warps + kWarpsPerBlock - 1) / kWarpsPerBlock);
  QuantizeActivationsKernel<T><<<grid, kWarpsPerBlock * 32, 0, static_cast<cudaStream_t>(stream)>>>(
      x, rows, padded_rows, cols, groups, q, scales);
  return static_cast<int>(cudaGetLastError());
}

}  // namespace

int LaunchQuantizeActivationsFp8Bf16(const uint16_t* x, int64_t rows, int64_t padded_rows,
                                     int64_t cols, uint8_t* q, float* scales, void* stream) {
  return LaunchQuantize(reinterpret_cast<const __nv_bfloat16*>(x), rows, padded_rows, cols, q,
                        scales, stream);
}

int LaunchQuantizeActivationsFp8F32(const float* x, int64_t rows, int64_t padded_rows, int64_t cols,
                                    uint8_t* q, float* scales, void* stream) {
  return LaunchQuantize(x, rows, padded_rows, cols, q, scales, stream);
}

int LaunchDequantizeFp8BlockWeightBf16(const uint8_t* fp8, const float* scale_inv, int64_t scale_ld,
                                       int64_t rows, int64_t cols, uint16_t* out, void* stream) {
  if (rows * cols == 0) return cudaSuccess;
  DequantizeWeightKernel<<<GridFor(rows * cols), 256, 0, static_cast<cudaStream_t>(stream)>>>(
      fp8, scale_inv, scale_ld, rows, cols, reinterpret_cast<__nv_bfloat16*>(out));
  return static_cast<int>(cudaGetLastError());
}

int LaunchDequantizeActivationsFp8Bf16(const uint8_t* q, const float* scales, int64_t padded_rows,
                                       int64_t cols, uint16_t* out, void* stream) {
  if (padded_rows * cols == 0) return cudaSuccess;
  DequantizeActivationsKernel<<<GridFor(padded_rows * cols), 256, 0,
                                static_cast<cudaStream_t>(stream)>>>(
      q, scales, padded_rows, cols, reinterpret_cast<__nv_bfloat16*>(out));
  return static_cast<int>(cudaGetLastError());
}

}  // namespace moeserve::engine
