#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include "engine/ops/cuda/reduce.cuh"
#include "engine/sampling/argmax_cuda.h"

namespace moeserve::engine {
namespace {

constexpr int kThreadsPerBlock = 1024;
constexpr int kNoIndex = 0x7fffffff;

__device__ __forceinline__ float Load(const float* p) { return *p; }
__device__ __forceinline__ float Load(const __nv_bfloat16* p) { return __bfloat162float(*p); }

// grid: [num_rows]; each thread scans a strided slice, then one block reduction.
template <typename T>
__global__ void ArgmaxKernel(const T* __restrict__ logits, int64_t vocab,
                             int32_t* __restrict__ token_ids) {
  const T* row = logits + static_cast<int64_t>(blockIdx.x) * vocab;
  cuda::ArgMaxPair best{-INFINITY, kNoIndex};
  for (int64_t i = threadIdx.x; i < vocab; i += blockDim.x) {
    const float v = Load(row + i);
    if (isnan(v)) continue;
    // Strided scan visits increasing i, so '>' keeps the lower index among equal values;
    // -inf still beats "nothing yet".
    if (best.index == kNoIndex || v > best.value) best = cuda::ArgMaxPair{v, static_cast<int>(i)};
  }
  best = cuda::BlockReduceArgMax(best);
  if (threadIdx.x == 0) token_ids[blockIdx.x] = best.index == kNoIndex ? 0 : best.index;
}

template <typename T>
int Launch(const T* logits, int64_t num_rows, int64_t vocab, int32_t* token_ids, void* stream) {
  if (vocab <= 0 || vocab >= kNoIndex) return static_cast<int>(cudaErrorInvalidValue);
  if (num_rows == 0) return cudaSuccess;
  ArgmaxKernel<T><<<static_cast<unsigned>(num_rows), kThreadsPerBlock, 0,
                    static_cast<cudaStream_t>(stream)>>>(logits, vocab, token_ids);
  return static_cast<int>(cudaGetLastError());
}

}  // namespace

int LaunchArgmaxF32(const float* logits, int64_t num_rows, int64_t vocab, int32_t* token_ids,
                    void* stream) {
  return Launch(logits, num_rows, vocab, token_ids, stream);
}

int LaunchArgmaxBf16(const uint16_t* logits, int64_t num_rows, int64_t vocab, int32_t* token_ids,
                     void* stream) {
  return Launch(reinterpret_cast<const __nv_bfloat16*>(logits), num_rows, vocab, token_ids,
                stream);
}

}  // namespace moeserve::engine
