// LaunchMoeGroupedFp8GemmMma: the grouped FP8 GEMM of moe_grouped_gemm_cuda.h on tensor cores.
//
// Tiles of 64 segment rows × 128 output columns, one CTA of 4 warps each. The CTA finds its
// (expert, first row) from the device offsets (no host synchronisation: the grid is sized by the
// rows bound the host knows), then walks K in 128-wide blocks — the scale granularity of both
// operands (reference §4) — DeepGEMM-style: the block's products are accumulated in fp32 on the
// tensor cores by mma.sync m16n8k32 e4m3 × e4m3, then multiplied by the row's activation scale and
// the tile's weight scale (one per 128 output columns) and added to the output accumulators. On
// Hopper this mma.sync form has no native FP8 path: ptxas widens e4m3 to f16 (exactly) and issues
// f16 HMMA (NVIDIA/cutlass#1986), so the numbers are right but the FP8 WGMMA rate needs wgmma
// (docs/performance.md). Operands are staged through shared memory, zero-padded past the segment's
// last row, the weight's last row and K; rows of other experts are never read.
//
// Fragment layouts (PTX ISA, mma.m16n8k32 with 8-bit A/B; g = lane / 4, t = lane % 4), four
// consecutive e4m3 per 32-bit register:
//   A (16×32, row-major): a0 = (row g, k 4t..4t+3), a1 = (row g+8, k 4t..), a2 = (row g,
//                         k 16+4t..), a3 = (row g+8, k 16+4t..);
//   B (32×8, column n):   b0 = (k 4t..4t+3, n g), b1 = (k 16+4t.., n g);
//   C (16×8, fp32):       c0, c1 = (row g, n 2t, 2t+1), c2, c3 = (row g+8, same n).
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "engine/ops/linear/fp8_segmented_layout.h"
#include "engine/ops/moe/moe_grouped_gemm_cuda.h"

namespace moeserve::engine {
namespace {

constexpr int kTileRows = 64;
constexpr int kTileCols = 128;  // = the weight's scale block along N
constexpr int kTileK = 128;     // = the scale block along K
constexpr int kThreads = 128;   // 4 warps × 16 rows
constexpr int kPad = 16;        // bytes per shared row beyond kTileK: rows land in distinct banks
constexpr int kStride = kTileK + kPad;
constexpr int kNTiles = kTileCols / 8;

__device__ __forceinline__ void MmaE4m3(float (&d)[4], const uint32_t (&a)[4],
                                        const uint32_t (&b)[2]) {
  asm volatile(
      "mma.sync.aligned.m16n8k32.row.col.f32.e4m3.e4m3.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
      "{%8, %9}, {%0, %1, %2, %3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

__device__ __forceinline__ uint32_t Load4(const uint8_t* p) {
  return *reinterpret_cast<const uint32_t*>(p);
}

// `rows` rows of `src` (row length k, 16-B aligned rows) from column k0 into a [rows_total,
// kStride] shared tile; rows >= rows_valid and columns >= k are zero.
__device__ __forceinline__ void StageTile(const uint8_t* __restrict__ src, int64_t k, int64_t k0,
                                          int rows_total, int rows_valid, uint8_t* tile) {
  constexpr int kChunks = kTileK / 16;
  for (int i = threadIdx.x; i < rows_total * kChunks; i += kThreads) {
    const int row = i / kChunks, chunk = i % kChunks;
    const int64_t col = k0 + chunk * 16;
    uint4 v = make_uint4(0, 0, 0, 0);
    if (row < rows_valid && col < k) v = *reinterpret_cast<const uint4*>(src + row * k + col);
    *reinterpret_cast<uint4*>(tile + row * kStride + chunk * 16) = v;
  }
}

__global__ void __launch_bounds__(kThreads)
    GroupedFp8GemmMmaKernel(const uint8_t* __restrict__ x, const float* __restrict__ x_scales,
                            const int32_t* __restrict__ offsets, int64_t num_experts,
                            const uint8_t* __restrict__ w, const float* __restrict__ w_scales,
                            int64_t n, int64_t k, int64_t w_scale_stride,
                            __nv_bfloat16* __restrict__ y) {
  __shared__ __align__(16) uint8_t x_tile[kTileRows * kStride];
  __shared__ __align__(16) uint8_t w_tile[kTileCols * kStride];
  __shared__ int64_t tile_expert, tile_row;

  // Which expert's which 64-row tile this CTA computes: tiles are numbered expert by expert.
  if (threadIdx.x == 0) {
    int64_t first = 0, found = -1, row = 0;
    for (int64_t e = 0; e < num_experts && found < 0; ++e) {
      const int64_t rows = offsets[e + 1] - offsets[e];
      const int64_t tiles = (rows + kTileRows - 1) / kTileRows;
      if (static_cast<int64_t>(blockIdx.y) < first + tiles) {
        found = e;
        row = offsets[e] + (blockIdx.y - first) * kTileRows;
      }
      first += tiles;
    }
    tile_expert = found;
    tile_row = row;
  }
  __syncthreads();
  const int64_t e = tile_expert;
  if (e < 0) return;  // past the last tile of this step's routing
  const int64_t begin = offsets[e], end = offsets[e + 1], row0 = tile_row;
  const int rows_valid = static_cast<int>(min(static_cast<int64_t>(kTileRows), end - row0));
  const int64_t col0 = static_cast<int64_t>(blockIdx.x) * kTileCols;
  const int cols_valid = static_cast<int>(min(static_cast<int64_t>(kTileCols), n - col0));
  const int64_t groups = (k + kTileK - 1) / kTileK;
  const uint8_t* w_expert = w + e * n * k;
  const float* w_scale_row =
      w_scales + (e * ((n + kTileCols - 1) / kTileCols) + blockIdx.x) * w_scale_stride;

  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int g = lane / 4, t = lane % 4;
  const int r_top = warp * 16 + g, r_bottom = r_top + 8;  // this thread's rows in the tile
  float acc[kNTiles][4];
#pragma unroll
  for (int j = 0; j < kNTiles; ++j) acc[j][0] = acc[j][1] = acc[j][2] = acc[j][3] = 0.0f;

  for (int64_t block = 0; block < groups; ++block) {
    const int64_t k0 = block * kTileK;
    StageTile(x + row0 * k, k, k0, kTileRows, rows_valid, x_tile);
    StageTile(w_expert + col0 * k, k, k0, kTileCols, cols_valid, w_tile);
    __syncthreads();

    float part[kNTiles][4];
#pragma unroll
    for (int j = 0; j < kNTiles; ++j) part[j][0] = part[j][1] = part[j][2] = part[j][3] = 0.0f;
#pragma unroll
    for (int ks = 0; ks < kTileK; ks += 32) {
      uint32_t a[4];
      a[0] = Load4(x_tile + r_top * kStride + ks + 4 * t);
      a[1] = Load4(x_tile + r_bottom * kStride + ks + 4 * t);
      a[2] = Load4(x_tile + r_top * kStride + ks + 16 + 4 * t);
      a[3] = Load4(x_tile + r_bottom * kStride + ks + 16 + 4 * t);
#pragma unroll
      for (int j = 0; j < kNTiles; ++j) {
        const uint8_t* w_row = w_tile + (j * 8 + g) * kStride + ks;
        const uint32_t b[2] = {Load4(w_row + 4 * t), Load4(w_row + 16 + 4 * t)};
        MmaE4m3(part[j], a, b);
      }
    }
    // Promote the block's exact fp32 sums with both scales (zero-padded rows scale by 0).
    const float w_scale = w_scale_row[block];
    const float s_top =
        r_top < rows_valid
            ? x_scales[SegmentedScaleIndex(begin, end, groups, row0 + r_top, block)] * w_scale
            : 0.0f;
    const float s_bottom =
        r_bottom < rows_valid
            ? x_scales[SegmentedScaleIndex(begin, end, groups, row0 + r_bottom, block)] * w_scale
            : 0.0f;
#pragma unroll
    for (int j = 0; j < kNTiles; ++j) {
      acc[j][0] += part[j][0] * s_top;
      acc[j][1] += part[j][1] * s_top;
      acc[j][2] += part[j][2] * s_bottom;
      acc[j][3] += part[j][3] * s_bottom;
    }
    __syncthreads();  // the tiles are restaged for the next block
  }

#pragma unroll
  for (int j = 0; j < kNTiles; ++j) {
    const int c = j * 8 + 2 * t;
#pragma unroll
    for (int half = 0; half < 2; ++half) {
      const int r = half == 0 ? r_top : r_bottom;
      if (r >= rows_valid) continue;
      __nv_bfloat16* out = y + (row0 + r) * n + col0;
      if (c < cols_valid) out[c] = __float2bfloat16(acc[j][2 * half]);
      if (c + 1 < cols_valid) out[c + 1] = __float2bfloat16(acc[j][2 * half + 1]);
    }
  }
}

}  // namespace

int LaunchMoeGroupedFp8GemmMma(const uint8_t* x, const float* x_scales, const int32_t* offsets,
                               int64_t num_experts, int64_t max_rows, const uint8_t* w,
                               const float* w_scales, int64_t n, int64_t k, int64_t w_scale_stride,
                               uint16_t* y, void* stream) {
  const bool aligned =
      reinterpret_cast<uintptr_t>(x) % 16 == 0 && reinterpret_cast<uintptr_t>(w) % 16 == 0;
  const int64_t tiles = (max_rows + kTileRows - 1) / kTileRows + num_experts;
  if (num_experts <= 0 || max_rows < 0 || n < 0 || k <= 0 || k % 16 != 0 || !aligned ||
      tiles > 65535 || w_scale_stride < (k + kTileK - 1) / kTileK) {
    return static_cast<int>(cudaErrorInvalidValue);
  }
  if (n == 0 || max_rows == 0) return cudaSuccess;
  const dim3 grid(static_cast<unsigned>((n + kTileCols - 1) / kTileCols),
                  static_cast<unsigned>(tiles));
  GroupedFp8GemmMmaKernel<<<grid, kThreads, 0, static_cast<cudaStream_t>(stream)>>>(
      x, x_scales, offsets, num_experts, w, w_scales, n, k, w_scale_stride,
      reinterpret_cast<__nv_bfloat16*>(y));
  return static_cast<int>(cudaGetLastError());
}

}  // namespace moeserve::engine
