#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "engine/ops/attention/mla_decode_cuda.h"
#include "engine/ops/attention/mla_decode_split.h"
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
using cuda::StoreZero16;
using cuda::WarpReduceMax;
using cuda::WarpReduceSum;

constexpr int kBlockN = kMlaPageSize;  // keys per tile
constexpr int kChunk = 8;              // bf16 per 16-byte copy
constexpr int kChunksPerRow = kMlaKvDim / kChunk;
constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;

// Shapes of the CTA for `kBlockM` query rows. Warps split the rows into groups of 16 (one MMA
// tile high) and the 512 output dims into slabs, so each warp keeps a 16 × kSlabDims fp32
// accumulator (64 registers at most). kBlockM = 64 (128 heads) uses 16 warps and one K buffer;
// kBlockM = 16 (16 heads) uses 8 warps and double-buffers K so the next tile's copy overlaps
// this tile's math (that case is memory-bound).
template <int kBlockM>
struct DecodeShape {
  static constexpr int kRowGroups = kBlockM / 16;
  static constexpr int kWarps = kBlockM == 64 ? 16 : 8;
  static constexpr int kThreads = kWarps * kWarpSize;
  static constexpr int kStages = kBlockM == 64 ? 1 : 2;
  static constexpr int kSlabs = kWarps / kRowGroups;
  static constexpr int kSlabDims = kMlaVDim / kSlabs;
  static constexpr int kSlabTiles = kSlabDims / 8;
  static constexpr int kRowsPerWarp = kBlockM / kWarps;  // rows each warp runs the softmax of
  static constexpr int kScoreTiles = kRowGroups * (kBlockN / 8);
  // Padded shared rows: 584 bf16 = 292 words ≡ 4 (mod 32), so the 8 row groups × 4 column
  // pairs of a fragment load hit 32 different banks.
  static constexpr int kQkStride = kMlaKvDim + 8;
  static constexpr int kSStride = kBlockN + 4;  // fp32 scores
  static constexpr int kPStride = kBlockN + 8;  // bf16 probabilities

  static constexpr size_t kQBytes = size_t{kBlockM} * kQkStride * 2;
  static constexpr size_t kKBytes = size_t{kBlockN} * kQkStride * 2;  // one stage
  static constexpr size_t kSBytes = size_t{kBlockM} * kSStride * 4;
  static constexpr size_t kPBytes = size_t{kBlockM} * kPStride * 2;
  static constexpr size_t kQOffset = 0;
  static constexpr size_t kKOffset = kQOffset + kQBytes;
  static constexpr size_t kSOffset = kKOffset + kStages * kKBytes;
  static constexpr size_t kPOffset = kSOffset + kSBytes;
  static constexpr size_t kAlphaOffset = kPOffset + kPBytes;
  static constexpr size_t kLOffset = kAlphaOffset + kBlockM * 4;
  static constexpr size_t kSharedBytes = kLOffset + kBlockM * 4;

  static_assert(kBlockM == 16 || kBlockM == 64, "row blocks of 16 or 64");
  static_assert(kWarps % kRowGroups == 0, "every row group gets the same number of slabs");
  static_assert(kMlaVDim % (kSlabs * 8) == 0, "slabs are whole MMA tiles wide");
  static_assert(kBlockM % kWarps == 0, "softmax rows divide evenly over warps");
  static_assert(kBlockN == 2 * kWarpSize, "the softmax gives each lane two columns");
  static_assert(kMlaKvDim % 16 == 0 && kMlaVDim % 16 == 0, "dims are whole MMA k-steps");
  static_assert(kMlaKvDim % kChunk == 0, "rows are whole 16-byte chunks");
  static_assert((kQkStride * 2) % 16 == 0 && (kPStride * 2) % 16 == 0 && (kSStride * 4) % 16 == 0,
                "padded rows keep 16-byte alignment");
  static_assert(kKOffset % 16 == 0 && kSOffset % 16 == 0 && kPOffset % 16 == 0 &&
                    kAlphaOffset % 16 == 0,
                "shared regions are 16-byte aligned");
  static_assert(kSharedBytes <= 227 * 1024, "fits the 227 KiB opt-in shared memory of sm_90");
};

struct DecodeParams {
  const __nv_bfloat16* q;
  const __nv_bfloat16* pages;
  const int32_t* block_tables;
  const int32_t* query_start_loc;
  const int32_t* seq_lens;
  int64_t num_pages;
  int64_t max_blocks_per_seq;
  int64_t total_rows;  // num_tokens · num_heads
  int num_heads;
  int num_splits;
  float scale_log2;  // τ · log2 e: scores live in the log2 domain
  __nv_bfloat16* out;
  float* lse;
  float* o_partial;    // [num_splits, total_rows, 512] when num_splits > 1
  float* lse_partial;  // [num_splits, total_rows], log2 domain, −inf = no keys
};

// Copies keys [tile_start, tile_start + 64) of the sequence into a shared K tile; keys at or past
// `kv_end` and keys on an out-of-range page are zero-filled, so masked columns multiply finite
// values (a NaN left in a page slot past the length would otherwise poison P·V).
template <int kThreads>
__device__ __forceinline__ void LoadKeyTile(const DecodeParams& p, const int32_t* block_table,
                                            int tile_start, int kv_end, __nv_bfloat16* tile,
                                            int stride) {
  const int64_t block_index = tile_start / kBlockN;
  int64_t page = -1;
  if (block_index < p.max_blocks_per_seq) page = block_table[block_index];
  const bool page_ok = page >= 0 && page < p.num_pages;
  const int valid_keys = page_ok ? min(kBlockN, kv_end - tile_start) : 0;
  const __nv_bfloat16* src = p.pages + (page_ok ? page : 0) * kBlockN * kMlaKvDim;
  for (int i = threadIdx.x; i < kBlockN * kChunksPerRow; i += kThreads) {
    const int key = i / kChunksPerRow;
    const int chunk = i % kChunksPerRow;
    __nv_bfloat16* dst = tile + key * stride + chunk * kChunk;
    if (key < valid_keys) {
      CpAsync16(dst, src + key * kMlaKvDim + chunk * kChunk);
    } else {
      StoreZero16(dst);
    }
  }
}

// grid: [num_m_blocks, num_seqs, num_splits]; block: DecodeShape<kBlockM>::kThreads.
template <int kBlockM>
__global__ void __launch_bounds__(DecodeShape<kBlockM>::kThreads, 1)
    MlaDecodeKernel(const DecodeParams p) {
  using Shape = DecodeShape<kBlockM>;
  extern __shared__ __align__(16) unsigned char shared[];
  auto* s_q = reinterpret_cast<__nv_bfloat16*>(shared + Shape::kQOffset);
  auto* s_k = reinterpret_cast<__nv_bfloat16*>(shared + Shape::kKOffset);
  auto* s_scores = reinterpret_cast<float*>(shared + Shape::kSOffset);
  auto* s_probs = reinterpret_cast<__nv_bfloat16*>(shared + Shape::kPOffset);
  auto* s_alpha = reinterpret_cast<float*>(shared + Shape::kAlphaOffset);
  auto* s_sum = reinterpret_cast<float*>(shared + Shape::kLOffset);

  const int seq = blockIdx.y;
  const int split = blockIdx.z;
  const int warp = threadIdx.x / kWarpSize;
  const int lane = threadIdx.x % kWarpSize;

  const int q_begin = p.query_start_loc[seq];
  const int num_queries = p.query_start_loc[seq + 1] - q_begin;
  const int seq_len = p.seq_lens[seq];
  const int64_t num_rows = int64_t{max(num_queries, 0)} * p.num_heads;
  const int64_t row_begin = int64_t{blockIdx.x} * kBlockM;
  const int64_t first_row = int64_t{q_begin} * p.num_heads + row_begin;  // global row index
  if (row_begin >= num_rows || first_row >= p.total_rows || first_row < 0) return;  // whole CTA
  const int block_rows =
      static_cast<int>(min(int64_t{kBlockM}, min(num_rows - row_begin, p.total_rows - first_row)));

  // Rows are token-major, so the block's last row has the most visible keys.
  const int last_query = static_cast<int>((row_begin + block_rows - 1) / p.num_heads);
  const int max_visible = max(0, seq_len - num_queries + last_query + 1);
  const MlaKeyRange range = MlaDecodeSplitRange(seq_len, p.num_splits, split);
  const int kv_begin = range.begin;
  const int kv_end = min(range.end, max_visible);
  const int num_tiles = kv_end > kv_begin ? (kv_end - kv_begin + kBlockN - 1) / kBlockN : 0;
  const int32_t* block_table = p.block_tables + int64_t{seq} * p.max_blocks_per_seq;

  // Q rows of this block (zeros past block_rows); plain loads, made visible by the first
  // barrier of the key loop.
  for (int i = threadIdx.x; i < kBlockM * kChunksPerRow; i += Shape::kThreads) {
    const int row = i / kChunksPerRow;
    const int chunk = i % kChunksPerRow;
    uint4 value = make_uint4(0, 0, 0, 0);
    if (row < block_rows) {
      value = *reinterpret_cast<const uint4*>(p.q + (first_row + row) * kMlaKvDim + chunk * kChunk);
    }
    *reinterpret_cast<uint4*>(s_q + row * Shape::kQkStride + chunk * kChunk) = value;
  }

  // Softmax state of the rows this warp owns (identical in all its lanes), log2 domain.
  float row_max[Shape::kRowsPerWarp];
  float row_sum[Shape::kRowsPerWarp];
  int row_visible[Shape::kRowsPerWarp];
  for (int k = 0; k < Shape::kRowsPerWarp; ++k) {
    const int row = warp + k * Shape::kWarps;
    row_max[k] = -INFINITY;
    row_sum[k] = 0.0f;
    const int query = static_cast<int>((row_begin + row) / p.num_heads);
    row_visible[k] = row < block_rows ? min(seq_len - num_queries + query + 1, kv_end) : 0;
  }

  // P·V accumulator of this warp: rows [16·group, +16) × dims [slab·kSlabDims, +kSlabDims).
  const int group = warp % Shape::kRowGroups;
  const int slab = warp / Shape::kRowGroups;
  float acc[Shape::kSlabTiles][4];
  for (int n = 0; n < Shape::kSlabTiles; ++n) {
    for (int c = 0; c < 4; ++c) acc[n][c] = 0.0f;
  }

  if (Shape::kStages == 2 && num_tiles > 0) {
    LoadKeyTile<Shape::kThreads>(p, block_table, kv_begin, kv_end, s_k, Shape::kQkStride);
    CpAsyncCommit();
  }
  for (int it = 0; it < num_tiles; ++it) {
    const int tile_start = kv_begin + it * kBlockN;
    int stage = 0;
    if constexpr (Shape::kStages == 2) {
      // The other buffer was last read in iteration it − 1, which ended with a barrier.
      stage = it % 2;
      if (it + 1 < num_tiles) {
        LoadKeyTile<Shape::kThreads>(p, block_table, tile_start + kBlockN, kv_end,
                                     s_k + (1 - stage) * kBlockN * Shape::kQkStride,
                                     Shape::kQkStride);
        CpAsyncCommit();
        CpAsyncWait<1>();
      } else {
        CpAsyncWait<0>();
      }
    } else {
      LoadKeyTile<Shape::kThreads>(p, block_table, tile_start, kv_end, s_k, Shape::kQkStride);
      CpAsyncCommit();
      CpAsyncWait<0>();
    }
    __syncthreads();
    const __nv_bfloat16* s_tile = s_k + stage * kBlockN * Shape::kQkStride;

    // 1. Scores S = Q·Kᵀ over all 576 dims; each warp takes whole 16×8 tiles.
    for (int tile = warp; tile < Shape::kScoreTiles; tile += Shape::kWarps) {
      const int row0 = (tile / (kBlockN / 8)) * 16;
      const int col0 = (tile % (kBlockN / 8)) * 8;
      float s[4] = {0.0f, 0.0f, 0.0f, 0.0f};
      for (int k0 = 0; k0 < kMlaKvDim; k0 += 16) {
        uint32_t a[4], b[2];
        LoadFragmentA(s_q, Shape::kQkStride, row0, k0, lane, a);
        LoadFragmentBTransposed(s_tile, Shape::kQkStride, col0, k0, lane, b);
        MmaBf16M16N8K16(s, a, b);
      }
      const int g = lane / 4, t = lane % 4;
      float* top = s_scores + (row0 + g) * Shape::kSStride + col0 + 2 * t;
      float* bottom = top + 8 * Shape::kSStride;
      top[0] = s[0];
      top[1] = s[1];
      bottom[0] = s[2];
      bottom[1] = s[3];
    }
    __syncthreads();

    // 2. Online softmax, one warp per row, two columns per lane. Masked columns (past the
    //    row's causal limit or the split's end) get p = 0.
    for (int k = 0; k < Shape::kRowsPerWarp; ++k) {
      const int row = warp + k * Shape::kWarps;
      const int limit = row_visible[k] - tile_start;  // valid columns of this tile
      const float* scores = s_scores + row * Shape::kSStride;
      const float s0 = lane < limit ? scores[lane] * p.scale_log2 : -INFINITY;
      const float s1 =
          lane + kWarpSize < limit ? scores[lane + kWarpSize] * p.scale_log2 : -INFINITY;
      const float new_max = fmaxf(row_max[k], WarpReduceMax(fmaxf(s0, s1)));
      // With no valid key yet the max stays −inf; exp2 of (−inf) − (−inf) would be NaN.
      const bool any = new_max != -INFINITY;
      const float alpha = any ? exp2f(row_max[k] - new_max) : 1.0f;
      const float p0 = s0 != -INFINITY ? exp2f(s0 - new_max) : 0.0f;
      const float p1 = s1 != -INFINITY ? exp2f(s1 - new_max) : 0.0f;
      row_sum[k] = row_sum[k] * alpha + WarpReduceSum(p0 + p1);
      row_max[k] = new_max;
      __nv_bfloat16* probs = s_probs + row * Shape::kPStride;
      probs[lane] = __float2bfloat16(p0);
      probs[lane + kWarpSize] = __float2bfloat16(p1);
      if (lane == 0) s_alpha[row] = alpha;
    }
    __syncthreads();

    // 3. O = alpha·O + P·V with V = the first 512 dims of the K tile.
    {
      const int g = lane / 4;
      const float alpha_top = s_alpha[group * 16 + g];
      const float alpha_bottom = s_alpha[group * 16 + g + 8];
      for (int n = 0; n < Shape::kSlabTiles; ++n) {
        acc[n][0] *= alpha_top;
        acc[n][1] *= alpha_top;
        acc[n][2] *= alpha_bottom;
        acc[n][3] *= alpha_bottom;
      }
      for (int k0 = 0; k0 < kBlockN; k0 += 16) {
        uint32_t a[4];
        LoadFragmentA(s_probs, Shape::kPStride, group * 16, k0, lane, a);
        for (int n = 0; n < Shape::kSlabTiles; ++n) {
          uint32_t b[2];
          LoadFragmentB(s_tile, Shape::kQkStride, k0, slab * Shape::kSlabDims + n * 8, lane, b);
          MmaBf16M16N8K16(acc[n], a, b);
        }
      }
    }
    __syncthreads();  // the K buffer and S/P are rewritten next iteration
  }

  // Publish each row's sum to the warps that hold its accumulator; write the LSE.
  for (int k = 0; k < Shape::kRowsPerWarp; ++k) {
    const int row = warp + k * Shape::kWarps;
    if (lane == 0) {
      s_sum[row] = row_sum[k];
      if (row < block_rows) {
        const bool any = row_sum[k] > 0.0f;
        const float lse_log2 = any ? row_max[k] + log2f(row_sum[k]) : -INFINITY;
        if (p.num_splits == 1) {
          if (p.lse != nullptr) p.lse[first_row + row] = any ? lse_log2 * kLn2 : INFINITY;
        } else {
          p.lse_partial[int64_t{split} * p.total_rows + first_row + row] = lse_log2;
        }
      }
    }
  }
  __syncthreads();

  const int g = lane / 4, t = lane % 4;
  for (int half = 0; half < 2; ++half) {
    const int row = group * 16 + g + 8 * half;
    if (row >= block_rows) continue;
    const float sum = s_sum[row];
    const float inv_sum = sum > 0.0f ? 1.0f / sum : 0.0f;
    const int64_t global_row = first_row + row;
    for (int n = 0; n < Shape::kSlabTiles; ++n) {
      const int dim = slab * Shape::kSlabDims + n * 8 + 2 * t;
      const float v0 = acc[n][2 * half] * inv_sum;
      const float v1 = acc[n][2 * half + 1] * inv_sum;
      if (p.num_splits == 1) {
        *reinterpret_cast<__nv_bfloat162*>(p.out + global_row * kMlaVDim + dim) =
            __floats2bfloat162_rn(v0, v1);
      } else {
        *reinterpret_cast<float2*>(p.o_partial +
                                   (int64_t{split} * p.total_rows + global_row) * kMlaVDim + dim) =
            make_float2(v0, v1);
      }
    }
  }
}

// Merges the splits of one row: L = log2 Σ_s 2^lse_s, out = Σ_s 2^(lse_s − L)·o_s. Splits with
// no keys (lse = −inf) are skipped, never multiplied (their o may be anything).
// grid: [total_rows]; block: kCombineThreads, 4 dims per thread.
constexpr int kCombineThreads = kMlaVDim / 4;

__global__ void __launch_bounds__(kCombineThreads)
    MlaDecodeCombineKernel(const float* __restrict__ o_partial,
                           const float* __restrict__ lse_partial, int64_t total_rows,
                           int num_splits, __nv_bfloat16* __restrict__ out,
                           float* __restrict__ lse) {
  const int64_t row = blockIdx.x;
  float max_lse = -INFINITY;
  for (int s = 0; s < num_splits; ++s) max_lse = fmaxf(max_lse, lse_partial[s * total_rows + row]);
  const int dim = threadIdx.x * 4;
  float4 sum4 = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
  float weight_sum = 0.0f;
  if (max_lse != -INFINITY) {
    for (int s = 0; s < num_splits; ++s) {
      const float lse_s = lse_partial[s * total_rows + row];
      if (lse_s == -INFINITY) continue;
      const float w = exp2f(lse_s - max_lse);
      weight_sum += w;
      const float4 o = *reinterpret_cast<const float4*>(
          o_partial + (int64_t{s} * total_rows + row) * kMlaVDim + dim);
      sum4.x += w * o.x;
      sum4.y += w * o.y;
      sum4.z += w * o.z;
      sum4.w += w * o.w;
    }
  }
  const float inv = weight_sum > 0.0f ? 1.0f / weight_sum : 0.0f;
  __nv_bfloat162* dst = reinterpret_cast<__nv_bfloat162*>(out + row * kMlaVDim + dim);
  dst[0] = __floats2bfloat162_rn(sum4.x * inv, sum4.y * inv);
  dst[1] = __floats2bfloat162_rn(sum4.z * inv, sum4.w * inv);
  if (lse != nullptr && threadIdx.x == 0) {
    lse[row] = weight_sum > 0.0f ? (max_lse + log2f(weight_sum)) * kLn2 : INFINITY;
  }
}

template <int kBlockM>
cudaError_t LaunchDecode(const DecodeParams& params, const MlaDecodePlan& plan, int64_t num_seqs,
                         cudaStream_t stream) {
  using Shape = DecodeShape<kBlockM>;
  const cudaError_t attr =
      cudaFuncSetAttribute(MlaDecodeKernel<kBlockM>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                           static_cast<int>(Shape::kSharedBytes));
  if (attr != cudaSuccess) return attr;
  const dim3 grid(static_cast<unsigned>(plan.num_m_blocks), static_cast<unsigned>(num_seqs),
                  static_cast<unsigned>(plan.num_splits));
  MlaDecodeKernel<kBlockM><<<grid, Shape::kThreads, Shape::kSharedBytes, stream>>>(params);
  return cudaGetLastError();
}

}  // namespace

int LaunchMlaDecodeBf16(const MlaDecodeCudaArgs& args, const MlaDecodePlan& plan, void* workspace,
                        void* stream) {
  if (args.num_seqs < 0 || args.num_heads <= 0 || args.num_tokens < 0 ||
      args.max_blocks_per_seq < 0 || args.num_pages < 0 || plan.num_splits < 1 ||
      plan.num_splits > kMlaMaxSplits || (plan.block_m != 16 && plan.block_m != 64) ||
      plan.num_m_blocks < 0 || args.num_seqs > 65535) {
    return static_cast<int>(cudaErrorInvalidValue);
  }
  const int64_t total_rows = args.num_tokens * args.num_heads;
  if (args.num_seqs == 0 || total_rows == 0 || plan.num_m_blocks == 0) return cudaSuccess;
  if (args.q == nullptr || args.pages == nullptr || args.block_tables == nullptr ||
      args.query_start_loc == nullptr || args.seq_lens == nullptr || args.out == nullptr) {
    return static_cast<int>(cudaErrorInvalidValue);
  }
  // q and pages are read in 16-byte chunks, out written in bf16 pairs.
  if (reinterpret_cast<uintptr_t>(args.q) % 16 != 0 ||
      reinterpret_cast<uintptr_t>(args.pages) % 16 != 0 ||
      reinterpret_cast<uintptr_t>(args.out) % 4 != 0) {
    return static_cast<int>(cudaErrorInvalidValue);
  }
  const size_t needed = static_cast<size_t>(plan.num_splits) * total_rows * (kMlaVDim + 1) * 4;
  if (plan.num_splits > 1 &&
      (workspace == nullptr || reinterpret_cast<uintptr_t>(workspace) % 16 != 0 ||
       plan.workspace_bytes < needed)) {
    return static_cast<int>(cudaErrorInvalidValue);
  }
  DecodeParams params;
  params.q = reinterpret_cast<const __nv_bfloat16*>(args.q);
  params.pages = reinterpret_cast<const __nv_bfloat16*>(args.pages);
  params.block_tables = args.block_tables;
  params.query_start_loc = args.query_start_loc;
  params.seq_lens = args.seq_lens;
  params.num_pages = args.num_pages;
  params.max_blocks_per_seq = args.max_blocks_per_seq;
  params.total_rows = total_rows;
  params.num_heads = static_cast<int>(args.num_heads);
  params.num_splits = plan.num_splits;
  params.scale_log2 = args.softmax_scale * kLog2e;
  params.out = reinterpret_cast<__nv_bfloat16*>(args.out);
  params.lse = args.lse;
  params.o_partial = plan.num_splits > 1 ? static_cast<float*>(workspace) : nullptr;
  params.lse_partial =
      plan.num_splits > 1
          ? params.o_partial + static_cast<size_t>(plan.num_splits) * total_rows * kMlaVDim
          : nullptr;
  auto* cuda_stream = static_cast<cudaStream_t>(stream);
  const cudaError_t launched = plan.block_m == 64
                                   ? LaunchDecode<64>(params, plan, args.num_seqs, cuda_stream)
                                   : LaunchDecode<16>(params, plan, args.num_seqs, cuda_stream);
  if (launched != cudaSuccess || plan.num_splits == 1) return static_cast<int>(launched);
  MlaDecodeCombineKernel<<<static_cast<unsigned>(total_rows), kCombineThreads, 0, cuda_stream>>>(
      params.o_partial, params.lse_partial, total_rows, plan.num_splits, params.out, args.lse);
  return static_cast<int>(cudaGetLastError());
}

}  // namespace moeserve::engine
