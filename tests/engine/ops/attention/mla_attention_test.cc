// Tests of the MLA attention ops against dense naive references written here:
// - MlaDecodeCpu (absorbed form over the paged latent cache) vs softmax over
//   [q_abs | q_pe]·[c_kv | k_pe]·τ with V = the first 512 dims, for sequences of 1, 63, 64, 65
//   and 200 keys in pages with shuffled block ids, several causal queries per sequence, and lse;
// - MhaPrefillCpu (naive form) vs causal multi-head attention over k = [k_nope | shared k_pe];
// - WriteLatentCacheCpu / GatherLatentCacheCpu round trips, padding slots skipped, fp32 and
//   BF16 pages (MlaDecodeCpu over BF16 pages equals it over fp32 pages of the same values).
// Both attention ops run on every instruction set this CPU has (the scalar reference and the
// GEMM-based AVX2/AVX-512 paths, against the same double references); the SIMD paths must also
// give a query bit-identical results whether it is prefilled in one chunk or several.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <thread>
#include <vector>

#include "engine/ops/attention/latent_cache.h"
#include "engine/ops/attention/mla_decode.h"
#include "engine/ops/attention/mla_prefill.h"
#include "engine/ops/cpu/cpu_features.h"
#include "engine/ops/cpu/cpu_threads.h"
#include "engine/ops/dtype.h"
#include "tests/testing/random.h"
#include "tests/testing/tensor_compare.h"

namespace moeserve::engine {
namespace {

using ::moeserve::engine::testing::MaxRelErrorAtMost;
using ::moeserve::engine::testing::TestRng;

// DeepSeek-V3's softmax scale: 192^-1/2 · (0.1·ln 40 + 1)² (reference §3.1).
constexpr float kV3SoftmaxScale = 0.1352338f;
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

int64_t CeilDiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Paged latent cache of several sequences whose pages are scattered over the pool in random
// order. Every slot no sequence owns holds NaN, so reading past a sequence's length (or through
// a padding entry of its block table) poisons the result.
struct PagedCache {
  int64_t block_size = 0;
  int64_t kv_dim = 0;
  int64_t max_blocks_per_seq = 0;
  std::vector<float> pages;           // [num_blocks, block_size, kv_dim]
  std::vector<int32_t> block_tables;  // [num_seqs, max_blocks_per_seq]
  std::vector<int32_t> seq_lens;
  std::vector<std::vector<float>> keys;  // per sequence, dense [seq_len, kv_dim]
};

PagedCache MakePagedCache(TestRng& rng, const std::vector<int32_t>& seq_lens, int64_t block_size,
                          int64_t kv_dim) {
  PagedCache c;
  c.block_size = block_size;
  c.kv_dim = kv_dim;
  c.seq_lens = seq_lens;
  int64_t blocks_used = 0;
  for (int32_t len : seq_lens) {
    c.max_blocks_per_seq = std::max(c.max_blocks_per_seq, CeilDiv(len, block_size) + 1);
    blocks_used += CeilDiv(len, block_size);
  }
  const int64_t num_blocks = blocks_used + 3;  // spare blocks stay NaN
  const std::vector<int32_t> block_ids = rng.Permutation(num_blocks);
  const int32_t spare_block = block_ids[num_blocks - 1];
  c.pages.assign(static_cast<size_t>(num_blocks * block_size * kv_dim), kNaN);
  c.block_tables.assign(static_cast<size_t>(seq_lens.size() * c.max_blocks_per_seq), spare_block);
  int64_t next = 0;
  for (size_t s = 0; s < seq_lens.size(); ++s) {
    const int64_t len = seq_lens[s];
    int32_t* table = c.block_tables.data() + s * c.max_blocks_per_seq;
    for (int64_t b = 0; b < CeilDiv(len, block_size); ++b) table[b] = block_ids[next++];
    c.keys.push_back(rng.NormalFloats(static_cast<size_t>(len * kv_dim)));
    for (int64_t j = 0; j < len; ++j) {
      const int64_t slot = int64_t{table[j / block_size]} * block_size + j % block_size;
      std::copy_n(c.keys[s].begin() + j * kv_dim, kv_dim, c.pages.begin() + slot * kv_dim);
    }
  }
  return c;
}

struct DecodeCase {
  std::vector<int32_t> seq_lens;
  std::vector<int32_t> queries_per_seq;
  int64_t num_heads;
  int64_t kv_dim;
  int64_t v_dim;
  int64_t block_size;
  double q_stddev;
};

// Dense reference: query i of n in a sequence of L keys sees keys 0 .. L − n + i.
void ReferenceDecode(const DecodeCase& dc, const PagedCache& cache, const std::vector<float>& q,
                     std::vector<double>& out, std::vector<double>& lse) {
  const int64_t total = static_cast<int64_t>(q.size()) / (dc.num_heads * dc.kv_dim);
  out.assign(static_cast<size_t>(total * dc.num_heads * dc.v_dim), 0.0);
  lse.assign(static_cast<size_t>(total * dc.num_heads), 0.0);
  int64_t token = 0;
  for (size_t s = 0; s < dc.seq_lens.size(); ++s) {
    const int64_t len = dc.seq_lens[s];
    const int64_t n = dc.queries_per_seq[s];
    const std::vector<float>& keys = cache.keys[s];
    for (int64_t i = 0; i < n; ++i, ++token) {
      const int64_t visible = len - n + i + 1;
      for (int64_t h = 0; h < dc.num_heads; ++h) {
        const float* qv = q.data() + (token * dc.num_heads + h) * dc.kv_dim;
        std::vector<double> scores(static_cast<size_t>(visible));
        double max_score = -std::numeric_limits<double>::infinity();
        for (int64_t j = 0; j < visible; ++j) {
          double dot = 0.0;
          for (int64_t d = 0; d < dc.kv_dim; ++d) {
            dot += static_cast<double>(qv[d]) * keys[j * dc.kv_dim + d];
          }
          scores[j] = dot * kV3SoftmaxScale;
          max_score = std::max(max_score, scores[j]);
        }
        double sum = 0.0;
        for (double s_j : scores) sum += std::exp(s_j - max_score);
        double* o = out.data() + (token * dc.num_heads + h) * dc.v_dim;
        for (int64_t j = 0; j < visible; ++j) {
          const double p = std::exp(scores[j] - max_score) / sum;
          for (int64_t d = 0; d < dc.v_dim; ++d) o[d] += p * keys[j * dc.kv_dim + d];
        }
        lse[token * dc.num_heads + h] = max_score + std::log(sum);
      }
    }
  }
}

// The instruction sets of the attention ops that this CPU can run.
std::vector<CpuIsa> AvailableIsas() {
  std::vector<CpuIsa> isas;
  for (const CpuIsa isa : {CpuIsa::kPortable, CpuIsa::kAvx2, CpuIsa::kAvx512}) {
    if (CpuIsaAvailable(isa)) isas.push_back(isa);
  }
  return isas;
}

// Rounds every value of the cache to bf16: `bits` gets the BF16 pages; the fp32 pages and the
// dense keys (what the reference reads) get the same values widened. NaN stays NaN.
std::vector<uint16_t> RoundCacheToBf16(PagedCache& c) {
  std::vector<uint16_t> bits = FloatsToBf16(c.pages);
  c.pages = Bf16ToFloats(bits);
  for (std::vector<float>& keys : c.keys) keys = Bf16ToFloats(FloatsToBf16(keys));
  return bits;
}

// pages_dtype kBF16: the cache rounded to bf16 and read as BF16 pages, which must give the
// same bits as fp32 pages holding the rounded values (BF16 is widened exactly, in place).
void CheckDecodeOnIsa(TestRng& rng, const DecodeCase& dc, CpuIsa isa,
                      DType pages_dtype = DType::kF32) {
  PagedCache cache = MakePagedCache(rng, dc.seq_lens, dc.block_size, dc.kv_dim);
  const std::vector<uint16_t> bf16_pages =
      pages_dtype == DType::kBF16 ? RoundCacheToBf16(cache) : std::vector<uint16_t>();
  std::vector<int32_t> query_start_loc = {0};
  for (int32_t n : dc.queries_per_seq) query_start_loc.push_back(query_start_loc.back() + n);
  const int64_t total = query_start_loc.back();
  const std::vector<float> q =
      rng.NormalFloats(static_cast<size_t>(total * dc.num_heads * dc.kv_dim), dc.q_stddev);
  std::vector<float> out(static_cast<size_t>(total * dc.num_heads * dc.v_dim), kNaN);
  std::vector<float> lse(static_cast<size_t>(total * dc.num_heads), kNaN);

  MlaDecodeArgs args;
  args.q = q.data();
  args.pages = cache.pages.data();
  args.block_tables = cache.block_tables.data();
  args.query_start_loc = query_start_loc.data();
  args.seq_lens = cache.seq_lens.data();
  args.max_blocks_per_seq = cache.max_blocks_per_seq;
  args.num_seqs = static_cast<int64_t>(dc.seq_lens.size());
  args.num_heads = dc.num_heads;
  args.kv_dim = dc.kv_dim;
  args.v_dim = dc.v_dim;
  args.block_size = dc.block_size;
  args.softmax_scale = kV3SoftmaxScale;
  args.out = out.data();
  args.lse = lse.data();
  args.isa = isa;
  MlaDecodeCpu(args);
  if (pages_dtype == DType::kBF16) {
    const std::vector<float> fp32_out = out, fp32_lse = lse;
    args.pages = LatentPagesView(DType::kBF16, bf16_pages.data());
    MlaDecodeCpu(args);
    EXPECT_EQ(std::memcmp(out.data(), fp32_out.data(), out.size() * sizeof(float)), 0);
    EXPECT_EQ(std::memcmp(lse.data(), fp32_lse.data(), lse.size() * sizeof(float)), 0);
  }

  std::vector<double> out_ref;
  std::vector<double> lse_ref;
  ReferenceDecode(dc, cache, q, out_ref, lse_ref);
  EXPECT_TRUE(MaxRelErrorAtMost(out, out_ref, 1e-5));
  for (size_t i = 0; i < lse.size(); ++i) {
    EXPECT_NEAR(lse[i], lse_ref[i], 1e-5 * std::max(1.0, std::fabs(lse_ref[i]))) << "lse " << i;
  }
}

void CheckDecode(TestRng& rng, const DecodeCase& dc) {
  for (const CpuIsa isa : AvailableIsas()) {
    for (const DType pages_dtype : {DType::kF32, DType::kBF16}) {
      SCOPED_TRACE(std::string(CpuIsaName(isa)) +
                   (pages_dtype == DType::kBF16 ? " bf16 pages" : " fp32 pages"));
      CheckDecodeOnIsa(rng, dc, isa, pages_dtype);
    }
  }
}

TEST(MlaDecodeCpuTest, MatchesDenseReferenceAtDeepSeekDims) {
  TestRng rng;
  // kv_dim 576 = [c_kv 512 | k_pe 64], v_dim 512, FlashMLA's 64-token pages.
  CheckDecode(rng, {.seq_lens = {1, 63, 64, 65, 200},
                    .queries_per_seq = {1, 1, 2, 3, 4},
                    .num_heads = 3,
                    .kv_dim = 576,
                    .v_dim = 512,
                    .block_size = 64,
                    .q_stddev = 1.0});
  // Flatter softmax; a sequence whose queries cover all its keys (query 0 sees key 0 only).
  CheckDecode(rng, {.seq_lens = {3, 130, 64},
                    .queries_per_seq = {3, 2, 1},
                    .num_heads = 4,
                    .kv_dim = 576,
                    .v_dim = 512,
                    .block_size = 64,
                    .q_stddev = 0.2});
}

TEST(MlaDecodeCpuTest, MatchesDenseReferenceWithSmallPagesAndDims) {
  TestRng rng(testing::kDefaultTestSeed + 1);
  CheckDecode(rng, {.seq_lens = {1, 3, 4, 5, 17, 40},
                    .queries_per_seq = {1, 2, 1, 5, 3, 1},
                    .num_heads = 5,
                    .kv_dim = 40,
                    .v_dim = 32,
                    .block_size = 4,
                    .q_stddev = 1.0});
  // Many heads: enough work for the OpenMP path.
  CheckDecode(rng, {.seq_lens = {70, 9},
                    .queries_per_seq = {2, 1},
                    .num_heads = 32,
                    .kv_dim = 72,
                    .v_dim = 64,
                    .block_size = 16,
                    .q_stddev = 1.0});
}

TEST(MlaDecodeCpuTest, QueryWithNoKeysGetsZeroOutputAndInfiniteLse) {
  TestRng rng(testing::kDefaultTestSeed + 2);
  const std::vector<float> q = rng.NormalFloats(2 * 8);
  const std::vector<float> pages = rng.NormalFloats(4 * 8);
  const int32_t block_table[] = {0};
  const int32_t query_start_loc[] = {0, 1};
  const int32_t seq_lens[] = {0};
  std::vector<float> out(2 * 6, kNaN);
  std::vector<float> lse(2, kNaN);
  MlaDecodeArgs args;
  args.q = q.data();
  args.pages = pages.data();
  args.block_tables = block_table;
  args.query_start_loc = query_start_loc;
  args.seq_lens = seq_lens;
  args.max_blocks_per_seq = 1;
  args.num_seqs = 1;
  args.num_heads = 2;
  args.kv_dim = 8;
  args.v_dim = 6;
  args.block_size = 4;
  args.softmax_scale = kV3SoftmaxScale;
  args.out = out.data();
  args.lse = lse.data();
  for (const CpuIsa isa : AvailableIsas()) {
    SCOPED_TRACE(CpuIsaName(isa));
    std::fill(out.begin(), out.end(), kNaN);
    std::fill(lse.begin(), lse.end(), kNaN);
    args.isa = isa;
    MlaDecodeCpu(args);
    for (float v : out) EXPECT_EQ(v, 0.0f);
    for (float v : lse) EXPECT_EQ(v, std::numeric_limits<float>::infinity());
  }
}

// A chunk of queries attended together (the absorbed prefill the CPU engine uses) gives each
// query the same bits as attending it alone in a one-token step over the keys it sees, on every
// instruction set: the engine's greedy output must not depend on how a prompt was split.
TEST(MlaDecodeCpuTest, QueriesTogetherEqualEachQueryAloneBitForBit) {
  TestRng rng(testing::kDefaultTestSeed + 4);
  const int64_t seq_len = 150, n = 40, heads = 3, kv_dim = 576, v_dim = 512, block = 64;
  const PagedCache cache = MakePagedCache(rng, {static_cast<int32_t>(seq_len)}, block, kv_dim);
  const std::vector<float> q = rng.NormalFloats(static_cast<size_t>(n * heads * kv_dim));
  for (const CpuIsa isa : AvailableIsas()) {
    SCOPED_TRACE(CpuIsaName(isa));
    auto run = [&](int64_t first, int64_t count, int32_t len) {
      std::vector<float> out(static_cast<size_t>(count * heads * v_dim), kNaN);
      std::vector<float> lse(static_cast<size_t>(count * heads), kNaN);
      const int32_t query_start_loc[] = {0, static_cast<int32_t>(count)};
      MlaDecodeArgs args{.q = q.data() + first * heads * kv_dim,
                         .pages = cache.pages.data(),
                         .block_tables = cache.block_tables.data(),
                         .query_start_loc = query_start_loc,
                         .seq_lens = &len,
                         .max_blocks_per_seq = cache.max_blocks_per_seq,
                         .num_seqs = 1,
                         .num_heads = heads,
                         .kv_dim = kv_dim,
                         .v_dim = v_dim,
                         .block_size = block,
                         .softmax_scale = kV3SoftmaxScale,
                         .out = out.data(),
                         .lse = lse.data(),
                         .isa = isa};
      MlaDecodeCpu(args);
      out.insert(out.end(), lse.begin(), lse.end());
      return out;
    };
    const std::vector<float> together = run(0, n, static_cast<int32_t>(seq_len));
    for (int64_t i = 0; i < n; ++i) {
      const std::vector<float> alone = run(i, 1, static_cast<int32_t>(seq_len - n + i + 1));
      for (int64_t e = 0; e < heads * v_dim; ++e) {
        ASSERT_EQ(alone[e], together[i * heads * v_dim + e]) << "query " << i << " element " << e;
      }
      for (int64_t h = 0; h < heads; ++h) {
        ASSERT_EQ(alone[heads * v_dim + h], together[n * heads * v_dim + i * heads + h])
            << "query " << i << " lse " << h;
      }
    }
  }
}

// Threads split a group's keys into equal runs across block boundaries (and its rows and value
// columns): the bits do not depend on how many threads there are, including a last block with
// one key, runs that start mid-block and more threads than 4-key tiles.
TEST(MlaDecodeCpuTest, SameBitsOnAnyNumberOfThreads) {
  TestRng rng(testing::kDefaultTestSeed + 5);
  for (const int64_t heads : {2, 16}) {
    const DecodeCase dc{.seq_lens = {1, 5, 65, 130, 200},
                        .queries_per_seq = {1, 2, 1, 3, 1},
                        .num_heads = heads,
                        .kv_dim = 576,
                        .v_dim = 512,
                        .block_size = 64,
                        .q_stddev = 1.0};
    const PagedCache cache = MakePagedCache(rng, dc.seq_lens, dc.block_size, dc.kv_dim);
    std::vector<int32_t> query_start_loc = {0};
    for (int32_t n : dc.queries_per_seq) query_start_loc.push_back(query_start_loc.back() + n);
    const int64_t total = query_start_loc.back();
    const std::vector<float> q = rng.NormalFloats(static_cast<size_t>(total * heads * dc.kv_dim));
    for (const CpuIsa isa : AvailableIsas()) {
      SCOPED_TRACE(CpuIsaName(isa));
      auto run = [&](int threads) {
        std::vector<float> out(static_cast<size_t>(total * heads * dc.v_dim), kNaN);
        std::thread runner([&] {
          SetCpuThreadsOfThisThread(threads);
          MlaDecodeArgs args{.q = q.data(),
                             .pages = cache.pages.data(),
                             .block_tables = cache.block_tables.data(),
                             .query_start_loc = query_start_loc.data(),
                             .seq_lens = cache.seq_lens.data(),
                             .max_blocks_per_seq = cache.max_blocks_per_seq,
                             .num_seqs = static_cast<int64_t>(dc.seq_lens.size()),
                             .num_heads = heads,
                             .kv_dim = dc.kv_dim,
                             .v_dim = dc.v_dim,
                             .block_size = dc.block_size,
                             .softmax_scale = kV3SoftmaxScale,
                             .out = out.data(),
                             .isa = isa};
          MlaDecodeCpu(args);
        });
        runner.join();
        return out;
      };
      const std::vector<float> one = run(1);
      for (const int threads : {2, 3, 7, 64}) {
        const std::vector<float> many = run(threads);
        EXPECT_EQ(std::memcmp(many.data(), one.data(), one.size() * sizeof(float)), 0)
            << heads << " heads, " << threads << " threads";
      }
    }
  }
}

// ---------- Prefill (MHA form).

struct PrefillCase {
  int64_t num_queries, ctx, num_heads, nope_dim, rope_dim, v_dim, k_pe_stride;
};

TEST(MhaPrefillCpuTest, MatchesNaiveCausalAttention) {
  TestRng rng;
  const PrefillCase cases[] = {
      {1, 1, 4, 128, 64, 128, 576},                              // k_pe read from 576-float latents
      {5, 5, 4, 128, 64, 128, 64},                               // a fresh prompt, packed k_pe
      {7, 70, 3, 128, 64, 128, 576},                             // a chunk after 63 cached tokens
      {64, 64, 2, 128, 64, 128, 576},                            // crosses the OpenMP threshold
      {3, 200, 2, 128, 64, 128, 100}, {6, 9, 5, 12, 8, 10, 11},  // small, unequal dims
  };
  for (const PrefillCase& c : cases) {
    SCOPED_TRACE("queries=" + std::to_string(c.num_queries) + " ctx=" + std::to_string(c.ctx) +
                 " heads=" + std::to_string(c.num_heads) + " dims=" + std::to_string(c.nope_dim) +
                 "/" + std::to_string(c.rope_dim) + "/" + std::to_string(c.v_dim));
    const int64_t qk_dim = c.nope_dim + c.rope_dim;
    const int64_t kv_width = c.nope_dim + c.v_dim;
    const std::vector<float> q =
        rng.NormalFloats(static_cast<size_t>(c.num_queries * c.num_heads * qk_dim));
    const std::vector<float> k_nope_v =
        rng.NormalFloats(static_cast<size_t>(c.ctx * c.num_heads * kv_width));
    // k_pe rows sit at the end of k_pe_stride-wide rows (like k_pe after c_kv in a latent).
    const int64_t k_pe_offset = c.k_pe_stride - c.rope_dim;
    const std::vector<float> k_pe_rows =
        rng.NormalFloats(static_cast<size_t>(c.ctx * c.k_pe_stride));
    MhaPrefillArgs args;
    args.q = q.data();
    args.k_nope_v = k_nope_v.data();
    args.k_pe = k_pe_rows.data() + k_pe_offset;
    args.k_pe_stride = c.k_pe_stride;
    args.num_queries = c.num_queries;
    args.ctx = c.ctx;
    args.num_heads = c.num_heads;
    args.nope_dim = c.nope_dim;
    args.rope_dim = c.rope_dim;
    args.v_dim = c.v_dim;
    args.softmax_scale = kV3SoftmaxScale;

    // Naive causal MHA: k_h = [k_nope_h | k_pe] (k_pe shared by all heads), v_h; query i is at
    // absolute position ctx − n + i and sees keys at positions ≤ its own.
    std::vector<double> expected(static_cast<size_t>(c.num_queries * c.num_heads * c.v_dim), 0.0);
    for (int64_t i = 0; i < c.num_queries; ++i) {
      const int64_t position = c.ctx - c.num_queries + i;
      for (int64_t h = 0; h < c.num_heads; ++h) {
        const float* qh = q.data() + (i * c.num_heads + h) * qk_dim;
        std::vector<double> scores;
        for (int64_t j = 0; j <= position; ++j) {
          const float* kh = k_nope_v.data() + (j * c.num_heads + h) * kv_width;
          const float* kpe = k_pe_rows.data() + j * c.k_pe_stride + k_pe_offset;
          double dot = 0.0;
          for (int64_t d = 0; d < c.nope_dim; ++d) dot += static_cast<double>(qh[d]) * kh[d];
          for (int64_t d = 0; d < c.rope_dim; ++d) {
            dot += static_cast<double>(qh[c.nope_dim + d]) * kpe[d];
          }
          scores.push_back(dot * kV3SoftmaxScale);
        }
        const double max_score = *std::max_element(scores.begin(), scores.end());
        double sum = 0.0;
        for (double s : scores) sum += std::exp(s - max_score);
        double* o = expected.data() + (i * c.num_heads + h) * c.v_dim;
        for (int64_t j = 0; j <= position; ++j) {
          const float* vh = k_nope_v.data() + (j * c.num_heads + h) * kv_width + c.nope_dim;
          const double p = std::exp(scores[j] - max_score) / sum;
          for (int64_t d = 0; d < c.v_dim; ++d) o[d] += p * vh[d];
        }
      }
    }
    for (const CpuIsa isa : AvailableIsas()) {
      SCOPED_TRACE(CpuIsaName(isa));
      std::vector<float> out(static_cast<size_t>(c.num_queries * c.num_heads * c.v_dim), kNaN);
      args.out = out.data();
      args.isa = isa;
      MhaPrefillCpu(args);
      EXPECT_TRUE(MaxRelErrorAtMost(out, expected, 1e-5));
    }
  }
}

// Chunked prefill: the last n queries of a prompt computed as one chunk over the whole context,
// or as two chunks (the first over a shorter context), give each query bit-identical outputs
// on every instruction set: its result depends only on the keys it sees.
TEST(MhaPrefillCpuTest, QueriesAreBitIdenticalWhateverTheChunking) {
  TestRng rng(testing::kDefaultTestSeed + 3);
  const int64_t ctx = 150, n = 90, split = 37, heads = 3, nope = 128, rope = 64, v = 128;
  const int64_t qk_dim = nope + rope, kv_width = nope + v;
  const std::vector<float> q = rng.NormalFloats(static_cast<size_t>(n * heads * qk_dim));
  const std::vector<float> k_nope_v = rng.NormalFloats(static_cast<size_t>(ctx * heads * kv_width));
  const std::vector<float> k_pe = rng.NormalFloats(static_cast<size_t>(ctx * rope));
  auto run = [&](int64_t first_query, int64_t num_queries, int64_t context, CpuIsa isa) {
    std::vector<float> out(static_cast<size_t>(num_queries * heads * v), kNaN);
    MhaPrefillArgs args{.q = q.data() + first_query * heads * qk_dim,
                        .k_nope_v = k_nope_v.data(),
                        .k_pe = k_pe.data(),
                        .k_pe_stride = rope,
                        .num_queries = num_queries,
                        .ctx = context,
                        .num_heads = heads,
                        .nope_dim = nope,
                        .rope_dim = rope,
                        .v_dim = v,
                        .softmax_scale = kV3SoftmaxScale,
                        .out = out.data(),
                        .isa = isa};
    MhaPrefillCpu(args);
    return out;
  };
  for (const CpuIsa isa : AvailableIsas()) {
    SCOPED_TRACE(CpuIsaName(isa));
    const std::vector<float> whole = run(0, n, ctx, isa);
    std::vector<float> chunked = run(0, split, ctx - n + split, isa);
    const std::vector<float> rest = run(split, n - split, ctx, isa);
    chunked.insert(chunked.end(), rest.begin(), rest.end());
    ASSERT_EQ(chunked.size(), whole.size());
    for (size_t i = 0; i < whole.size(); ++i) ASSERT_EQ(chunked[i], whole[i]) << "element " << i;
  }
}

// ---------- Latent cache writes and gathers.

TEST(LatentCacheCpuTest, WriteThenGatherRoundTripsAndSkipsNegativeSlots) {
  TestRng rng;
  const int64_t block_size = 4;
  const int64_t kv_dim = 576;
  const int64_t num_blocks = 7;
  const int64_t num_tokens = 13;  // 4 blocks, the last one partial
  constexpr float kSentinel = 1234.5f;
  // The pool sits behind one guard block, so a write through slot −1 would land in the guard.
  std::vector<float> buffer(static_cast<size_t>((1 + num_blocks) * block_size * kv_dim), kSentinel);
  float* const pages = buffer.data() + block_size * kv_dim;
  const std::vector<int32_t> pool = rng.Permutation(num_blocks);
  const std::vector<int32_t> block_table(pool.begin(), pool.begin() + 4);

  // Prefill writes tokens 0..11 in one call, with two padding rows (slot −1) mixed in; the
  // decode step then writes token 12 alone.
  const std::vector<float> latents = rng.NormalFloats(static_cast<size_t>(num_tokens * kv_dim));
  std::vector<float> prefill_rows;
  std::vector<int64_t> prefill_slots;
  for (int64_t t = 0; t < 12; ++t) {
    if (t == 3 || t == 8) {
      const std::vector<float> padding = rng.NormalFloats(static_cast<size_t>(kv_dim));
      prefill_rows.insert(prefill_rows.end(), padding.begin(), padding.end());
      prefill_slots.push_back(-1);
    }
    prefill_rows.insert(prefill_rows.end(), latents.begin() + t * kv_dim,
                        latents.begin() + (t + 1) * kv_dim);
    prefill_slots.push_back(int64_t{block_table[t / block_size]} * block_size + t % block_size);
  }
  WriteLatentCacheCpu(prefill_rows.data(), prefill_slots.data(),
                      static_cast<int64_t>(prefill_slots.size()), kv_dim, pages);
  const int64_t decode_slot = int64_t{block_table[12 / block_size]} * block_size + 12 % block_size;
  WriteLatentCacheCpu(latents.data() + 12 * kv_dim, &decode_slot, 1, kv_dim, pages);

  std::vector<float> gathered(static_cast<size_t>(num_tokens * kv_dim), kNaN);
  GatherLatentCacheCpu(pages, block_table.data(), num_tokens, block_size, kv_dim, gathered.data());
  EXPECT_EQ(gathered, latents);

  // Exactly the 13 written slots changed; padding rows went nowhere, the guard included.
  int64_t changed_slots = 0;
  for (int64_t slot = 0; slot < (1 + num_blocks) * block_size; ++slot) {
    const bool changed =
        std::any_of(buffer.begin() + slot * kv_dim, buffer.begin() + (slot + 1) * kv_dim,
                    [](float v) { return v != kSentinel; });
    changed_slots += changed ? 1 : 0;
  }
  EXPECT_EQ(changed_slots, num_tokens);

  // A shorter gather reads only the prefix.
  std::vector<float> prefix(static_cast<size_t>(5 * kv_dim));
  GatherLatentCacheCpu(pages, block_table.data(), 5, block_size, kv_dim, prefix.data());
  EXPECT_TRUE(std::equal(prefix.begin(), prefix.end(), latents.begin()));
}

// BF16 pages: each written value is its nearest-even bf16 (FloatToBf16), only the written
// slots change, and a gather widens them back exactly.
TEST(LatentCacheCpuTest, Bf16PagesHoldTheRoundedValues) {
  TestRng rng(testing::kDefaultTestSeed + 2);
  const int64_t block_size = 4, kv_dim = 576, num_blocks = 5, num_tokens = 9;
  constexpr uint16_t kSentinel = 0x7E57;
  std::vector<uint16_t> pages(static_cast<size_t>(num_blocks * block_size * kv_dim), kSentinel);
  const std::vector<int32_t> pool = rng.Permutation(num_blocks);
  const std::vector<int32_t> block_table(pool.begin(), pool.begin() + 3);
  const std::vector<float> latents = rng.NormalFloats(static_cast<size_t>(num_tokens * kv_dim));
  std::vector<int64_t> slots;
  for (int64_t t = 0; t < num_tokens; ++t) {
    slots.push_back(t == 4 ? -1
                           : int64_t{block_table[t / block_size]} * block_size + t % block_size);
  }
  WriteLatentCacheCpu(latents.data(), slots.data(), num_tokens, kv_dim,
                      LatentPages(DType::kBF16, pages.data()));
  int64_t written = 0;
  for (int64_t t = 0; t < num_tokens; ++t) {
    if (slots[t] < 0) continue;
    ++written;
    for (int64_t d = 0; d < kv_dim; ++d) {
      ASSERT_EQ(pages[slots[t] * kv_dim + d], FloatToBf16(latents[t * kv_dim + d]))
          << "token " << t << " dim " << d;
    }
  }
  EXPECT_EQ(std::count_if(pages.begin(), pages.end(), [](uint16_t v) { return v != kSentinel; }),
            written * kv_dim);

  std::vector<float> gathered(static_cast<size_t>(4 * kv_dim), kNaN);
  GatherLatentCacheCpu(LatentPagesView(DType::kBF16, pages.data()), block_table.data(), 4,
                       block_size, kv_dim, gathered.data());
  for (int64_t i = 0; i < 4 * kv_dim; ++i) {
    ASSERT_EQ(gathered[i], Bf16ToFloat(FloatToBf16(latents[i]))) << i;
  }
}

TEST(LatentCacheCpuTest, DecodeSeesWhatWasWritten) {
  // End to end through the cache: write latents with WriteLatentCacheCpu, then MlaDecodeCpu over
  // the pages equals the dense reference over the latents.
  TestRng rng(testing::kDefaultTestSeed + 3);
  const int64_t block_size = 64;
  const int64_t kv_dim = 576;
  const int64_t len = 100;
  const int64_t num_heads = 2;
  const std::vector<int32_t> block_table = {3, 0};  // out of order on purpose
  std::vector<float> pages(static_cast<size_t>(4 * block_size * kv_dim), kNaN);
  const std::vector<float> latents = rng.NormalFloats(static_cast<size_t>(len * kv_dim));
  std::vector<int64_t> slots;
  for (int64_t t = 0; t < len; ++t) {
    slots.push_back(int64_t{block_table[t / block_size]} * block_size + t % block_size);
  }
  WriteLatentCacheCpu(latents.data(), slots.data(), len, kv_dim, pages.data());

  const std::vector<float> q = rng.NormalFloats(static_cast<size_t>(num_heads * kv_dim));
  const int32_t query_start_loc[] = {0, 1};
  const int32_t seq_lens[] = {static_cast<int32_t>(len)};
  std::vector<float> out(static_cast<size_t>(num_heads * 512));
  MlaDecodeArgs args;
  args.q = q.data();
  args.pages = pages.data();
  args.block_tables = block_table.data();
  args.query_start_loc = query_start_loc;
  args.seq_lens = seq_lens;
  args.max_blocks_per_seq = 2;
  args.num_seqs = 1;
  args.num_heads = num_heads;
  args.softmax_scale = kV3SoftmaxScale;
  args.out = out.data();  // lse left null: optional
  MlaDecodeCpu(args);

  std::vector<double> expected(out.size(), 0.0);
  for (int64_t h = 0; h < num_heads; ++h) {
    std::vector<double> p(static_cast<size_t>(len));
    double max_score = -std::numeric_limits<double>::infinity();
    for (int64_t j = 0; j < len; ++j) {
      double dot = 0.0;
      for (int64_t d = 0; d < kv_dim; ++d) {
        dot += static_cast<double>(q[h * kv_dim + d]) * latents[j * kv_dim + d];
      }
      p[j] = dot * kV3SoftmaxScale;
      max_score = std::max(max_score, p[j]);
    }
    double sum = 0.0;
    for (double& v : p) sum += (v = std::exp(v - max_score));
    for (int64_t j = 0; j < len; ++j) {
      for (int64_t d = 0; d < 512; ++d) {
        expected[h * 512 + d] += p[j] / sum * latents[j * kv_dim + d];
      }
    }
  }
  EXPECT_TRUE(MaxRelErrorAtMost(out, expected, 1e-5));
}

}  // namespace
}  // namespace moeserve::engine
