// The CUDA MLA decode kernel's algorithm, checked on the CPU (no GPU needed):
// - MlaDecodeSplitRange cuts [0, len) into page-aligned, disjoint, covering runs;
// - PlanMlaDecode picks row blocks, split counts and workspace sizes within their limits;
// - an emulation that follows mla_decode_cuda.cu's loop structure step for step (CTAs of
//   block_m rows × one split, 64-key tiles through the block table with zero-filled tails,
//   log2-domain online softmax with bf16 probabilities, fp32 partials, log-sum-exp combine)
//   matches MlaDecodeCpu on random bf16 inputs, shuffled pages with NaN in every unowned slot,
//   causal multi-query sequences, empty sequences and forced split counts up to 64.
#include "engine/ops/attention/mla_decode_split.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "absl/strings/str_cat.h"
#include "engine/ops/attention/mla_decode.h"
#include "engine/ops/dtype.h"
#include "tests/testing/paged_decode_inputs.h"
#include "tests/testing/random.h"
#include "tests/testing/tensor_compare.h"

namespace moeserve::engine {
namespace {

using ::moeserve::engine::testing::MaxRelErrorAtMost;
using ::moeserve::engine::testing::TestRng;

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
constexpr float kInf = std::numeric_limits<float>::infinity();
constexpr float kV3SoftmaxScale = 0.1352338f;
constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;

TEST(MlaDecodeSplitRangeTest, SplitsArePageAlignedDisjointAndCoverTheKeys) {
  for (int32_t len : {0, 1, 63, 64, 65, 127, 128, 129, 1000, 4096, 32768 + 5}) {
    for (int32_t splits : {1, 2, 3, 7, 16, 64}) {
      SCOPED_TRACE(absl::StrCat("len=", len, " splits=", splits));
      int32_t expected_begin = 0;
      for (int32_t s = 0; s < splits; ++s) {
        const MlaKeyRange r = MlaDecodeSplitRange(len, splits, s);
        EXPECT_LE(r.begin, r.end);
        if (r.begin < r.end) {
          EXPECT_EQ(r.begin, expected_begin);
          EXPECT_EQ(r.begin % kMlaPageSize, 0);
          expected_begin = r.end;
        } else {
          EXPECT_EQ(r.begin, len);  // empty splits sit at the end
        }
      }
      EXPECT_EQ(expected_begin, len);
    }
  }
}

TEST(PlanMlaDecodeTest, ChoosesRowBlocksSplitsAndWorkspace) {
  // V2-Lite decode: 16 heads × 1 query fit one 16-row block; one long sequence is split.
  MlaDecodePlan plan = PlanMlaDecode(1, 16, 1, 1, 32768, 132);
  EXPECT_EQ(plan.block_m, 16);
  EXPECT_EQ(plan.num_m_blocks, 1);
  EXPECT_EQ(plan.num_splits, kMlaMaxSplits);
  EXPECT_EQ(plan.workspace_bytes, size_t{kMlaMaxSplits} * 16 * (512 + 1) * 4);
  // V3: 128 heads → two 64-row blocks; 256 sequences already fill the GPU: no split.
  plan = PlanMlaDecode(256, 128, 256, 1, 4096, 132);
  EXPECT_EQ(plan.block_m, 64);
  EXPECT_EQ(plan.num_m_blocks, 2);
  EXPECT_EQ(plan.num_splits, 1);
  EXPECT_EQ(plan.workspace_bytes, 0u);
  // A short context is never cut below kMlaMinTilesPerSplit tiles.
  plan = PlanMlaDecode(1, 16, 1, 1, 200, 132);
  EXPECT_EQ(plan.num_splits, 2);
  // Speculative decoding: 16 heads × 3 queries = 48 rows → one 64-row block.
  plan = PlanMlaDecode(4, 16, 12, 3, 1000, 132);
  EXPECT_EQ(plan.block_m, 64);
  EXPECT_EQ(plan.num_m_blocks, 1);
  // Forced counts are clamped.
  EXPECT_EQ(PlanMlaDecode(1, 16, 1, 1, 100, 132, 500).num_splits, kMlaMaxSplits);
  EXPECT_EQ(PlanMlaDecode(0, 16, 0, 0, 0, 132).num_splits, 1);
}

float RoundBf16(float v) { return Bf16ToFloat(FloatToBf16(v)); }

// valid_keys cached vectors from slot `first_slot` on (one page), as fp32.
void GatherContiguous(LatentPagesView pages, int64_t first_slot, int64_t valid_keys, float* out) {
  int64_t ld = 0;
  const float* rows = LatentColumnsAsFloat(pages, first_slot, valid_keys, kMlaKvDim, 0, kMlaKvDim,
                                           out, &ld);
  if (rows != out) std::copy_n(rows, valid_keys * kMlaKvDim, out);
}

// One CTA of MlaDecodeKernel: rows [m_block·block_m, +block_m) of `seq`, keys of `split`.
void EmulateCta(const MlaDecodeArgs& a, const MlaDecodePlan& plan, int64_t total_rows, int64_t seq,
                int64_t m_block, int32_t split, std::vector<float>& o_partial,
                std::vector<float>& lse_partial) {
  const int64_t q_begin = a.query_start_loc[seq];
  const int64_t num_queries = a.query_start_loc[seq + 1] - q_begin;
  const int32_t seq_len = a.seq_lens[seq];
  const int64_t num_rows = std::max<int64_t>(num_queries, 0) * a.num_heads;
  const int64_t row_begin = m_block * plan.block_m;
  const int64_t first_row = q_begin * a.num_heads + row_begin;
  if (row_begin >= num_rows || first_row >= total_rows) return;
  const int64_t block_rows =
      std::min<int64_t>(plan.block_m, std::min(num_rows - row_begin, total_rows - first_row));
  const int64_t last_query = (row_begin + block_rows - 1) / a.num_heads;
  const int32_t max_visible =
      static_cast<int32_t>(std::max<int64_t>(0, seq_len - num_queries + last_query + 1));
  const MlaKeyRange range = MlaDecodeSplitRange(seq_len, plan.num_splits, split);
  const int32_t kv_end = std::min(range.end, max_visible);
  const int32_t num_tiles =
      kv_end > range.begin ? (kv_end - range.begin + kMlaPageSize - 1) / kMlaPageSize : 0;
  const float scale_log2 = a.softmax_scale * kLog2e;

  std::vector<float> row_max(block_rows, -kInf), row_sum(block_rows, 0.0f);
  std::vector<float> acc(block_rows * kMlaVDim, 0.0f);
  std::vector<float> tile(kMlaPageSize * kMlaKvDim);
  for (int32_t it = 0; it < num_tiles; ++it) {
    const int32_t tile_start = range.begin + it * kMlaPageSize;
    const int64_t page = a.block_tables[seq * a.max_blocks_per_seq + tile_start / kMlaPageSize];
    const int32_t valid_keys = std::min(kMlaPageSize, kv_end - tile_start);
    std::fill(tile.begin(), tile.end(), 0.0f);  // keys past kv_end are zero-filled
    GatherContiguous(a.pages, page * kMlaPageSize, valid_keys, tile.data());
    for (int64_t r = 0; r < block_rows; ++r) {
      const int64_t query = (row_begin + r) / a.num_heads;
      const int32_t visible =
          std::min(static_cast<int32_t>(seq_len - num_queries + query + 1), kv_end);
      const int32_t limit = visible - tile_start;
      const float* q = a.q + (first_row + r) * kMlaKvDim;
      float scores[kMlaPageSize];
      float tile_max = -kInf;
      for (int j = 0; j < kMlaPageSize; ++j) {
        float dot = 0.0f;
        for (int d = 0; d < kMlaKvDim; ++d) dot += q[d] * tile[j * kMlaKvDim + d];
        scores[j] = j < limit ? dot * scale_log2 : -kInf;
        tile_max = std::max(tile_max, scores[j]);
      }
      const float new_max = std::max(row_max[r], tile_max);
      const bool any = new_max != -kInf;
      const float alpha = any ? std::exp2(row_max[r] - new_max) : 1.0f;
      float sum = 0.0f;
      float* o = acc.data() + r * kMlaVDim;
      for (int d = 0; d < kMlaVDim; ++d) o[d] *= alpha;
      for (int j = 0; j < kMlaPageSize; ++j) {
        const float p = scores[j] != -kInf ? std::exp2(scores[j] - new_max) : 0.0f;
        sum += p;
        const float p_bf16 = RoundBf16(p);  // P enters the P·V MMA as bf16
        for (int d = 0; d < kMlaVDim; ++d) o[d] += p_bf16 * tile[j * kMlaKvDim + d];
      }
      row_sum[r] = row_sum[r] * alpha + sum;
      row_max[r] = new_max;
    }
  }
  for (int64_t r = 0; r < block_rows; ++r) {
    const int64_t row = first_row + r;
    const bool any = row_sum[r] > 0.0f;
    const float inv_sum = any ? 1.0f / row_sum[r] : 0.0f;
    const float lse_log2 = any ? row_max[r] + std::log2(row_sum[r]) : -kInf;
    for (int d = 0; d < kMlaVDim; ++d) {
      const float v = acc[r * kMlaVDim + d] * inv_sum;
      if (plan.num_splits == 1) {
        a.out[row * kMlaVDim + d] = RoundBf16(v);
      } else {
        o_partial[(split * total_rows + row) * kMlaVDim + d] = v;
      }
    }
    if (plan.num_splits == 1) {
      a.lse[row] = any ? lse_log2 * kLn2 : kInf;
    } else {
      lse_partial[split * total_rows + row] = lse_log2;
    }
  }
}

// The whole launch: every CTA of the grid, then MlaDecodeCombineKernel's arithmetic.
void EmulateKernel(const MlaDecodeArgs& a, const MlaDecodePlan& plan, int64_t num_tokens) {
  const int64_t total_rows = num_tokens * a.num_heads;
  std::vector<float> o_partial, lse_partial;
  if (plan.num_splits > 1) {
    o_partial.assign(plan.num_splits * total_rows * kMlaVDim, kNaN);
    lse_partial.assign(plan.num_splits * total_rows, kNaN);
  }
  for (int64_t seq = 0; seq < a.num_seqs; ++seq) {
    for (int64_t m = 0; m < plan.num_m_blocks; ++m) {
      for (int32_t split = 0; split < plan.num_splits; ++split) {
        EmulateCta(a, plan, total_rows, seq, m, split, o_partial, lse_partial);
      }
    }
  }
  if (plan.num_splits == 1) return;
  for (int64_t row = 0; row < total_rows; ++row) {
    float max_lse = -kInf;
    for (int s = 0; s < plan.num_splits; ++s) {
      max_lse = std::max(max_lse, lse_partial[s * total_rows + row]);
    }
    std::vector<float> sum(kMlaVDim, 0.0f);
    float weight_sum = 0.0f;
    for (int s = 0; max_lse != -kInf && s < plan.num_splits; ++s) {
      const float lse_s = lse_partial[s * total_rows + row];
      if (lse_s == -kInf) continue;  // never multiply a split that saw no keys
      const float w = std::exp2(lse_s - max_lse);
      weight_sum += w;
      for (int d = 0; d < kMlaVDim; ++d) {
        sum[d] += w * o_partial[(s * total_rows + row) * kMlaVDim + d];
      }
    }
    const float inv = weight_sum > 0.0f ? 1.0f / weight_sum : 0.0f;
    for (int d = 0; d < kMlaVDim; ++d) a.out[row * kMlaVDim + d] = RoundBf16(sum[d] * inv);
    a.lse[row] = weight_sum > 0.0f ? (max_lse + std::log2(weight_sum)) * kLn2 : kInf;
  }
}

struct Case {
  std::vector<int32_t> seq_lens;
  std::vector<int32_t> queries_per_seq;
  int64_t num_heads;
  int forced_splits;  // 0 = PlanMlaDecode's choice for a 132-SM GPU
};

void CheckEmulation(TestRng& rng, const Case& c) {
  SCOPED_TRACE(absl::StrCat("heads=", c.num_heads, " seqs=", c.seq_lens.size(),
                            " forced_splits=", c.forced_splits));
  const testing::PagedDecodeInputs in =
      testing::MakePagedDecodeInputs(rng, c.seq_lens, c.queries_per_seq, c.num_heads);
  MlaDecodeArgs args{.q = in.q.data(),
                     .pages = in.pages.data(),
                     .block_tables = in.tables.data(),
                     .query_start_loc = in.query_start_loc.data(),
                     .seq_lens = c.seq_lens.data(),
                     .max_blocks_per_seq = in.max_blocks,
                     .num_seqs = in.num_seqs,
                     .num_heads = c.num_heads,
                     .softmax_scale = kV3SoftmaxScale};
  const size_t rows = static_cast<size_t>(in.num_tokens * c.num_heads);
  std::vector<float> expected(rows * kMlaVDim, kNaN), expected_lse(rows, kNaN);
  args.out = expected.data();
  args.lse = expected_lse.data();
  MlaDecodeCpu(args);

  const MlaDecodePlan plan = PlanMlaDecode(in.num_seqs, c.num_heads, in.num_tokens, in.max_queries,
                                           in.max_len, /*num_sms=*/132, c.forced_splits);
  std::vector<float> actual(rows * kMlaVDim, kNaN), actual_lse(rows, kNaN);
  args.out = actual.data();
  args.lse = actual_lse.data();
  EmulateKernel(args, plan, in.num_tokens);

  EXPECT_TRUE(MaxRelErrorAtMost(actual, expected, 1e-2)) << "splits=" << plan.num_splits;
  for (size_t r = 0; r < rows; ++r) {
    if (std::isinf(expected_lse[r])) {
      EXPECT_EQ(actual_lse[r], expected_lse[r]) << "row " << r;
    } else {
      EXPECT_NEAR(actual_lse[r], expected_lse[r], 1e-3 * std::max(1.0f, std::fabs(expected_lse[r])))
          << "row " << r;
    }
  }
}

TEST(MlaDecodeEmulationTest, MatchesCpuReferenceWithoutSplits) {
  TestRng rng;
  CheckEmulation(rng, {{1, 63, 64, 65, 200}, {1, 1, 1, 1, 1}, 16, 1});
  CheckEmulation(rng, {{130, 7}, {1, 1}, 128, 1});
}

TEST(MlaDecodeEmulationTest, MatchesCpuReferenceWithSplitsAndCombine) {
  TestRng rng(testing::kDefaultTestSeed + 1);
  CheckEmulation(rng, {{1000}, {1}, 16, 0});  // planner's choice: several splits
  CheckEmulation(rng, {{1000, 3, 129}, {1, 1, 1}, 16, 3});
  CheckEmulation(rng, {{300, 65}, {1, 1}, 16, 64});  // more splits than tiles: empty splits
  CheckEmulation(rng, {{700}, {1}, 128, 5});         // two 64-row blocks × 5 splits
}

TEST(MlaDecodeEmulationTest, CausalQueriesAndEmptySequences) {
  TestRng rng(testing::kDefaultTestSeed + 2);
  // Three causal queries per sequence (rows span query boundaries inside a row block); a
  // sequence with no queries; a query with no keys (out = 0, lse = +inf).
  CheckEmulation(rng, {{66, 0, 130, 2}, {3, 0, 2, 3}, 16, 1});
  CheckEmulation(rng, {{66, 0, 130, 2}, {3, 0, 2, 3}, 16, 4});
  CheckEmulation(rng, {{0, 5}, {1, 1}, 16, 2});
}

}  // namespace
}  // namespace moeserve::engine
