// The work decomposition of the CUDA MLA decode kernel (mla_decode_cuda.h), in plain C++ so the
// launcher, the kernel and a CPU emulation test (tests/engine/ops/attention/
// mla_decode_split_test.cc) all use the same tile size, split boundaries and split counts.
//
// A CTA owns up to `block_m` query rows of one sequence (a row is one (query token, head) pair;
// rows are ordered token-major, so all heads of a token are adjacent) and one split of the
// sequence's keys. Splits are runs of whole 64-key tiles (one cache page each), so every tile
// starts on a page boundary. When a sequence's keys are cut into several splits, each CTA writes
// an fp32 partial output and its log2-domain log-sum-exp, and a combine kernel merges them.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>

#if defined(__CUDACC__)
#define MOESERVE_HOST_DEVICE __host__ __device__
#else
#define MOESERVE_HOST_DEVICE
#endif

namespace moeserve::engine {

inline constexpr int kMlaPageSize = 64;  // keys per cache page = keys per kernel tile
inline constexpr int kMlaKvDim = 576;    // [c_kv(512) | k_pe(64)]
inline constexpr int kMlaVDim = 512;     // V = the first 512 dims of each cached vector
inline constexpr int kMlaMaxSplits = 64;
// A split is never shorter than this many tiles: below it the partial writes and the combine
// cost more than the parallelism gains.
inline constexpr int kMlaMinTilesPerSplit = 2;

struct MlaKeyRange {
  int32_t begin = 0;  // multiple of kMlaPageSize
  int32_t end = 0;    // exclusive; begin == end for an empty split
};

// Keys of split `split` (0-based) of `num_splits` for a sequence with `num_keys` keys: the tiles
// are dealt out in equal runs of ceil(tiles / num_splits); trailing splits may be empty.
MOESERVE_HOST_DEVICE inline MlaKeyRange MlaDecodeSplitRange(int32_t num_keys, int32_t num_splits,
                                                            int32_t split) {
  if (num_keys <= 0 || num_splits <= 0) return MlaKeyRange{0, 0};
  const int32_t tiles = (num_keys + kMlaPageSize - 1) / kMlaPageSize;
  const int32_t tiles_per_split = (tiles + num_splits - 1) / num_splits;
  const int64_t begin = int64_t{split} * tiles_per_split * kMlaPageSize;
  const int64_t end = begin + int64_t{tiles_per_split} * kMlaPageSize;
  MlaKeyRange range;
  range.begin = static_cast<int32_t>(begin < num_keys ? begin : num_keys);
  range.end = static_cast<int32_t>(end < num_keys ? end : num_keys);
  return range;
}

struct MlaDecodePlan {
  int block_m = 16;      // query rows per CTA: 16 (≤ 16 rows per sequence) or 64
  int num_m_blocks = 0;  // CTAs per sequence along the rows
  int num_splits = 1;    // CTAs per sequence along the keys
  // Scratch for the split partials: fp32 o [num_splits, num_tokens·heads, 512] then fp32 lse
  // [num_splits, num_tokens·heads]; 0 when num_splits == 1.
  size_t workspace_bytes = 0;
};

// Chooses the decomposition from host-side facts of the step: the split count fills the GPU's
// SMs (one CTA per SM at a time) when there are too few (sequence, row block) CTAs, without
// cutting any split below kMlaMinTilesPerSplit tiles of the longest sequence. `forced_splits`
// > 0 overrides the choice (tests, benchmarks), clamped to [1, kMlaMaxSplits].
inline MlaDecodePlan PlanMlaDecode(int64_t num_seqs, int64_t num_heads, int64_t num_tokens,
                                   int64_t max_queries_per_seq, int64_t max_seq_len, int num_sms,
                                   int forced_splits = 0) {
  MlaDecodePlan plan;
  const int64_t rows_per_seq = std::max<int64_t>(max_queries_per_seq, 0) * num_heads;
  plan.block_m = rows_per_seq <= 16 ? 16 : 64;
  plan.num_m_blocks = static_cast<int>((rows_per_seq + plan.block_m - 1) / plan.block_m);
  const int64_t base_ctas = num_seqs * plan.num_m_blocks;
  int64_t splits = 1;
  if (forced_splits > 0) {
    splits = forced_splits;
  } else if (base_ctas > 0 && base_ctas < num_sms) {
    const int64_t tiles = (max_seq_len + kMlaPageSize - 1) / kMlaPageSize;
    const int64_t fill = (num_sms + base_ctas - 1) / base_ctas;
    splits = std::min(fill, std::max<int64_t>(tiles / kMlaMinTilesPerSplit, 1));
  }
  plan.num_splits = static_cast<int>(std::clamp<int64_t>(splits, 1, kMlaMaxSplits));
  if (plan.num_splits > 1) {
    const size_t rows = static_cast<size_t>(std::max<int64_t>(num_tokens, 0) * num_heads);
    plan.workspace_bytes = static_cast<size_t>(plan.num_splits) * rows * (kMlaVDim + 1) * 4;
  }
  return plan;
}

}  // namespace moeserve::engine
