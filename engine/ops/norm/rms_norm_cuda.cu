#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include "engine/ops/cuda/reduce.cuh"
#include "engine/ops/norm/rms_norm_cuda.h"

namespace moeserve::engine {
namespace {

// One block per row; 256 threads stride over the row, and the sum of squares (fp32) is
// reduced across the block with the shared helper.
constexpr int kThreadsPerBlock = 256;
using cuda::BlockReduceSum;

__global__ void RmsNormBf16Kernel(const __nv_bfloat16* x,  // may alias y (in place)
                                  const __nv_bfloat16* __restrict__ weight, float eps, int64_t dim,
                                  __nv_bfloat16* y) {
  const int64_t row = blockIdx.x;
  const __nv_bfloat16* in = x + row * dim;
  float sum_squares = 0.0f;
  for (int64_t i = threadIdx.x; i < dim; i += blockDim.x) {
    const float v = __bfloat162float(in[i]);
    sum_squares += v * v;
  }
  const float inv_rms = rsqrtf(BlockReduceSum(sum_squares) / static_cast<float>(dim) + eps);
  __nv_bfloat16* out = y + row * dim;
  for (int64_t i = threadIdx.x; i < dim; i += blockDim.x) {
    out[i] = __float2bfloat16(__bfloat162float(weight[i]) * (__bfloat162float(in[i]) * inv_rms));
  }
}

// residual ← bf16(residual + x); y = w ⊙ residual / rms(residual). Each thread re-reads only
// the residual elements it wrote itself, so no barrier is needed between the two passes.
__global__ void FusedAddRmsNormBf16Kernel(__nv_bfloat16* __restrict__ residual,
                                          const __nv_bfloat16* x,  // may alias y
                                          const __nv_bfloat16* __restrict__ weight, float eps,
                                          int64_t dim, __nv_bfloat16* y) {
  const int64_t row = blockIdx.x;
  __nv_bfloat16* res = residual + row * dim;
  const __nv_bfloat16* in = x + row * dim;
  float sum_squares = 0.0f;
  for (int64_t i = threadIdx.x; i < dim; i += blockDim.x) {
    const __nv_bfloat16 sum = __float2bfloat16(__bfloat162float(res[i]) + __bfloat162float(in[i]));
    res[i] = sum;
    const float v = __bfloat162float(sum);
    sum_squares += v * v;
  }
  const float inv_rms = rsqrtf(BlockReduceSum(sum_squares) / static_cast<float>(dim) + eps);
  __nv_bfloat16* out = y + row * dim;
  for (int64_t i = threadIdx.x; i < dim; i += blockDim.x) {
    out[i] = __float2bfloat16(__bfloat162float(weight[i]) * (__bfloat162float(res[i]) * inv_rms));
  }
}

}  // namespace

int LaunchFusedAddRmsNormBf16(uint16_t* residual, const uint16_t* x, const uint16_t* weight,
                              float eps, int64_t num_rows, int64_t dim, uint16_t* y, void* stream) {
  if (num_rows == 0) return cudaSuccess;
  FusedAddRmsNormBf16Kernel<<<static_cast<unsigned>(num_rows), kThreadsPerBlock, 0,
                              static_cast<cudaStream_t>(stream)>>>(
      reinterpret_cast<__nv_bfloat16*>(residual), reinterpret_cast<const __nv_bfloat16*>(x),
      reinterpret_cast<const __nv_bfloat16*>(weight), eps, dim,
      reinterpret_cast<__nv_bfloat16*>(y));
  return static_cast<int>(cudaGetLastError());
}

int LaunchRmsNormBf16(const uint16_t* x, const uint16_t* weight, float eps, int64_t num_rows,
                      int64_t dim, uint16_t* y, void* stream) {
  if (num_rows == 0) return cudaSuccess;
  RmsNormBf16Kernel<<<static_cast<unsigned>(num_rows), kThreadsPerBlock, 0,
                      static_cast<cudaStream_t>(stream)>>>(
      reinterpret_cast<const __nv_bfloat16*>(x), reinterpret_cast<const __nv_bfloat16*>(weight),
      eps, dim, reinterpret_cast<__nv_bfloat16*>(y));
  return static_cast<int>(cudaGetLastError());
}

}  // namespace moeserve::engine
