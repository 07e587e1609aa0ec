#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include "engine/ops/activation/silu_mul.cuh"
#include "engine/ops/activation/silu_mul_fp8_cuda.h"
#include "engine/ops/linear/fp8_quant.cuh"
#include "engine/ops/linear/fp8_segmented_layout.h"

namespace moeserve::engine {
namespace {

constexpr int kWarpsPerBlock = 8;

// One warp per (row, 128-channel group); grid: [ceil(max_rows * groups / 8)].
__global__ void SiluMulQuantizeKernel(const __nv_bfloat16* __restrict__ gate_up, int64_t max_rows,
                                      int64_t width, int64_t groups,
                                      const int32_t* __restrict__ segment_offsets,
                                      int64_t num_segments, uint8_t* __restrict__ q,
                                      float* __restrict__ scales) {
  const int64_t warp_id =
      static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + threadIdx.x / cuda::kWarpSize;
  const int lane = threadIdx.x % cuda::kWarpSize;
  if (warp_id >= max_rows * groups) return;  // whole warps exit together
  const int64_t row = warp_id / groups;
  const int64_t g = warp_id % groups;
  int64_t begin = 0, end = max_rows;
  if (segment_offsets != nullptr) {
    if (row >= segment_offsets[num_segments]) return;
    const int64_t s = FindSegment(segment_offsets, num_segments, row);
    begin = segment_offsets[s];
    end = segment_offsets[s + 1];
  }
  const __nv_bfloat16* gate = gate_up + row * 2 * width;
  const __nv_bfloat16* up = gate + width;
  float v[fp8::kValuesPerLane];
#pragma unroll
  for (int j = 0; j < fp8::kValuesPerLane; ++j) {
    const int64_t c = g * fp8::kGroupSize + lane + j * cuda::kWarpSize;
    v[j] = c < width ? SiluMul(__bfloat162float(gate[c]), __bfloat162float(up[c])) : 0.0f;
  }
  uint8_t qv[fp8::kValuesPerLane];
  const float scale = fp8::WarpQuantizeGroup(v, qv);
#pragma unroll
  for (int j = 0; j < fp8::kValuesPerLane; ++j) {
    const int64_t c = g * fp8::kGroupSize + lane + j * cuda::kWarpSize;
    if (c < width) q[row * width + c] = qv[j];
  }
  if (lane == 0) scales[SegmentedScaleIndex(begin, end, groups, row, g)] = scale;
}

}  // namespace

int LaunchSiluMulQuantizeFp8(const uint16_t* gate_up, int64_t max_rows, int64_t width,
                             const int32_t* segment_offsets, int64_t num_segments, uint8_t* q,
                             float* scales, void* stream) {
  if (max_rows < 0 || width < 0 || (segment_offsets != nullptr && num_segments <= 0)) {
    return static_cast<int>(cudaErrorInvalidValue);
  }
  if (max_rows == 0 || width == 0) return cudaSuccess;
  const int64_t groups = (width + fp8::kGroupSize - 1) / fp8::kGroupSize;
  const int64_t warps = max_rows * groups;
  const unsigned grid = static_cast<unsigned>((warps + kWarpsPerBlock - 1) / kWarpsPerBlock);
  SiluMulQuantizeKernel<<<grid, kWarpsPerBlock * cuda::kWarpSize, 0,
                          static_cast<cudaStream_t>(stream)>>>(
      reinterpret_cast<const __nv_bfloat16*>(gate_up), max_rows, width, groups, segment_offsets,
      num_segments, q, scales);
  return static_cast<int>(cudaGetLastError());
}

}  // namespace moeserve::engine
