// The "segmented" layout of FP8 activation scales that the MoE layer's per-expert FP8 GEMMs read.
//
// The rows of a permuted MoE activation are split into segments, one per expert (moe_permute.h),
// and each segment is the B operand of its own cuBLASLt GEMM. cuBLASLt's VEC128_32F scales for B
// are N-major, [L, rows] with no separate leading dimension (reference §5.3), so a segment
// [begin, end) of m = end - begin rows gets its own [L, m] block, stored at begin · L:
//
//   scale(row r, group g) = scales[begin · L + g · m + (r - begin)],   L = ceil(cols / 128).
//
// The blocks tile [0, rows_total · L) without gaps. A single segment [0, padded_rows) is exactly
// the layout of LaunchQuantizeActivationsFp8* (fp8_quant_cuda.h). Shared by the CUDA kernels that
// write the layout and by the CPU code and tests that check them, hence host-and-device inline
// functions in a header with no dependencies (nvcc compiles .cu files as C++17 without Abseil).
#pragma once

#include <cstdint>

#if defined(__CUDACC__)
#define MOESERVE_HOST_DEVICE __host__ __device__
#else
#define MOESERVE_HOST_DEVICE
#endif

namespace moeserve::engine {

// `count` rounded up to a multiple of `alignment` (> 0).
MOESERVE_HOST_DEVICE inline int64_t AlignUp(int64_t count, int64_t alignment) {
  return (count + alignment - 1) / alignment * alignment;
}

// The segment holding `row`: the s with offsets[s] <= row < offsets[s + 1], where offsets has
// num_segments + 1 non-decreasing entries and offsets[0] <= row < offsets[num_segments]. Empty
// segments (equal neighbouring offsets) are never returned. Binary search: the last s with
// offsets[s] <= row.
MOESERVE_HOST_DEVICE inline int64_t FindSegment(const int32_t* offsets, int64_t num_segments,
                                                int64_t row) {
  int64_t lo = 0, hi = num_segments;  // invariant: offsets[lo] <= row < offsets[hi]
  while (hi - lo > 1) {
    const int64_t mid = lo + (hi - lo) / 2;
    if (offsets[mid] <= row) {
      lo = mid;
    } else {
      hi = mid;
    }
  }
  return lo;
}

// The index of the scale of (row, group) for a row of the segment [begin, end); see above.
MOESERVE_HOST_DEVICE inline int64_t SegmentedScaleIndex(int64_t begin, int64_t end,
                                                        int64_t num_groups, int64_t row,
                                                        int64_t group) {
  return begin * num_groups + group * (end - begin) + (row - begin);
}

}  // namespace moeserve::engine
