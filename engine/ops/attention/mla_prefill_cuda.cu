#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "engine/ops/attention/mla_prefill_cuda.h"
#include "engine/ops/attention/mma_bf16.cuh"
#include "engine/ops/cuda/reduce.cuh"

namespace moeserve::engine {
namespace {

using cuda::CpAsync16;
using cuda::CpAsyncCommit;
using cuda::CpAsyncWait;
using cuda::kWarpSize;
using cuda::LoadFragmentA;
using cuda::LoadFragmentB;
using cuda::LoadFragmentBTransposed;
using cuda::MmaBf16M16N8K16;
using cuda::PackFloats;
using cuda::StoreZero16;

constexpr float kLog2e = 1.4426950408889634f;
constexpr int kQkDim = kMhaNopeDim + kMhaRopeDim;  // 192
constexpr int kKvRow = kMhaNopeDim + kMhaVDim;     // one head of kv_b_proj's output
constexpr int kBlockM = 64;                        // queries per CTA, 16 per warp
constexpr int kBlockN = 64;                        // keys per tile
constexpr int kWarps = kBlockM / 16;
constexpr int kThreads = kWarps * kWarpSize;
constexpr int kChunk = 8;  // bf16 per 16-byte copy
constexpr int kQkChunks = kQkDim / kChunk;
constexpr int kNopeChunks = kMhaNopeDim / kChunk;
constexpr int kVChunks = kMhaVDim / kChunk;
// Padded shared rows: 200 bf16 = 100 words and 136 bf16 = 68 words, both ≡ 4 (mod 32), so a
// fragment load's 8 row groups × 4 column pairs hit 32 different banks.
constexpr int kQkStride = kQkDim + 8;
constexpr int kVStride = kMhaVDim + 8;
constexpr int kScoreTiles = kBlockN / 8;  // per warp: 16 rows × 64 keys
constexpr int kOutTiles = kMhaVDim / 8;   // per warp: 16 rows × 128 dims

constexpr size_t kQBytes = size_t{kBlockM} * kQkStride * 2;
constexpr size_t kKBytes = size_t{kBlockN} * kQkStride * 2;  // per stage
constexpr size_t kVBytes = size_t{kBlockN} * kVStride * 2;   // per stage
constexpr size_t kKOffset = kQBytes;
constexpr size_t kVOffset = kKOffset + 2 * kKBytes;
constexpr size_t kSharedBytes = kVOffset + 2 * kVBytes;

static_assert(kQkDim % 16 == 0 && kMhaVDim % 8 == 0, "dims are whole MMA tiles");
static_assert(kBlockN % 16 == 0, "P·V consumes keys 16 at a time");
static_assert(kMhaNopeDim % kChunk == 0 && kMhaRopeDim % kChunk == 0, "16-byte chunks");
static_assert((kQkStride * 2) % 16 == 0 && (kVStride * 2) % 16 == 0, "16-byte aligned rows");
static_assert(kKOffset % 16 == 0 && kVOffset % 16 == 0, "16-byte aligned regions");
static_assert(kSharedBytes <= 227 * 1024, "fits sm_90's opt-in shared memory");

struct PrefillParams {
  const __nv_bfloat16* q;
  const __nv_bfloat16* k_nope_v;
  const __nv_bfloat16* k_pe;
  int64_t k_pe_stride;
  int num_queries;
  int ctx;
  int num_heads;
  float scale_log2;
  __nv_bfloat16* out;
};

// K = [k_nope | k_pe] and V of keys [tile_start, tile_start + 64) for head h; keys at or past
// kv_end are zero-filled so masked columns multiply finite values.
__device__ __forceinline__ void LoadKvTile(const PrefillParams& p, int h, int tile_start,
                                           int kv_end, __nv_bfloat16* k_tile,
                                           __nv_bfloat16* v_tile) {
  const int valid = min(kBlockN, kv_end - tile_start);
  for (int i = threadIdx.x; i < kBlockN * kQkChunks; i += kThreads) {
    const int key = i / kQkChunks;
    const int chunk = i % kQkChunks;
    __nv_bfloat16* dst = k_tile + key * kQkStride + chunk * kChunk;
    if (key >= valid) {
      StoreZero16(dst);
      continue;
    }
    const int64_t j = tile_start + key;
    const __nv_bfloat16* src = chunk < kNopeChunks
                                   ? p.k_nope_v + (j * p.num_heads + h) * kKvRow + chunk * kChunk
                                   : p.k_pe + j * p.k_pe_stride + (chunk - kNopeChunks) * kChunk;
    CpAsync16(dst, src);
  }
  for (int i = threadIdx.x; i < kBlockN * kVChunks; i += kThreads) {
    const int key = i / kVChunks;
    const int chunk = i % kVChunks;
    __nv_bfloat16* dst = v_tile + key * kVStride + chunk * kChunk;
    if (key >= valid) {
      StoreZero16(dst);
      continue;
    }
    const int64_t j = tile_start + key;
    CpAsync16(dst, p.k_nope_v + (j * p.num_heads + h) * kKvRow + kMhaNopeDim + chunk * kChunk);
  }
}

// Max (or sum) over the 4 lanes of a quad, which together hold one row of a C fragment.
__device__ __forceinline__ float QuadMax(float v) {
  v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, 1));
  return fmaxf(v, __shfl_xor_sync(0xffffffffu, v, 2));
}
__device__ __forceinline__ float QuadSum(float v) {
  v += __shfl_xor_sync(0xffffffffu, v, 1);
  return v + __shfl_xor_sync(0xffffffffu, v, 2);
}

// grid: [ceil(num_queries / 64), num_heads]; block: kThreads.
__global__ void __launch_bounds__(kThreads, 2) MhaPrefillKernel(const PrefillParams p) {
  extern __shared__ __align__(16) unsigned char shared[];
  auto* s_q = reinterpret_cast<__nv_bfloat16*>(shared);
  auto* s_k = reinterpret_cast<__nv_bfloat16*>(shared + kKOffset);
  auto* s_v = reinterpret_cast<__nv_bfloat16*>(shared + kVOffset);

  const int h = blockIdx.y;
  const int first_query = blockIdx.x * kBlockM;
  const int block_rows = min(kBlockM, p.num_queries - first_query);
  const int offset = p.ctx - p.num_queries;  // absolute position of query 0
  // Keys seen by the block's last query bound the tiles this CTA reads.
  const int kv_end = min(p.ctx, offset + first_query + block_rows);
  const int num_tiles = (kv_end + kBlockN - 1) / kBlockN;

  for (int i = threadIdx.x; i < kBlockM * kQkChunks; i += kThreads) {
    const int row = i / kQkChunks;
    const int chunk = i % kQkChunks;
    uint4 value = make_uint4(0, 0, 0, 0);
    if (row < block_rows) {
      const int64_t query = first_query + row;
      value = *reinterpret_cast<const uint4*>(p.q + (query * p.num_heads + h) * kQkDim +
                                              chunk * kChunk);
    }
    *reinterpret_cast<uint4*>(s_q + row * kQkStride + chunk * kChunk) = value;
  }

  const int warp = threadIdx.x / kWarpSize;
  const int lane = threadIdx.x % kWarpSize;
  const int g = lane / 4, t = lane % 4;
  const int row0 = warp * 16;
  // Causal limit of this thread's two rows (g and g + 8): keys [0, visible).
  int visible[2];
  for (int half = 0; half < 2; ++half) {
    const int row = row0 + g + 8 * half;
    visible[half] = row < block_rows ? offset + first_query + row + 1 : 0;
  }
  float row_max[2] = {-INFINITY, -INFINITY};
  float row_sum[2] = {0.0f, 0.0f};  // this lane's share; the quad is summed at the end
  float acc[kOutTiles][4];
  for (int n = 0; n < kOutTiles; ++n) {
    for (int c = 0; c < 4; ++c) acc[n][c] = 0.0f;
  }

  if (num_tiles > 0) {
    LoadKvTile(p, h, 0, kv_end, s_k, s_v);
    CpAsyncCommit();
  }
  for (int it = 0; it < num_tiles; ++it) {
    const int stage = it % 2;
    const int tile_start = it * kBlockN;
    if (it + 1 < num_tiles) {  // the other stage was released by the last iteration's barrier
      LoadKvTile(p, h, tile_start + kBlockN, kv_end, s_k + (1 - stage) * kBlockN * kQkStride,
                 s_v + (1 - stage) * kBlockN * kVStride);
      CpAsyncCommit();
      CpAsyncWait<1>();
    } else {
      CpAsyncWait<0>();
    }
    __syncthreads();
    const __nv_bfloat16* k_tile = s_k + stage * kBlockN * kQkStride;
    const __nv_bfloat16* v_tile = s_v + stage * kBlockN * kVStride;

    float s[kScoreTiles][4];
    for (int n = 0; n < kScoreTiles; ++n) {
      for (int c = 0; c < 4; ++c) s[n][c] = 0.0f;
    }
    for (int k0 = 0; k0 < kQkDim; k0 += 16) {
      uint32_t a[4];
      LoadFragmentA(s_q, kQkStride, row0, k0, lane, a);
      for (int n = 0; n < kScoreTiles; ++n) {
        uint32_t b[2];
        LoadFragmentBTransposed(k_tile, kQkStride, n * 8, k0, lane, b);
        MmaBf16M16N8K16(s[n], a, b);
      }
    }

    // Online softmax on the fragment: c = 0, 1 belong to row g, c = 2, 3 to row g + 8.
    float tile_max[2] = {-INFINITY, -INFINITY};
    for (int n = 0; n < kScoreTiles; ++n) {
      for (int c = 0; c < 4; ++c) {
        const int key = tile_start + n * 8 + 2 * t + (c & 1);
        s[n][c] = key < visible[c / 2] ? s[n][c] * p.scale_log2 : -INFINITY;
        tile_max[c / 2] = fmaxf(tile_max[c / 2], s[n][c]);
      }
    }
    float alpha[2], new_max[2];
    for (int half = 0; half < 2; ++half) {
      new_max[half] = fmaxf(row_max[half], QuadMax(tile_max[half]));
      // With no valid key yet the max stays −inf; exp2 of (−inf) − (−inf) would be NaN.
      alpha[half] = new_max[half] != -INFINITY ? exp2f(row_max[half] - new_max[half]) : 1.0f;
      row_max[half] = new_max[half];
      row_sum[half] *= alpha[half];
    }
    for (int n = 0; n < kScoreTiles; ++n) {
      for (int c = 0; c < 4; ++c) {
        const int half = c / 2;
        s[n][c] = s[n][c] != -INFINITY ? exp2f(s[n][c] - new_max[half]) : 0.0f;
        row_sum[half] += s[n][c];
      }
    }
    for (int n = 0; n < kOutTiles; ++n) {
      acc[n][0] *= alpha[0];
      acc[n][1] *= alpha[0];
      acc[n][2] *= alpha[1];
      acc[n][3] *= alpha[1];
    }
    // The score fragments of key tiles 2kk and 2kk + 1 are exactly the A fragment of P for
    // keys [16kk, 16kk + 16).
    for (int kk = 0; kk < kBlockN / 16; ++kk) {
      uint32_t a[4];
      a[0] = PackFloats(s[2 * kk][0], s[2 * kk][1]);
      a[1] = PackFloats(s[2 * kk][2], s[2 * kk][3]);
      a[2] = PackFloats(s[2 * kk + 1][0], s[2 * kk + 1][1]);
      a[3] = PackFloats(s[2 * kk + 1][2], s[2 * kk + 1][3]);
      for (int n = 0; n < kOutTiles; ++n) {
        uint32_t b[2];
        LoadFragmentB(v_tile, kVStride, kk * 16, n * 8, lane, b);
        MmaBf16M16N8K16(acc[n], a, b);
      }
    }
    __syncthreads();  // this stage is refilled two iterations on
  }

  for (int half = 0; half < 2; ++half) {
    const float sum = QuadSum(row_sum[half]);
    const int row = row0 + g + 8 * half;
    if (row >= block_rows) continue;
    const float inv_sum = sum > 0.0f ? 1.0f / sum : 0.0f;
    const int64_t query = first_query + row;
    __nv_bfloat16* out = p.out + (query * p.num_heads + h) * kMhaVDim;
    for (int n = 0; n < kOutTiles; ++n) {
      *reinterpret_cast<__nv_bfloat162*>(out + n * 8 + 2 * t) =
          __floats2bfloat162_rn(acc[n][2 * half] * inv_sum, acc[n][2 * half + 1] * inv_sum);
    }
  }
}

bool Aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

}  // namespace

int LaunchMhaPrefillBf16(const MhaPrefillCudaArgs& args, void* stream) {
  if (args.num_queries < 0 || args.ctx < args.num_queries || args.num_heads <= 0 ||
      args.ctx > (int64_t{1} << 30) || args.num_heads > 65535 || args.k_pe_stride % 8 != 0 ||
      args.k_pe_stride < kMhaRopeDim) {
    return static_cast<int>(cudaErrorInvalidValue);
  }
  if (args.num_queries == 0) return cudaSuccess;
  if (!Aligned16(args.q) || !Aligned16(args.k_nope_v) || !Aligned16(args.k_pe) ||
      !Aligned16(args.out)) {
    return static_cast<int>(cudaErrorInvalidValue);
  }
  PrefillParams params;
  params.q = reinterpret_cast<const __nv_bfloat16*>(args.q);
  params.k_nope_v = reinterpret_cast<const __nv_bfloat16*>(args.k_nope_v);
  params.k_pe = reinterpret_cast<const __nv_bfloat16*>(args.k_pe);
  params.k_pe_stride = args.k_pe_stride;
  params.num_queries = static_cast<int>(args.num_queries);
  params.ctx = static_cast<int>(args.ctx);
  params.num_heads = static_cast<int>(args.num_heads);
  params.scale_log2 = args.softmax_scale * kLog2e;
  params.out = reinterpret_cast<__nv_bfloat16*>(args.out);
  const cudaError_t attr =
      cudaFuncSetAttribute(MhaPrefillKernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                           static_cast<int>(kSharedBytes));
  if (attr != cudaSuccess) return static_cast<int>(attr);
  const dim3 grid(static_cast<unsigned>((args.num_queries + kBlockM - 1) / kBlockM),
                  static_cast<unsigned>(args.num_heads));
  MhaPrefillKernel<<<grid, kThreads, kSharedBytes, static_cast<cudaStream_t>(stream)>>>(params);
  return static_cast<int>(cudaGetLastError());
}

}  // namespace moeserve::engine
