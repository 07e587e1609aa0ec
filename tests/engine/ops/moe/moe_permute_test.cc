// The MoE permutation contract (moe_permute.h) against a naive reference written here: for each
// expert, scan every entry in (token, slot) order and append the matches, then pad. Random
// routing (distinct experts per token, as the router gives, and unconstrained), every token to
// one expert, many empty experts, T = 1 and T = 0, alignments 1, 4 and 128. Also the segmented
// FP8 scale layout the MoE GEMMs read (fp8_segmented_layout.h) and the weighted un-permute.
#include "engine/ops/moe/moe_permute.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "engine/ops/linear/fp8_segmented_layout.h"
#include "tests/testing/random.h"
#include "tests/testing/tensor_compare.h"

namespace moeserve::engine {
namespace {

using ::moeserve::engine::testing::MaxRelErrorAtMost;
using ::moeserve::engine::testing::TestRng;

struct NaivePermutation {
  std::vector<int32_t> counts, offsets, gather, scatter;
};

NaivePermutation NaivePermute(const std::vector<int32_t>& ids, int64_t top_k, int64_t experts,
                              int64_t alignment) {
  NaivePermutation p;
  p.scatter.assign(ids.size(), -1);
  p.offsets.push_back(0);
  for (int64_t e = 0; e < experts; ++e) {
    int32_t count = 0;
    for (size_t i = 0; i < ids.size(); ++i) {
      if (ids[i] != e) continue;
      p.scatter[i] = static_cast<int32_t>(p.gather.size());
      p.gather.push_back(static_cast<int32_t>(i));
      ++count;
    }
    while (p.gather.size() % alignment != 0) p.gather.push_back(-1);
    p.counts.push_back(count);
    p.offsets.push_back(static_cast<int32_t>(p.gather.size()));
  }
  (void)top_k;
  return p;
}

// top_k distinct experts per token, like the router.
std::vector<int32_t> DistinctRouting(TestRng& rng, int64_t tokens, int64_t top_k, int64_t experts) {
  std::vector<int32_t> ids;
  for (int64_t t = 0; t < tokens; ++t) {
    const std::vector<int32_t> perm = rng.Permutation(experts);
    ids.insert(ids.end(), perm.begin(), perm.begin() + top_k);
  }
  return ids;
}

void ExpectMatchesNaive(const std::vector<int32_t>& ids, int64_t tokens, int64_t top_k,
                        int64_t experts, int64_t alignment) {
  SCOPED_TRACE("T=" + std::to_string(tokens) + " k=" + std::to_string(top_k) +
               " E=" + std::to_string(experts) + " alignment=" + std::to_string(alignment));
  absl::StatusOr<MoePermutation> p = BuildMoePermutation(ids, tokens, top_k, experts, alignment);
  ASSERT_TRUE(p.ok()) << p.status();
  const NaivePermutation naive = NaivePermute(ids, top_k, experts, alignment);
  EXPECT_EQ(p->counts, naive.counts);
  EXPECT_EQ(p->offsets, naive.offsets);
  EXPECT_EQ(p->gather, naive.gather);
  EXPECT_EQ(p->scatter, naive.scatter);
  EXPECT_EQ(p->num_rows(), static_cast<int64_t>(naive.gather.size()));
  EXPECT_LE(p->num_rows(), MoePermutedRowsUpperBound(tokens, top_k, experts, alignment));
  for (int64_t e = 0; e < experts; ++e) EXPECT_EQ(p->offsets[e] % alignment, 0);
}

TEST(MoePermuteTest, RandomRoutingMatchesNaiveReference) {
  TestRng rng;
  for (const int64_t alignment : {int64_t{1}, int64_t{4}, int64_t{128}}) {
    for (const int64_t tokens : {int64_t{1}, int64_t{2}, int64_t{37}, int64_t{300}}) {
      ExpectMatchesNaive(DistinctRouting(rng, tokens, 6, 64), tokens, 6, 64, alignment);
      ExpectMatchesNaive(DistinctRouting(rng, tokens, 8, 256), tokens, 8, 256, alignment);
      // Unconstrained ids: one token may name an expert twice.
      std::vector<int32_t> ids(static_cast<size_t>(tokens * 3));
      for (int32_t& id : ids) id = static_cast<int32_t>(rng.Int(0, 4));
      ExpectMatchesNaive(ids, tokens, 3, 5, alignment);
    }
  }
}

TEST(MoePermuteTest, SkewedRoutingAllTokensToOneExpertLeavesTheOthersEmpty) {
  TestRng rng;
  const int64_t tokens = 129, experts = 64;
  // top-1, every token to expert 17.
  ExpectMatchesNaive(std::vector<int32_t>(tokens, 17), tokens, 1, experts, 128);
  // top-6: slot 0 always expert 63, the other slots from a fixed set of 5.
  std::vector<int32_t> ids;
  for (int64_t t = 0; t < tokens; ++t) {
    ids.push_back(63);
    std::vector<int32_t> rest = {0, 1, 2, 3, 4};
    for (int64_t i = 4; i > 0; --i) std::swap(rest[i], rest[rng.Int(0, i)]);
    ids.insert(ids.end(), rest.begin(), rest.end());
  }
  ExpectMatchesNaive(ids, tokens, 6, experts, 4);
  absl::StatusOr<MoePermutation> p = BuildMoePermutation(ids, tokens, 6, experts, 4);
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->counts[63], tokens);
  EXPECT_EQ(p->counts[10], 0);
  EXPECT_EQ(p->offsets[10], p->offsets[11]);
}

TEST(MoePermuteTest, NoTokensGiveEmptySegments) {
  absl::StatusOr<MoePermutation> p = BuildMoePermutation({}, 0, 6, 64, 128);
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->num_rows(), 0);
  EXPECT_EQ(p->offsets, std::vector<int32_t>(65, 0));
  EXPECT_TRUE(p->gather.empty());
}

TEST(MoePermuteTest, RejectsBadInput) {
  const std::vector<int32_t> ids = {0, 5, 2, 1};
  absl::StatusOr<MoePermutation> p = BuildMoePermutation(ids, 2, 2, 5, 4);
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(p.status().message().find("expert_ids[0, 1] = 5"), std::string::npos) << p.status();
  EXPECT_FALSE(BuildMoePermutation({0, -1}, 1, 2, 5, 4).ok());
  EXPECT_FALSE(BuildMoePermutation({0, 1, 2}, 2, 2, 5, 4).ok());  // size mismatch
  EXPECT_FALSE(BuildMoePermutation({0, 1}, 1, 2, 5, 0).ok());     // alignment
  EXPECT_FALSE(BuildMoePermutation({0, 1}, 1, 2, 0, 4).ok());     // experts
}

TEST(MoePermuteTest, UnpermuteMatchesPerTokenReference) {
  TestRng rng;
  const int64_t tokens = 23, top_k = 6, experts = 16, hidden = 40;
  const std::vector<int32_t> ids = DistinctRouting(rng, tokens, top_k, experts);
  absl::StatusOr<MoePermutation> p = BuildMoePermutation(ids, tokens, top_k, experts, 8);
  ASSERT_TRUE(p.ok());
  const std::vector<float> weights = rng.UniformFloats(static_cast<size_t>(tokens * top_k), 0, 1);
  const std::vector<float> shared = rng.NormalFloats(static_cast<size_t>(tokens * hidden));
  // Expert e's output for token t, as a function, so the reference needs no permutation.
  auto expert_value = [](int64_t e, int64_t t, int64_t d) {
    return 0.01f * static_cast<float>((e * 131 + t * 17 + d * 7) % 97) - 0.4f;
  };
  std::vector<float> expert_out(static_cast<size_t>(p->num_rows() * hidden), 1e30f);
  for (int64_t row = 0; row < p->num_rows(); ++row) {
    const int32_t entry = p->gather[row];
    if (entry < 0) continue;  // padding rows keep the poison: they must not be read
    for (int64_t d = 0; d < hidden; ++d) {
      expert_out[row * hidden + d] = expert_value(ids[entry], entry / top_k, d);
    }
  }
  std::vector<float> reference(static_cast<size_t>(tokens * hidden), 0.0f);
  for (int64_t t = 0; t < tokens; ++t) {
    for (int64_t d = 0; d < hidden; ++d) {
      double sum = 0.0;
      for (int64_t s = 0; s < top_k; ++s) {
        sum += weights[t * top_k + s] * expert_value(ids[t * top_k + s], t, d);
      }
      reference[t * hidden + d] = static_cast<float>(sum + shared[t * hidden + d]);
    }
  }
  std::vector<float> out(reference.size(), -7.0f);
  UnpermuteMoeCpu(expert_out.data(), p->scatter, weights.data(), tokens, top_k, hidden,
                  shared.data(), out.data());
  EXPECT_TRUE(MaxRelErrorAtMost(out, reference, 1e-6));
}

TEST(Fp8SegmentedLayoutTest, FindSegmentSkipsEmptySegments) {
  const std::vector<int32_t> offsets = {0, 0, 4, 4, 4, 12, 16, 16};  // 7 segments, 3 empty
  std::vector<int64_t> expected;
  for (int64_t s = 0; s + 1 < static_cast<int64_t>(offsets.size()); ++s) {
    for (int32_t r = offsets[s]; r < offsets[s + 1]; ++r) expected.push_back(s);
  }
  for (int64_t row = 0; row < 16; ++row) {
    EXPECT_EQ(FindSegment(offsets.data(), 7, row), expected[row]) << "row " << row;
  }
  const int32_t single[] = {0, 5};
  EXPECT_EQ(FindSegment(single, 1, 4), 0);
}

TEST(Fp8SegmentedLayoutTest, SegmentBlocksTileTheScalesAndOneSegmentIsTheDenseLayout) {
  const std::vector<int32_t> offsets = {0, 8, 8, 12, 40};
  const int64_t groups = 3, rows = offsets.back();
  std::vector<int> hits(static_cast<size_t>(rows * groups), 0);
  for (int64_t s = 0; s + 1 < static_cast<int64_t>(offsets.size()); ++s) {
    for (int64_t r = offsets[s]; r < offsets[s + 1]; ++r) {
      for (int64_t g = 0; g < groups; ++g) {
        const int64_t i = SegmentedScaleIndex(offsets[s], offsets[s + 1], groups, r, g);
        ASSERT_GE(i, offsets[s] * groups);
        ASSERT_LT(i, offsets[s + 1] * groups);  // inside the segment's own block
        ++hits[i];
      }
    }
  }
  EXPECT_EQ(hits, std::vector<int>(hits.size(), 1));
  // One segment [0, rows): scales[g * rows + r], fp8_quant_cuda.h's transposed layout.
  EXPECT_EQ(SegmentedScaleIndex(0, 40, groups, 7, 2), 2 * 40 + 7);
  EXPECT_EQ(AlignUp(0, 128), 0);
  EXPECT_EQ(AlignUp(129, 128), 256);
}

}  // namespace
}  // namespace moeserve::engine
