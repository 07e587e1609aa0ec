#include <omp.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "engine/ops/attention/latent_cache.h"
#include "engine/ops/attention/mla_decode.h"
#include "engine/ops/cpu/parallel_for.h"
#include "engine/ops/linear/gemm_nn.h"
#include "engine/ops/linear/weight_gemm.h"

namespace moeserve::engine {
namespace {

// Columns of the latent value one thread sums for all heads: a multiple of every ISA's GemmNn
// tile (64 AVX-512, 32 AVX2 columns).
constexpr int64_t kColumnSlice = 128;

// Thread `index` of `parts` scores keys [begin, end): equal runs of whole 4-key weight tiles.
IndexRange KeyRun(int64_t keys, int parts, int index) {
  constexpr int64_t kTile = 4;
  const IndexRange tiles = EvenShare((keys + kTile - 1) / kTile, parts, index);
  return {std::min(keys, tiles.begin * kTile), std::min(keys, tiles.end * kTile)};
}

// Rows [first, first + count) of one cache block as a weight matrix.
WeightMatrixView LatentRowsView(LatentPagesView pages, int64_t block_id, int64_t block_size,
                                int64_t first, int64_t count, int64_t kv_dim) {
  WeightMatrixView view = LatentBlockView(pages, block_id, block_size, first + count, kv_dim);
  view.data = static_cast<const char*>(view.data) + first * kv_dim * WeightFormatBytes(view.format);
  view.rows = count;
  return view;
}

// Scores held per group of queries: [rows, keys] fp32 at most this many floats (32 MiB), so
// a 128-head model prefilling a long chunk takes its queries a few at a time.
constexpr int64_t kMaxGroupScores = int64_t{8} << 20;

// Queries [first, first + count) of one sequence (consecutive tokens; query i of the group sees
// keys [0, visible_first + i)) against the paged cache, block by block (each block's rows are
// contiguous [block_size, kv_dim]): scores [count · heads, keys] = Q·blockᵀ for every query and
// head at once, a causal softmax per row, then out = Σ_blocks P_block · c_kv_block.
// A query's keys past its own visible range get probability 0 and so add exactly nothing, and
// keys past the group's last visible one are never read (they may hold anything): each query's
// result is the same bits as when it is the only query of a decode step (batch invariance).
void AttendQueryGroup(const MlaDecodeArgs& a, const int32_t* block_table, int64_t first,
                      int64_t count, int64_t visible_first, std::vector<float>& probs) {
  const int64_t rows = count * a.num_heads;
  const int64_t keys = visible_first + count - 1;  // the last query's visible range
  const float* q = a.q + first * a.num_heads * a.kv_dim;
  float* out = a.out + first * a.num_heads * a.v_dim;
  probs.resize(static_cast<size_t>(rows * keys));
  const int64_t num_blocks = (keys + a.block_size - 1) / a.block_size;
  // Threads take equal runs of keys (their score columns are disjoint), across block
  // boundaries: by whole blocks, a decode step whose last block holds one key left one thread
  // with all the work. Each key's score is the same dot product however keys are grouped. The
  // GEMMs inside run on the calling thread (ParallelFor does not nest).
  const bool parallel = rows * keys * a.kv_dim > (1 << 16);
  const int runs = parallel ? omp_get_max_threads() : 1;
  ParallelFor(runs, parallel, [&](int64_t r) {
    const IndexRange run = KeyRun(keys, runs, static_cast<int>(r));
    for (int64_t j = run.begin; j < run.end;) {
      const int64_t b = j / a.block_size;
      const int64_t in_block = std::min(run.end, (b + 1) * a.block_size) - j;
      const WeightMatrixView keys_view = LatentRowsView(a.pages, block_table[b], a.block_size,
                                                        j - b * a.block_size, in_block, a.kv_dim);
      WeightGemmCpu(q, a.kv_dim, keys_view, probs.data() + j, keys, rows, /*accumulate=*/false,
                    a.isa);
      j += in_block;
    }
  });
  std::vector<float> sums(static_cast<size_t>(rows)), maxima(sums.size());
  ParallelFor(rows, parallel, [&](int64_t r) {
    float* row = probs.data() + r * keys;
    const int64_t visible = visible_first + r / a.num_heads;
    float max_score = -std::numeric_limits<float>::infinity();
    for (int64_t j = 0; j < visible; ++j) {
      row[j] *= a.softmax_scale;
      max_score = std::max(max_score, row[j]);
    }
    float sum = 0.0f;
    for (int64_t j = 0; j < visible; ++j) {
      row[j] = std::exp(row[j] - max_score);
      sum += row[j];
    }
    std::fill(row + visible, row + keys, 0.0f);
    sums[r] = sum;
    maxima[r] = max_score;
  });
  // Threads take column slices of out; each slice still sums the blocks in order, so the
  // result does not depend on the number of threads.
  const int64_t num_slices = (a.v_dim + kColumnSlice - 1) / kColumnSlice;
  ParallelFor(num_slices, parallel, [&](int64_t c) {
    const int64_t c0 = c * kColumnSlice;
    const int64_t width = std::min(kColumnSlice, a.v_dim - c0);
    for (int64_t b = 0; b < num_blocks; ++b) {
      const int64_t j0 = b * a.block_size;
      const int64_t block_rows = std::min(a.block_size, keys - j0);
      // The block's values, read in place (BF16 widened in registers).
      const int64_t offset = static_cast<int64_t>(block_table[b]) * a.block_size * a.kv_dim + c0;
      const float* p = probs.data() + j0;
      float* o = out + c0;
      if (a.pages.dtype == DType::kBF16) {
        GemmNnCpu(p, keys, static_cast<const uint16_t*>(a.pages.data) + offset, a.kv_dim, o,
                  a.v_dim, rows, width, block_rows, /*accumulate=*/b > 0, a.isa);
      } else {
        GemmNnCpu(p, keys, static_cast<const float*>(a.pages.data) + offset, a.kv_dim, o, a.v_dim,
                  rows, width, block_rows, /*accumulate=*/b > 0, a.isa);
      }
    }
  });
  for (int64_t r = 0; r < rows; ++r) {
    const float inv_sum = sums[r] > 0.0f ? 1.0f / sums[r] : 0.0f;
    for (int64_t d = 0; d < a.v_dim; ++d) out[r * a.v_dim + d] *= inv_sum;
    if (a.lse != nullptr) {
      a.lse[first * a.num_heads + r] =
          sums[r] > 0.0f ? maxima[r] + std::log(sums[r]) : std::numeric_limits<float>::infinity();
    }
  }
}

// The queries of one sequence, in groups whose scores fit kMaxGroupScores. Queries that see no
// key get out = 0 and lse = +inf, as the reference.
void AttendSequence(const MlaDecodeArgs& a, int64_t s, std::vector<float>& probs) {
  const int64_t q_begin = a.query_start_loc[s];
  const int64_t num_queries = a.query_start_loc[s + 1] - q_begin;
  const int64_t seq_len = a.seq_lens[s];
  const int32_t* block_table = a.block_tables + s * a.max_blocks_per_seq;
  int64_t i = 0;
  for (; i < num_queries && seq_len - num_queries + i + 1 <= 0; ++i) {
    const int64_t token = q_begin + i;
    float* out = a.out + token * a.num_heads * a.v_dim;
    std::fill(out, out + a.num_heads * a.v_dim, 0.0f);
    if (a.lse != nullptr) {
      std::fill(a.lse + token * a.num_heads, a.lse + (token + 1) * a.num_heads,
                std::numeric_limits<float>::infinity());
    }
  }
  const int64_t per_group =
      std::max<int64_t>(1, kMaxGroupScores / std::max<int64_t>(1, a.num_heads * seq_len));
  while (i < num_queries) {
    const int64_t count = std::min(per_group, num_queries - i);
    AttendQueryGroup(a, block_table, q_begin + i, count, seq_len - num_queries + i + 1, probs);
    i += count;
  }
}

}  // namespace

void MlaDecodeCpu(const MlaDecodeArgs& a) {
  if (a.isa != CpuIsa::kPortable) {
    std::vector<float> probs;
    for (int64_t s = 0; s < a.num_seqs; ++s) AttendSequence(a, s, probs);
    return;
  }
  for (int64_t s = 0; s < a.num_seqs; ++s) {
    const int64_t q_begin = a.query_start_loc[s];
    const int64_t num_queries = a.query_start_loc[s + 1] - q_begin;
    const int64_t seq_len = a.seq_lens[s];
    const int32_t* block_table = a.block_tables + s * a.max_blocks_per_seq;
#pragma omp parallel for collapse(2) if (num_queries * a.num_heads * seq_len > 4096)
    for (int64_t i = 0; i < num_queries; ++i) {
      for (int64_t h = 0; h < a.num_heads; ++h) {
        const int64_t token = q_begin + i;
        const int64_t visible = seq_len - num_queries + i + 1;
        const float* q = a.q + (token * a.num_heads + h) * a.kv_dim;
        float* out = a.out + (token * a.num_heads + h) * a.v_dim;
        std::vector<float> scores(static_cast<size_t>(std::max<int64_t>(visible, 0)));
        std::vector<float> widened(static_cast<size_t>(a.kv_dim));
        auto key = [&](int64_t j) {
          const int64_t slot =
              static_cast<int64_t>(block_table[j / a.block_size]) * a.block_size + j % a.block_size;
          int64_t ld = 0;
          return LatentColumnsAsFloat(a.pages, slot, 1, a.kv_dim, 0, a.kv_dim, widened.data(), &ld);
        };
        float max_score = -std::numeric_limits<float>::infinity();
        for (int64_t j = 0; j < visible; ++j) {
          const float* kv = key(j);
          float dot = 0.0f;
          for (int64_t d = 0; d < a.kv_dim; ++d) dot += q[d] * kv[d];
          scores[j] = dot * a.softmax_scale;
          max_score = std::max(max_score, scores[j]);
        }
        for (int64_t d = 0; d < a.v_dim; ++d) out[d] = 0.0f;
        float sum = 0.0f;
        for (int64_t j = 0; j < visible; ++j) {
          const float* kv = key(j);
          const float p = std::exp(scores[j] - max_score);
          sum += p;
          for (int64_t d = 0; d < a.v_dim; ++d) out[d] += p * kv[d];
        }
        // A query with no keys gets out = 0 and lse = +inf, as FlashMLA does.
        const float inv_sum = sum > 0.0f ? 1.0f / sum : 0.0f;
        for (int64_t d = 0; d < a.v_dim; ++d) out[d] *= inv_sum;
        if (a.lse != nullptr) {
          a.lse[token * a.num_heads + h] =
              sum > 0.0f ? max_score + std::log(sum) : std::numeric_limits<float>::infinity();
        }
      }
    }
  }
}

}  // namespace moeserve::engine
