#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include "engine/ops/activation/silu_mul.cuh"
#include "engine/ops/activation/silu_mul_cuda.h"

namespace moeserve::engine {
namespace {

constexpr int kThreadsPerBlock = 256;

__device__ __forceinline__ float Load(const float* p) { return *p; }
__device__ __forceinline__ float Load(const __nv_bfloat16* p) { return __bfloat162float(*p); }
__device__ __forceinline__ void Store(float* p, float v) { *p = v; }
__device__ __forceinline__ void Store(__nv_bfloat16* p, float v) { *p = __float2bfloat16(v); }

// grid: [num_tokens, ceil(width / (256 * 4))]; each thread does up to 4 columns of one token.
template <typename T>
__global__ void SiluMulKernel(const T* __restrict__ gate_up, int64_t width, T* __restrict__ out) {
  const int64_t t = blockIdx.x;
  const T* gate = gate_up + t * 2 * width;
  const T* up = gate + width;
  const int64_t begin = static_cast<int64_t>(blockIdx.y) * blockDim.x * 4 + threadIdx.x;
#pragma unroll
  for (int j = 0; j < 4; ++j) {
    const int64_t i = begin + static_cast<int64_t>(j) * blockDim.x;
    if (i < width) {
      Store(out + t * width + i, SiluMul(Load(gate + i), Load(up + i)));
    }
  }
}

template <typename T>
int Launch(const T* gate_up, int64_t num_tokens, int64_t width, T* out, void* stream) {
  if (num_tokens == 0 || width == 0) return cudaSuccess;
  const dim3 grid(
      static_cast<unsigned>(num_tokens),
      static_cast<unsigned>((width + kThreadsPerBlock * 4 - 1) / (kThreadsPerBlock * 4)));
  SiluMulKernel<T>
      <<<grid, kThreadsPerBlock, 0, static_cast<cudaStream_t>(stream)>>>(gate_up, width, out);
  return static_cast<int>(cudaGetLastError());
}

}  // namespace

int LaunchSiluMulBf16(const uint16_t* gate_up, int64_t num_tokens, int64_t width, uint16_t* out,
                      void* stream) {
  return Launch(reinterpret_cast<const __nv_bfloat16*>(gate_up), num_tokens, width,
                reinterpret_cast<__nv_bfloat16*>(out), stream);
}

int LaunchSiluMulF32(const float* gate_up, int64_t num_tokens, int64_t width, float* out,
                     void* stream) {
  return Launch(gate_up, num_tokens, width, out, stream);
}

}  // namespace moeserve::engine
