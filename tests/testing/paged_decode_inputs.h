// One random decode step over a shuffled paged latent cache, for the MLA decode tests: the CPU
// emulation of the CUDA kernel's work split (mla_decode_split_test) and the kernel itself
// (mla_decode_cuda_test) build their inputs the same way.
//
// Pages come in shuffled order; every slot no sequence owns (page tails, spare pages) and every
// unused block-table entry's page holds NaN, so reading one poisons the output. Values are
// normal and rounded to bf16, so the same floats feed a bf16 kernel and an fp32 reference.
#pragma once

#include <algorithm>
#include <cstdint>
#include <limits>
#include <vector>

#include "engine/ops/attention/mla_decode_split.h"
#include "engine/ops/dtype.h"
#include "tests/testing/random.h"

namespace moeserve::engine::testing {

struct PagedDecodeInputs {
  int64_t num_seqs = 0;
  int64_t max_blocks = 1;  // block-table width
  int64_t num_pages = 0;
  int64_t num_tokens = 0;
  int64_t max_len = 0;
  int64_t max_queries = 0;
  std::vector<int32_t> tables;           // [num_seqs, max_blocks]
  std::vector<int32_t> query_start_loc;  // [num_seqs + 1]
  std::vector<float> pages;              // [num_pages, 64, 576]
  std::vector<float> q;                  // [num_tokens, num_heads, 576]
};

inline PagedDecodeInputs MakePagedDecodeInputs(TestRng& rng, const std::vector<int32_t>& seq_lens,
                                               const std::vector<int32_t>& queries_per_seq,
                                               int64_t num_heads) {
  auto bf16_normal = [&](double stddev) {
    return Bf16ToFloat(FloatToBf16(static_cast<float>(rng.Normal(0.0, stddev))));
  };
  PagedDecodeInputs in;
  in.num_seqs = static_cast<int64_t>(seq_lens.size());
  int64_t blocks_used = 0;
  for (size_t s = 0; s < seq_lens.size(); ++s) {
    const int64_t pages = (seq_lens[s] + kMlaPageSize - 1) / kMlaPageSize;
    in.max_blocks = std::max(in.max_blocks, pages + 1);
    blocks_used += pages;
    in.max_len = std::max<int64_t>(in.max_len, seq_lens[s]);
    in.max_queries = std::max<int64_t>(in.max_queries, queries_per_seq[s]);
  }
  in.num_pages = blocks_used + 2;
  const std::vector<int32_t> ids = rng.Permutation(in.num_pages);
  in.pages.assign(static_cast<size_t>(in.num_pages * kMlaPageSize * kMlaKvDim),
                  std::numeric_limits<float>::quiet_NaN());
  in.tables.assign(static_cast<size_t>(in.num_seqs * in.max_blocks), ids[in.num_pages - 1]);
  int64_t next = 0;
  for (int64_t s = 0; s < in.num_seqs; ++s) {
    for (int64_t j = 0; j < seq_lens[s]; ++j) {
      int32_t& entry = in.tables[s * in.max_blocks + j / kMlaPageSize];
      if (j % kMlaPageSize == 0) entry = ids[next++];
      const int64_t slot = int64_t{entry} * kMlaPageSize + j % kMlaPageSize;
      for (int d = 0; d < kMlaKvDim; ++d) in.pages[slot * kMlaKvDim + d] = bf16_normal(1.0);
    }
  }
  in.query_start_loc = {0};
  for (int32_t n : queries_per_seq) in.query_start_loc.push_back(in.query_start_loc.back() + n);
  in.num_tokens = in.query_start_loc.back();
  in.q.resize(static_cast<size_t>(in.num_tokens * num_heads * kMlaKvDim));
  for (float& v : in.q) v = bf16_normal(0.5);
  return in;
}

}  // namespace moeserve::engine::testing
