// Tests of the CUDA MLA decode kernel (LaunchMlaDecodeBf16) against MlaDecodeCpu on the same
// bf16-valued random inputs: 16 and 128 heads, lengths that are not multiples of 64, one-key and
// empty sequences, causal multi-query sequences, page tables in shuffled order with NaN in every
// slot no sequence owns, and long contexts that the planner splits (plus forced split counts).
// Outputs, LSE and the split workspace are poisoned with NaN before each launch. Skips, saying
// why, without a CUDA device.
#include "engine/ops/attention/mla_decode_cuda.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "absl/strings/str_cat.h"
#include "engine/ops/attention/mla_decode.h"
#include "engine/ops/attention/mla_decode_split.h"
#include "engine/ops/cuda/cuda_context.h"
#include "engine/ops/dtype.h"
#include "tests/testing/cuda_test_util.h"
#include "tests/testing/paged_decode_inputs.h"
#include "tests/testing/random.h"
#include "tests/testing/tensor_compare.h"

namespace moeserve::engine {
namespace {

using ::moeserve::engine::testing::CudaTest;
using ::moeserve::engine::testing::DeviceArray;
using ::moeserve::engine::testing::LaunchedOk;
using ::moeserve::engine::testing::MaxRelErrorAtMost;
using ::moeserve::engine::testing::TestRng;

constexpr float kV3SoftmaxScale = 0.1352338f;  // 192^-1/2 · (0.1·ln 40 + 1)²
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

struct Case {
  std::vector<int32_t> seq_lens;
  std::vector<int32_t> queries_per_seq;
  int64_t num_heads;
  int forced_splits = 0;      // 0: PlanMlaDecode's choice for this GPU
  bool expect_split = false;  // the planner must split (long-context cases)
};

class MlaDecodeCudaTest : public CudaTest {
 protected:
  void Check(TestRng& rng, const Case& c) {
    SCOPED_TRACE(absl::StrCat("heads=", c.num_heads, " seqs=", c.seq_lens.size(),
                              " forced_splits=", c.forced_splits));
    const testing::PagedDecodeInputs in =
        testing::MakePagedDecodeInputs(rng, c.seq_lens, c.queries_per_seq, c.num_heads);
    const int64_t num_seqs = in.num_seqs, num_tokens = in.num_tokens;
    const size_t rows = static_cast<size_t>(num_tokens * c.num_heads);
    const std::vector<uint16_t> q = FloatsToBf16(in.q), pages = FloatsToBf16(in.pages);

    // Reference on the same bf16 values.
    std::vector<float> expected(rows * kMlaVDim, kNaN), expected_lse(rows, kNaN);
    MlaDecodeCpu({.q = in.q.data(),
                  .pages = in.pages.data(),
                  .block_tables = in.tables.data(),
                  .query_start_loc = in.query_start_loc.data(),
                  .seq_lens = c.seq_lens.data(),
                  .max_blocks_per_seq = in.max_blocks,
                  .num_seqs = num_seqs,
                  .num_heads = c.num_heads,
                  .softmax_scale = kV3SoftmaxScale,
                  .out = expected.data(),
                  .lse = expected_lse.data()});

    absl::StatusOr<CudaDeviceInfo> device = QueryCudaDevice(0);
    ASSERT_TRUE(device.ok()) << device.status();
    const MlaDecodePlan plan = PlanMlaDecode(num_seqs, c.num_heads, num_tokens, in.max_queries,
                                             in.max_len, device->num_sms, c.forced_splits);
    if (c.expect_split) {
      EXPECT_GT(plan.num_splits, 1);
    }
    SCOPED_TRACE(absl::StrCat("plan: block_m=", plan.block_m, " m_blocks=", plan.num_m_blocks,
                              " splits=", plan.num_splits));

    DeviceArray<uint16_t> q_d(q), pages_d(pages), out_d(std::max<size_t>(rows * kMlaVDim, 1));
    DeviceArray<int32_t> tables_d(in.tables), qsl_d(in.query_start_loc), lens_d(c.seq_lens);
    DeviceArray<float> lse_d(std::max<size_t>(rows, 1));
    DeviceArray<uint8_t> workspace_d(std::max<size_t>(plan.workspace_bytes, 16));
    out_d.Poison();
    lse_d.Poison();
    workspace_d.Poison();
    const MlaDecodeCudaArgs args{.q = q_d.data(),
                                 .pages = pages_d.data(),
                                 .block_tables = tables_d.data(),
                                 .query_start_loc = qsl_d.data(),
                                 .seq_lens = lens_d.data(),
                                 .num_pages = in.num_pages,
                                 .max_blocks_per_seq = in.max_blocks,
                                 .num_seqs = num_seqs,
                                 .num_heads = c.num_heads,
                                 .num_tokens = num_tokens,
                                 .softmax_scale = kV3SoftmaxScale,
                                 .out = out_d.data(),
                                 .lse = lse_d.data()};
    ASSERT_TRUE(LaunchedOk(LaunchMlaDecodeBf16(args, plan, workspace_d.data(), nullptr)));
    if (rows == 0) return;
    std::vector<float> actual = Bf16ToFloats(out_d.Download());
    std::vector<float> actual_lse = lse_d.Download();
    // bf16 inputs and output, bf16 probabilities in P·V, fp32 everywhere else.
    EXPECT_TRUE(MaxRelErrorAtMost(actual, expected, 2e-2));
    for (size_t r = 0; r < rows; ++r) {
      if (std::isinf(expected_lse[r])) {
        EXPECT_EQ(actual_lse[r], expected_lse[r]) << "row " << r << " has no keys";
      } else {
        EXPECT_NEAR(actual_lse[r], expected_lse[r],
                    2e-3 * std::max(1.0f, std::fabs(expected_lse[r])))
            << "row " << r;
      }
    }
  }
};

TEST_F(MlaDecodeCudaTest, SixteenHeadsLengthsAroundPageBoundaries) {
  TestRng rng;
  Check(rng, {{1, 63, 64, 65, 200, 1000}, {1, 1, 1, 1, 1, 1}, 16});
}

TEST_F(MlaDecodeCudaTest, HundredTwentyEightHeads) {
  TestRng rng(testing::kDefaultTestSeed + 1);
  Check(rng, {{1, 130, 777}, {1, 1, 1}, 128});
}

TEST_F(MlaDecodeCudaTest, EmptySequencesAndQueriesWithoutKeys) {
  TestRng rng(testing::kDefaultTestSeed + 2);
  // A sequence with no queries, one with one key, one whose query sees no key (lse = +inf).
  Check(rng, {{0, 1, 70, 0}, {0, 1, 1, 1}, 16});
  Check(rng, {{0, 1, 70, 0}, {0, 1, 1, 1}, 128, /*forced_splits=*/3});
}

TEST_F(MlaDecodeCudaTest, CausalQueriesPerSequence) {
  TestRng rng(testing::kDefaultTestSeed + 3);
  Check(rng, {{66, 130, 2, 64}, {3, 2, 3, 1}, 16});
  Check(rng, {{66, 130, 2}, {3, 2, 3}, 128});
  Check(rng, {{500, 129}, {2, 4}, 16, /*forced_splits=*/4});
}

TEST_F(MlaDecodeCudaTest, LongContextsAreSplitAndCombined) {
  TestRng rng(testing::kDefaultTestSeed + 4);
  Check(rng, {{8193}, {1}, 16, 0, /*expect_split=*/true});
  Check(rng, {{5000, 300}, {1, 1}, 128, 0, /*expect_split=*/true});
  Check(rng, {{3000, 65, 1}, {1, 1, 1}, 16, /*forced_splits=*/7});
  Check(rng, {{700}, {1}, 16, /*forced_splits=*/kMlaMaxSplits});  // mostly empty splits
}

TEST_F(MlaDecodeCudaTest, BatchOfRandomLengths) {
  TestRng rng(testing::kDefaultTestSeed + 5);
  for (int64_t heads : {16, 128}) {
    Case c{{}, {}, heads};
    for (int i = 0; i < 12; ++i) {
      c.seq_lens.push_back(static_cast<int32_t>(rng.Int(1, 1500)));
      c.queries_per_seq.push_back(1);
    }
    Check(rng, c);
  }
}

TEST_F(MlaDecodeCudaTest, RejectsBadPlans) {
  // Valid-looking device pointers: the launcher must refuse before touching any of them.
  DeviceArray<uint16_t> bf16(kMlaKvDim * kMlaPageSize);
  DeviceArray<int32_t> ints(2);
  MlaDecodeCudaArgs args;
  args.q = args.pages = bf16.data();
  args.out = bf16.data();
  args.block_tables = args.query_start_loc = args.seq_lens = ints.data();
  args.num_pages = 1;
  args.max_blocks_per_seq = 1;
  args.num_seqs = 1;
  args.num_heads = 16;
  args.num_tokens = 1;
  MlaDecodePlan plan;
  plan.num_m_blocks = 1;
  plan.block_m = 32;  // not a compiled row block
  EXPECT_NE(LaunchMlaDecodeBf16(args, plan, nullptr, nullptr), 0);
  plan.block_m = 16;
  plan.num_splits = 4;  // split without workspace
  EXPECT_NE(LaunchMlaDecodeBf16(args, plan, nullptr, nullptr), 0);
}

}  // namespace
}  // namespace moeserve::engine
