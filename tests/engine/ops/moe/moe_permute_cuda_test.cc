// The MoE permutation kernels (moe_permute_cuda.h) against their CPU contract (moe_permute.h):
// the device permutation equals BuildMoePermutation's exactly; the gathered FP8 rows and their
// segmented scales equal QuantizeActivationsFp8 of each row's token bit for bit; the weighted
// un-permute equals UnpermuteMoeCpu after the same bf16 rounding. Random routing at V2-Lite and
// V3 expert counts, every token to one expert, empty experts, T = 1, and dropped bad ids.
// Outputs are NaN-poisoned first. Skips without a CUDA device.
#include "engine/ops/moe/moe_permute_cuda.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "engine/ops/dtype.h"
#include "engine/ops/linear/fp8_quant.h"
#include "engine/ops/linear/fp8_segmented_layout.h"
#include "engine/ops/moe/moe_permute.h"
#include "tests/testing/cuda_test_util.h"
#include "tests/testing/random.h"

namespace moeserve::engine {
namespace {

using ::moeserve::engine::testing::CudaTest;
using ::moeserve::engine::testing::DeviceArray;
using ::moeserve::engine::testing::LaunchedOk;
using ::moeserve::engine::testing::TestRng;

struct RoutingCase {
  std::string name;
  int64_t tokens, top_k, experts;
  std::vector<int32_t> ids;
};

std::vector<int32_t> DistinctRouting(TestRng& rng, int64_t tokens, int64_t top_k, int64_t experts) {
  std::vector<int32_t> ids;
  for (int64_t t = 0; t < tokens; ++t) {
    const std::vector<int32_t> perm = rng.Permutation(experts);
    ids.insert(ids.end(), perm.begin(), perm.begin() + top_k);
  }
  return ids;
}

std::vector<RoutingCase> Cases(TestRng& rng) {
  std::vector<RoutingCase> cases;
  for (const int64_t tokens : {int64_t{1}, int64_t{37}, int64_t{700}}) {
    cases.push_back({"V2-Lite random", tokens, 6, 64, DistinctRouting(rng, tokens, 6, 64)});
    cases.push_back({"V3 random", tokens, 8, 256, DistinctRouting(rng, tokens, 8, 256)});
  }
  // Slot 0 of every token to expert 63, the rest to experts 0..4: 58 experts empty.
  std::vector<int32_t> skewed;
  for (int64_t t = 0; t < 300; ++t) {
    skewed.push_back(63);
    std::vector<int32_t> rest = {0, 1, 2, 3, 4};
    for (int64_t i = 4; i > 0; --i) std::swap(rest[i], rest[rng.Int(0, i)]);
    skewed.insert(skewed.end(), rest.begin(), rest.end());
  }
  cases.push_back({"skewed", 300, 6, 64, skewed});
  return cases;
}

class MoePermuteCudaTest : public CudaTest {};

TEST_F(MoePermuteCudaTest, PermutationEqualsCpuContract) {
  TestRng rng;
  for (const RoutingCase& c : Cases(rng)) {
    for (const int64_t alignment : {int64_t{4}, int64_t{128}}) {
      SCOPED_TRACE(c.name + " T=" + std::to_string(c.tokens) +
                   " alignment=" + std::to_string(alignment));
      absl::StatusOr<MoePermutation> expected =
          BuildMoePermutation(c.ids, c.tokens, c.top_k, c.experts, alignment);
      ASSERT_TRUE(expected.ok()) << expected.status();
      const int64_t max_rows = MoePermutedRowsUpperBound(c.tokens, c.top_k, c.experts, alignment);
      DeviceArray<int32_t> ids(c.ids);
      DeviceArray<int32_t> counts(c.experts), offsets(c.experts + 1);
      DeviceArray<int32_t> gather(max_rows), scatter(c.ids.size());
      counts.Poison();
      offsets.Poison();
      gather.Poison();
      scatter.Poison();
      ASSERT_TRUE(LaunchedOk(LaunchBuildMoePermutation(ids.data(), c.tokens, c.top_k, c.experts,
                                                       alignment, counts.data(), offsets.data(),
                                                       gather.data(), scatter.data(), nullptr)));
      EXPECT_EQ(counts.Download(), expected->counts);
      EXPECT_EQ(offsets.Download(), expected->offsets);
      std::vector<int32_t> gathered = gather.Download();
      gathered.resize(static_cast<size_t>(expected->num_rows()));
      EXPECT_EQ(gathered, expected->gather);
      EXPECT_EQ(scatter.Download(), expected->scatter);
    }
  }
}

TEST_F(MoePermuteCudaTest, OutOfRangeIdsAreDropped) {
  const std::vector<int32_t> ids = {2, 9, -1, 2, 0, 3};  // [3 tokens, 2], E = 4
  DeviceArray<int32_t> ids_dev(ids), counts(4), offsets(5), gather(32), scatter(6);
  scatter.Poison();
  ASSERT_TRUE(LaunchedOk(LaunchBuildMoePermutation(ids_dev.data(), 3, 2, 4, 4, counts.data(),
                                                   offsets.data(), gather.data(), scatter.data(),
                                                   nullptr)));
  EXPECT_EQ(counts.Download(), (std::vector<int32_t>{1, 0, 2, 1}));
  EXPECT_EQ(offsets.Download(), (std::vector<int32_t>{0, 4, 4, 8, 12}));
  EXPECT_EQ(scatter.Download(), (std::vector<int32_t>{4, -1, -1, 5, 0, 8}));
}

TEST_F(MoePermuteCudaTest, GatherQuantizeEqualsCpuQuantizationOfEachToken) {
  TestRng rng;
  for (const RoutingCase& c : Cases(rng)) {
    for (const int64_t hidden : {int64_t{2048}, int64_t{200}}) {  // V2-Lite; a partial group
      SCOPED_TRACE(c.name + " T=" + std::to_string(c.tokens) + " hidden=" + std::to_string(hidden));
      const int64_t alignment = 4, groups = (hidden + 127) / 128;
      absl::StatusOr<MoePermutation> p =
          BuildMoePermutation(c.ids, c.tokens, c.top_k, c.experts, alignment);
      ASSERT_TRUE(p.ok());
      const std::vector<uint16_t> x = rng.NormalBf16(static_cast<size_t>(c.tokens * hidden), 2.0);
      std::vector<float> xf(x.size());
      for (size_t i = 0; i < x.size(); ++i) xf[i] = Bf16ToFloat(x[i]);
      std::vector<uint8_t> q_cpu(xf.size());
      std::vector<float> s_cpu(static_cast<size_t>(c.tokens * groups));
      QuantizeActivationsFp8(xf, c.tokens, hidden, absl::MakeSpan(q_cpu), absl::MakeSpan(s_cpu));

      const int64_t max_rows = MoePermutedRowsUpperBound(c.tokens, c.top_k, c.experts, alignment);
      std::vector<int32_t> gather_host = p->gather;
      gather_host.resize(static_cast<size_t>(max_rows), -1);
      DeviceArray<uint16_t> x_dev(x);
      DeviceArray<int32_t> gather(gather_host), offsets(p->offsets);
      DeviceArray<uint8_t> q(static_cast<size_t>(max_rows * hidden));
      DeviceArray<float> scales(static_cast<size_t>(max_rows * groups));
      q.Poison();
      scales.Poison();
      ASSERT_TRUE(LaunchedOk(
          LaunchMoeGatherQuantizeFp8(x_dev.data(), hidden, c.top_k, gather.data(), offsets.data(),
                                     c.experts, max_rows, q.data(), scales.data(), nullptr)));
      const std::vector<uint8_t> q_gpu = q.Download();
      const std::vector<float> s_gpu = scales.Download();
      int64_t mismatches = 0;
      for (int64_t row = 0; row < p->num_rows(); ++row) {
        const int64_t s = FindSegment(p->offsets.data(), c.experts, row);
        const int32_t entry = p->gather[row];
        for (int64_t g = 0; g < groups; ++g) {
          const float scale =
              s_gpu[SegmentedScaleIndex(p->offsets[s], p->offsets[s + 1], groups, row, g)];
          if (entry < 0) {
            ASSERT_TRUE(std::isfinite(scale)) << "padding row " << row;
          } else {
            ASSERT_EQ(scale, s_cpu[(entry / c.top_k) * groups + g]) << "row " << row << " g " << g;
          }
        }
        for (int64_t d = 0; d < hidden; ++d) {
          const uint8_t expected = entry < 0 ? 0 : q_cpu[(entry / c.top_k) * hidden + d];
          mismatches += q_gpu[row * hidden + d] != expected;
        }
      }
      EXPECT_EQ(mismatches, 0);
      // Rows past the last segment are not touched.
      for (int64_t i = p->num_rows() * hidden; i < max_rows * hidden; ++i) {
        ASSERT_EQ(q_gpu[i], 0xFF) << "byte " << i << " past the last segment was written";
      }
    }
  }
}

TEST_F(MoePermuteCudaTest, UnpermuteEqualsCpuContract) {
  TestRng rng;
  for (const RoutingCase& c : Cases(rng)) {
    for (const bool with_shared : {false, true}) {
      SCOPED_TRACE(c.name + " T=" + std::to_string(c.tokens) + (with_shared ? " +shared" : ""));
      const int64_t hidden = 2048;
      absl::StatusOr<MoePermutation> p =
          BuildMoePermutation(c.ids, c.tokens, c.top_k, c.experts, 4);
      ASSERT_TRUE(p.ok());
      std::vector<uint16_t> expert_out =
          rng.NormalBf16(static_cast<size_t>(p->num_rows() * hidden));
      for (int64_t row = 0; row < p->num_rows(); ++row) {  // padding rows must not be read
        if (p->gather[row] < 0) {
          std::fill(expert_out.begin() + row * hidden, expert_out.begin() + (row + 1) * hidden,
                    0xFFFF);
        }
      }
      const std::vector<float> weights =
          rng.UniformFloats(static_cast<size_t>(c.tokens * c.top_k), 0.0, 1.0);
      const std::vector<uint16_t> shared = rng.NormalBf16(static_cast<size_t>(c.tokens * hidden));

      std::vector<float> expert_out_f(expert_out.size()), shared_f(shared.size());
      for (size_t i = 0; i < expert_out.size(); ++i) expert_out_f[i] = Bf16ToFloat(expert_out[i]);
      for (size_t i = 0; i < shared.size(); ++i) shared_f[i] = Bf16ToFloat(shared[i]);
      std::vector<float> expected(static_cast<size_t>(c.tokens * hidden));
      UnpermuteMoeCpu(expert_out_f.data(), p->scatter, weights.data(), c.tokens, c.top_k, hidden,
                      with_shared ? shared_f.data() : nullptr, expected.data());

      DeviceArray<uint16_t> expert_out_dev(expert_out), shared_dev(shared);
      DeviceArray<int32_t> scatter(p->scatter);
      DeviceArray<float> weights_dev(weights);
      DeviceArray<uint16_t> out(expected.size());
      out.Poison();
      ASSERT_TRUE(LaunchedOk(LaunchMoeUnpermute(
          expert_out_dev.data(), scatter.data(), weights_dev.data(), c.tokens, c.top_k, hidden,
          with_shared ? shared_dev.data() : nullptr, out.data(), nullptr)));
      const std::vector<uint16_t> actual = out.Download();
      int64_t mismatches = 0;
      for (size_t i = 0; i < expected.size(); ++i) {
        mismatches += actual[i] != FloatToBf16(expected[i]);
      }
      EXPECT_EQ(mismatches, 0) << "of " << expected.size();
    }
  }
}

}  // namespace
}  // namespace moeserve::engine
