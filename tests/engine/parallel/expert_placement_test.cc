// EPLB-style placement: validity, load balance on skewed traces, and the strict JSON format.
#include "engine/parallel/expert_placement.h"

#include <gtest/gtest.h>

#include <cmath>

#include "engine/parallel/moe_dispatch.h"
#include "tests/testing/random.h"

namespace moeserve::engine {
namespace {

using testing::TestRng;

// Zipf(s) token counts over experts in a random order, `tokens` in total.
std::vector<int64_t> ZipfCounts(TestRng& rng, int64_t num_experts, double s, int64_t tokens) {
  const std::vector<int32_t> order = rng.Permutation(num_experts);
  double norm = 0.0;
  for (int64_t i = 1; i <= num_experts; ++i) norm += std::pow(static_cast<double>(i), -s);
  std::vector<int64_t> counts(static_cast<size_t>(num_experts));
  for (int64_t i = 0; i < num_experts; ++i) {
    counts[order[i]] = static_cast<int64_t>(tokens * std::pow(i + 1.0, -s) / norm);
  }
  return counts;
}

TEST(ExpertPlacementTest, BalancedPlacementIsValidAndReducesMaxOverMean) {
  TestRng rng(77);
  for (int ranks : {2, 4, 8}) {
    for (int64_t experts : {16, 64}) {
      const std::vector<int64_t> counts = ZipfCounts(rng, experts, 1.2, 100000);
      const int slots = static_cast<int>(experts / ranks) + 2;
      const std::vector<bool> moe = {false, true, true};
      std::vector<int64_t> all(static_cast<size_t>(3 * experts));
      std::copy(counts.begin(), counts.end(), all.begin() + experts);
      std::copy(counts.rbegin(), counts.rend(), all.begin() + 2 * experts);
      absl::StatusOr<ExpertPlacement> placement =
          ComputeBalancedPlacement(all, moe, experts, ranks, slots);
      ASSERT_TRUE(placement.ok()) << placement.status();
      ASSERT_TRUE(ValidatePlacement(*placement, moe, experts, ranks).ok());
      EXPECT_TRUE(placement->layers[0].rank_experts.empty());
      const ExpertPlacement contiguous = ContiguousPlacement(moe, experts, ranks);
      for (int l = 1; l < 3; ++l) {
        const absl::Span<const int64_t> layer_counts(all.data() + l * experts, experts);
        // Every expert present, every rank `slots` slots.
        const auto replicas = placement->layers[l].ReplicasByExpert(experts);
        for (int64_t e = 0; e < experts; ++e) EXPECT_GE(replicas[e].size(), 1u) << e;
        for (const auto& held : placement->layers[l].rank_experts) EXPECT_EQ(held.size(), slots);
        const double before = MaxOverMeanLoad(contiguous.layers[l], layer_counts);
        const double after = MaxOverMeanLoad(placement->layers[l], layer_counts);
        EXPECT_LT(after, before) << ranks << " ranks, " << experts << " experts";
        EXPECT_LT(after, 1.35) << ranks << " ranks, " << experts << " experts";
      }
    }
  }
}

// The GPU's rank-local view (every rank sees every token) must pick, for each (token, expert),
// exactly one rank: the replica the CPU dispatch sends the token to.
TEST(ExpertPlacementTest, ExpertSlotsOnRankPickTheDispatchReplicaOnExactlyOneRank) {
  TestRng rng(78);
  for (int ranks : {2, 4}) {
    const int64_t experts = 16, top_k = 3, tokens = 97;
    const std::vector<bool> moe = {true};
    absl::StatusOr<ExpertPlacement> placement =
        ComputeBalancedPlacement(ZipfCounts(rng, experts, 1.5, 50000), moe, experts, ranks,
                                 static_cast<int>(experts / ranks) + 3);
    ASSERT_TRUE(placement.ok()) << placement.status();
    const LayerPlacement& layer = placement->layers[0];
    std::vector<int32_t> ids(static_cast<size_t>(tokens * top_k));
    for (int64_t t = 0; t < tokens; ++t) {
      const std::vector<int32_t> order = rng.Permutation(experts);
      for (int64_t k = 0; k < top_k; ++k) ids[t * top_k + k] = order[k];
    }
    const DispatchPlan plan =
        PlanDispatch(ids.data(), tokens, top_k, 0, layer.ReplicasByExpert(experts), ranks);
    ids[5] = -1;  // an id the permutation drops stays dropped on every rank
    std::vector<std::vector<int32_t>> local(static_cast<size_t>(ranks));
    for (int r = 0; r < ranks; ++r) {
      const LocalExpertSlots slots = ExpertSlotsOnRank(layer, experts, r);
      EXPECT_EQ(slots.num_slots, static_cast<int64_t>(layer.rank_experts[r].size()));
      local[r].resize(ids.size());
      MapToLocalSlotsCpu(slots, ids.data(), tokens, top_k, local[r].data());
    }
    // The dispatch's (rank, slot) for each (token, pick).
    std::vector<std::pair<int, int32_t>> dispatched(ids.size(), {-1, -1});
    size_t entry = 0;
    for (int r = 0; r < ranks; ++r) {
      for (int64_t n = 0; n < plan.send_counts[r]; ++n, ++entry) {
        dispatched[plan.token[entry] * top_k + plan.pick[entry]] = {r, plan.slot[entry]};
      }
    }
    for (size_t i = 0; i < ids.size(); ++i) {
      int owners = 0;
      for (int r = 0; r < ranks; ++r) {
        const int32_t slot = local[r][i];
        if (slot < 0) continue;
        ++owners;
        EXPECT_EQ(layer.rank_experts[r][slot], ids[i]) << "pair " << i << " rank " << r;
        EXPECT_EQ(dispatched[i], std::make_pair(r, slot)) << "pair " << i;
      }
      EXPECT_EQ(owners, ids[i] < 0 ? 0 : 1) << "pair " << i;
    }
  }
}

TEST(ExpertPlacementTest, WithoutExtraSlotsEveryExpertOnceAndLoadNoWorse) {
  TestRng rng(78);
  const std::vector<int64_t> counts = ZipfCounts(rng, 32, 0.8, 5000);
  const LayerPlacement layer = BalanceLayer(counts, 4, 8);
  const auto replicas = layer.ReplicasByExpert(32);
  for (const auto& r : replicas) EXPECT_EQ(r.size(), 1u);
  const ExpertPlacement contiguous = ContiguousPlacement({true}, 32, 4);
  EXPECT_LE(MaxOverMeanLoad(layer, counts), MaxOverMeanLoad(contiguous.layers[0], counts));
}

TEST(ExpertPlacementTest, JsonRoundTrip) {
  TestRng rng(79);
  const std::vector<bool> moe = {false, true, true, true};
  std::vector<int64_t> counts(4 * 16);
  for (size_t i = 16; i < counts.size(); ++i) counts[i] = rng.Int(0, 1000);
  absl::StatusOr<ExpertPlacement> placement = ComputeBalancedPlacement(counts, moe, 16, 4, 6);
  ASSERT_TRUE(placement.ok()) << placement.status();
  absl::StatusOr<ExpertPlacement> parsed =
      ParsePlacementJson(PlacementToJson(*placement), "test.json", moe);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  for (size_t l = 0; l < moe.size(); ++l) {
    EXPECT_EQ(parsed->layers[l].rank_experts, placement->layers[l].rank_experts) << l;
  }
}

TEST(ExpertPlacementTest, UnlistedLayersGetTheContiguousPartition) {
  const std::vector<bool> moe = {false, true, true};
  absl::StatusOr<ExpertPlacement> parsed = ParsePlacementJson(
      R"({"format": "moeserve-expert-placement/v1", "num_experts": 4, "num_ranks": 2,
          "layers": [{"layer": 2, "rank_experts": [[0, 1, 3], [2, 3, 0]]}]})",
      "p.json", moe);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->layers[1].rank_experts, (std::vector<std::vector<int32_t>>{{0, 1}, {2, 3}}));
  EXPECT_EQ(parsed->layers[2].rank_experts,
            (std::vector<std::vector<int32_t>>{{0, 1, 3}, {2, 3, 0}}));
}

TEST(ExpertPlacementTest, StrictParsingNamesTheProblem) {
  const std::vector<bool> moe = {false, true};
  const std::string head = R"({"format": "moeserve-expert-placement/v1", "num_experts": 4, )";
  const struct {
    std::string json;
    std::string message;
  } cases[] = {
      {"not json", "not valid JSON"},
      {R"({"format": "v0", "num_experts": 4, "num_ranks": 2, "layers": []})", "'format'"},
      {head + R"("num_ranks": 2, "layers": [], "extra": 1})", "unknown key 'extra'"},
      {head + R"("num_ranks": 0, "layers": []})", "'num_ranks'"},
      {head + R"("num_ranks": 2, "layers": [{"layer": 0, "rank_experts": [[0,1],[2,3]]}]})",
       "not a MoE layer"},
      {head + R"("num_ranks": 2, "layers": [{"layer": 1, "rank_experts": [[0,1],[2,9]]}]})",
       "expert id"},
      {head + R"("num_ranks": 2, "layers": [{"layer": 1, "rank_experts": [[0,1],[1,2]]}]})",
       "no replica of expert 3"},
      {head + R"("num_ranks": 2, "layers": [{"layer": 1, "rank_experts": [[0,1,2],[3]]}]})",
       "slots must be equal"},
      {head + R"("num_ranks": 2, "layers": [{"layer": 1, "rank_experts": [[0,0],[1,2,3]]}]})",
       "twice"},
      {head + R"("num_ranks": 2, "layers": [{"layer": 1, "rank_experts": [[0,1],[2,3],[0,1]]}]})",
       "3 ranks"},
  };
  for (const auto& c : cases) {
    absl::StatusOr<ExpertPlacement> parsed = ParsePlacementJson(c.json, "bad.json", moe);
    ASSERT_FALSE(parsed.ok()) << c.json;
    EXPECT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(parsed.status().message().find(c.message), std::string::npos)
        << parsed.status() << " should mention " << c.message;
    EXPECT_NE(parsed.status().message().find("bad.json"), std::string::npos) << parsed.status();
  }
}

}  // namespace
}  // namespace moeserve::engine
