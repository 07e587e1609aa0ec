#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "engine/ops/cuda/reduce.cuh"
#include "engine/ops/linear/fp8_quant.cuh"
#include "engine/ops/linear/fp8_segmented_layout.h"
#include "engine/ops/moe/moe_grouped_gemm_cuda.h"

namespace moeserve::engine {
namespace {

constexpr int kWarps = 8;
constexpr int kColumnsPerBlock = 64;  // output columns (weight rows) per CTA
constexpr int kRowsPerPass = 8;       // segment rows sharing one read of a weight row
constexpr int kBytesPerLane = 16;     // one uint4 of e4m3 per lane per step; divides 128

// Unpacks 16 e4m3 bytes to floats.
__device__ __forceinline__ void Unpack(const uint4& packed, float (&out)[kBytesPerLane]) {
  const uint32_t words[4] = {packed.x, packed.y, packed.z, packed.w};
#pragma unroll
  for (int i = 0; i < kBytesPerLane; ++i) {
    out[i] = fp8::E4m3ToFloat(static_cast<uint8_t>(words[i / 4] >> (8 * (i % 4))));
  }
}

// grid: [ceil(n / 64), num_experts]; block: 8 warps. Warp w of the CTA handles the columns
// j = 64·blockIdx.x + w, + 8, … ; for each, the segment's rows 8 at a time. Lane l covers the
// K bytes [16·l + 512·i, +16), which lie inside one 128-wide scale block, so its 16-product
// partial sum is scaled once and added to the row's accumulator; a warp reduction finishes.
__global__ void GroupedFp8GemmKernel(const uint8_t* __restrict__ x,
                                     const float* __restrict__ x_scales,
                                     const int32_t* __restrict__ offsets,
                                     const uint8_t* __restrict__ w,
                                     const float* __restrict__ w_scales, int64_t n, int64_t k,
                                     int64_t w_scale_stride, __nv_bfloat16* __restrict__ y) {
  const int64_t e = blockIdx.y;
  const int64_t begin = offsets[e], end = offsets[e + 1];
  if (begin == end) return;  // an expert without tokens: the whole CTA leaves
  const int warp = threadIdx.x / cuda::kWarpSize;
  const int lane = threadIdx.x % cuda::kWarpSize;
  const int64_t groups = (k + fp8::kGroupSize - 1) / fp8::kGroupSize;
  const uint8_t* w_expert = w + e * n * k;
  const float* w_scales_expert =
      w_scales + e * ((n + fp8::kGroupSize - 1) / fp8::kGroupSize) * w_scale_stride;
  const int64_t column_end = min(n, static_cast<int64_t>(blockIdx.x + 1) * kColumnsPerBlock);

  for (int64_t j = static_cast<int64_t>(blockIdx.x) * kColumnsPerBlock + warp; j < column_end;
       j += kWarps) {
    const uint8_t* w_row = w_expert + j * k;
    const float* w_row_scales = w_scales_expert + (j / fp8::kGroupSize) * w_scale_stride;
    for (int64_t pass = begin; pass < end; pass += kRowsPerPass) {
      const int64_t rows = min(static_cast<int64_t>(kRowsPerPass), end - pass);
      float acc[kRowsPerPass];
#pragma unroll
      for (int m = 0; m < kRowsPerPass; ++m) acc[m] = 0.0f;
      for (int64_t k0 = static_cast<int64_t>(lane) * kBytesPerLane; k0 < k;
           k0 += cuda::kWarpSize * kBytesPerLane) {
        float wv[kBytesPerLane];
        Unpack(*reinterpret_cast<const uint4*>(w_row + k0), wv);
        const int64_t block = k0 / fp8::kGroupSize;
        const float w_scale = w_row_scales[block];
#pragma unroll
        for (int m = 0; m < kRowsPerPass; ++m) {
          if (m < rows) {
            const int64_t row = pass + m;
            float xv[kBytesPerLane];
            Unpack(*reinterpret_cast<const uint4*>(x + row * k + k0), xv);
            float partial = 0.0f;
#pragma unroll
            for (int i = 0; i < kBytesPerLane; ++i) partial = fmaf(xv[i], wv[i], partial);
            const float x_scale = x_scales[SegmentedScaleIndex(begin, end, groups, row, block)];
            acc[m] += partial * x_scale * w_scale;
          }
        }
      }
#pragma unroll
      for (int m = 0; m < kRowsPerPass; ++m) acc[m] = cuda::WarpReduceSum(acc[m]);
      if (lane == 0) {
        for (int64_t m = 0; m < rows; ++m) y[(pass + m) * n + j] = __float2bfloat16(acc[m]);
      }
    }
  }
}

}  // namespace

int LaunchMoeGroupedFp8Gemm(const uint8_t* x, const float* x_scales, const int32_t* offsets,
                            int64_t num_experts, const uint8_t* w, const float* w_scales, int64_t n,
                            int64_t k, int64_t w_scale_stride, uint16_t* y, void* stream) {
  const bool aligned =
      reinterpret_cast<uintptr_t>(x) % 16 == 0 && reinterpret_cast<uintptr_t>(w) % 16 == 0;
  if (num_experts <= 0 || num_experts > 65535 || n < 0 || k <= 0 || k % kBytesPerLane != 0 ||
      !aligned || w_scale_stride < (k + fp8::kGroupSize - 1) / fp8::kGroupSize) {
    return static_cast<int>(cudaErrorInvalidValue);
  }
  if (n == 0) return cudaSuccess;
  const dim3 grid(static_cast<unsigned>((n + kColumnsPerBlock - 1) / kColumnsPerBlock),
                  static_cast<unsigned>(num_experts));
  GroupedFp8GemmKernel<<<grid, kWarps * cuda::kWarpSize, 0, static_cast<cudaStream_t>(stream)>>>(
      x, x_scales, offsets, w, w_scales, n, k, w_scale_stride, reinterpret_cast<__nv_bfloat16*>(y));
  return static_cast<int>(cudaGetLastError());
}

}  // namespace moeserve::engine
