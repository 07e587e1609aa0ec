#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include "engine/ops/rope/rope_cuda.h"

namespace moeserve::engine {
namespace {

constexpr int kThreadsPerBlock = 256;

__device__ __forceinline__ float Load(const float* p) { return *p; }
__device__ __forceinline__ float Load(const __nv_bfloat16* p) { return __bfloat162float(*p); }
__device__ __forceinline__ void Store(float* p, float v) { *p = v; }
__device__ __forceinline__ void Store(__nv_bfloat16* p, float v) { *p = __float2bfloat16(v); }

// grid: [num_tokens]; threads stride over (head, pair). cos/sin of the token's angles are
// computed once per block into shared memory (half ≤ 256 pairs).
template <typename T>
__global__ void RopeInterleavedKernel(const float* __restrict__ inv_freq, int half,
                                      float attention_scaling, const int32_t* __restrict__ positions,
                                      int64_t num_heads, int64_t token_stride, int64_t head_stride,
                                      T* x) {
  __shared__ float cos_t[256];
  __shared__ float sin_t[256];
  const int64_t t = blockIdx.x;
  const float position = static_cast<float>(positions[t]);
  for (int i = threadIdx.x; i < half; i += blockDim.x) {
    const float angle = position * inv_freq[i];
    cos_t[i] = cosf(angle) * attention_scaling;
    sin_t[i] = sinf(angle) * attention_scaling;
  }
  __syncthreads();
  for (int64_t j = threadIdx.x; j < num_heads * half; j += blockDim.x) {
    const int64_t h = j / half;
    const int i = static_cast<int>(j % half);
    T* v = x + t * token_stride + h * head_stride;
    const float a = Load(v + 2 * i);
    const float b = Load(v + 2 * i + 1);
    Store(v + 2 * i, a * cos_t[i] - b * sin_t[i]);
    Store(v + 2 * i + 1, a * sin_t[i] + b * cos_t[i]);
  }
}

template <typename T>
int Launch(const float* inv_freq, int64_t rotary_dim, float attention_scaling,
           const int32_t* positions, int64_t num_tokens, int64_t num_heads, int64_t token_stride,
           int64_t head_stride, T* x, void* stream) {
  if (rotary_dim % 2 != 0 || rotary_dim > 512) return static_cast<int>(cudaErrorInvalidValue);
  if (num_tokens == 0 || num_heads == 0) return cudaSuccess;
  RopeInterleavedKernel<T><<<static_cast<unsigned>(num_tokens), kThreadsPerBlock, 0,
                             static_cast<cudaStream_t>(stream)>>>(
      inv_freq, static_cast<int>(rotary_dim / 2), attention_scaling, positions, num_heads,
      token_stride, head_stride, x);
  return static_cast<int>(cudaGetLastError());
}

}  // namespace

int LaunchRopeInterleavedBf16(const float* inv_freq, int64_t rotary_dim, float attention_scaling,
                              const int32_t* positions, int64_t num_tokens, int64_t num_heads,
                              int64_t token_stride, int64_t head_stride, uint16_t* x,
                              void* stream) {
  return Launch(inv_freq, rotary_dim, attention_scaling, positions, num_tokens, num_heads,
                token_stride, head_stride, reinterpret_cast<__nv_bfloat16*>(x), stream);
}

int LaunchRopeInterleavedF32(const float* inv_freq, int64_t rotary_dim, float attention_scaling,
                             const int32_t* positions, int64_t num_tokens, int64_t num_heads,
                             int64_t token_stride, int64_t head_stride, float* x, void* stream) {
  return Launch(inv_freq, rotary_dim, attention_scaling, positions, num_tokens, num_heads,
                token_stride, head_stride, x, stream);
}

}  // namespace moeserve::engine
