#include <cuda_runtime.h>

#include "engine/ops/linear/transpose_cuda.h"

namespace moeserve::engine {
namespace {

// A 32×32 tile per block staged through shared memory so both the read and the write are
// coalesced; the +1 column keeps the column reads free of bank conflicts (2-byte elements pair
// up per bank, which the padding still separates). block: [32, 8], each thread moves 4 rows.
constexpr int kTile = 32;
constexpr int kRowsPerPass = 8;

// grid: [ceil(cols / 32), ceil(rows / 32)].
__global__ void TransposeBf16Kernel(const uint16_t* __restrict__ in, int64_t rows, int64_t cols,
                                    uint16_t* __restrict__ out) {
  __shared__ uint16_t tile[kTile][kTile + 1];
  const int64_t col0 = static_cast<int64_t>(blockIdx.x) * kTile;
  const int64_t row0 = static_cast<int64_t>(blockIdx.y) * kTile;
  for (int i = threadIdx.y; i < kTile; i += kRowsPerPass) {
    const int64_t r = row0 + i, c = col0 + threadIdx.x;
    if (r < rows && c < cols) tile[i][threadIdx.x] = in[r * cols + c];
  }
  __syncthreads();
  for (int i = threadIdx.y; i < kTile; i += kRowsPerPass) {
    const int64_t c = col0 + i, r = row0 + threadIdx.x;
    if (r < rows && c < cols) out[c * rows + r] = tile[threadIdx.x][i];
  }
}

}  // namespace

int LaunchTransposeBf16(const uint16_t* in, int64_t rows, int64_t cols, uint16_t* out,
                        void* stream) {
  if (rows < 0 || cols < 0) return static_cast<int>(cudaErrorInvalidValue);
  if (rows == 0 || cols == 0) return cudaSuccess;
  const int64_t blocks_x = (cols + kTile - 1) / kTile, blocks_y = (rows + kTile - 1) / kTile;
  if (blocks_y > 65535 || blocks_x > 0x7fffffff) return static_cast<int>(cudaErrorInvalidValue);
  const dim3 grid(static_cast<unsigned>(blocks_x), static_cast<unsigned>(blocks_y));
  TransposeBf16Kernel<<<grid, dim3(kTile, kRowsPerPass), 0, static_cast<cudaStream_t>(stream)>>>(
      in, rows, cols, out);
  return static_cast<int>(cudaGetLastError());
}

}  // namespace moeserve::engine
