// moeserve-expert-placement: the counts it reads (EngineStats JSON and /metrics scrapes) and,
// end to end, a placement the server accepts that balances a skewed trace better than the
// contiguous partition.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "engine/model/model_config.h"
#include "engine/parallel/expert_placement.h"
#include "engine/parallel/parallel_config.h"
#include "tests/testing/random.h"
#include "tests/testing/test_checkpoints.h"
#include "tools/expert_placement/expert_counts.h"

namespace moeserve {
namespace {

namespace fs = std::filesystem;

TEST(ExpertCountsTest, JsonRoundTrip) {
  engine::testing::TestRng rng(31);
  tools::ExpertCounts counts{.num_layers = 3, .num_experts = 5, .counts = {}};
  for (int i = 0; i < 15; ++i) counts.counts.push_back(rng.Int(0, 100000));
  absl::StatusOr<tools::ExpertCounts> parsed =
      tools::ParseExpertCounts(tools::ExpertCountsToJson(counts), "c.json", 3, 5);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->counts, counts.counts);
  EXPECT_FALSE(tools::ParseExpertCounts(tools::ExpertCountsToJson(counts), "c.json", 4, 5).ok());
}

TEST(ExpertCountsTest, PrometheusScrape) {
  const std::string scrape =
      "# HELP moeserve_moe_expert_tokens_total Tokens routed to each expert of an MoE layer.\n"
      "# TYPE moeserve_moe_expert_tokens_total counter\n"
      "moeserve_moe_expert_tokens_total{expert=\"2\",layer=\"1\",model=\"m\"} 17\n"
      "moeserve_moe_expert_tokens_total{model=\"m\",layer=\"2\",expert=\"0\"} 5 1700000000\n"
      "moeserve_moe_routed_tokens_total{layer=\"1\",model=\"m\"} 99\n";
  absl::StatusOr<tools::ExpertCounts> parsed = tools::ParseExpertCounts(scrape, "m.txt", 3, 4);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  std::vector<int64_t> expected(12);
  expected[1 * 4 + 2] = 17;
  expected[2 * 4 + 0] = 5;
  EXPECT_EQ(parsed->counts, expected);

  auto bad = tools::ParseExpertCounts(
      "moeserve_moe_expert_tokens_total{expert=\"9\",layer=\"1\"} 1\n", "m.txt", 3, 4);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("line 1"), std::string::npos) << bad.status();
  EXPECT_NE(tools::ParseExpertCounts("nothing here\n", "m.txt", 3, 4)
                .status()
                .message()
                .find("--per-expert-metrics"),
            std::string::npos);
}

TEST(ExpertPlacementToolTest, WritesABalancedPlacementTheServerAccepts) {
  const std::string model_dir = testing::TestCheckpointDir("tiny-v3", false);
  absl::StatusOr<engine::ModelConfig> config = engine::LoadModelConfig(model_dir + "/config.json");
  ASSERT_TRUE(config.ok());
  const int64_t layers = config->num_hidden_layers, experts = config->n_routed_experts;
  const std::vector<bool> moe = engine::MoeLayerMask(*config);

  // A skewed scrape: Zipf(1.1) over a random expert order per layer.
  engine::testing::TestRng rng(32);
  std::string scrape;
  std::vector<int64_t> counts(static_cast<size_t>(layers * experts));
  for (int64_t l = 0; l < layers; ++l) {
    if (!moe[l]) continue;
    const std::vector<int32_t> order = rng.Permutation(experts);
    for (int64_t i = 0; i < experts; ++i) {
      const int64_t c = static_cast<int64_t>(50000 * std::pow(i + 1.0, -1.1));
      counts[l * experts + order[i]] = c;
      absl::StrAppend(&scrape, "moeserve_moe_expert_tokens_total{layer=\"", l, "\",expert=\"",
                      order[i], "\",model=\"tiny\"} ", c, "\n");
    }
  }
  const fs::path dir = fs::path(::testing::TempDir()) / absl::StrCat("placement_", getpid());
  fs::create_directories(dir);
  std::ofstream(dir / "metrics.txt") << scrape;
  const std::string command = absl::StrCat(
      MOESERVE_BINARY_DIR, "/tools/expert_placement/moeserve-expert-placement --model ", model_dir,
      " --counts ", (dir / "metrics.txt").string(), " --expert-parallel-size 4",
      " --redundant-experts 8 --out ", (dir / "placement.json").string(), " > /dev/null");
  ASSERT_EQ(std::system(command.c_str()), 0) << command;

  absl::StatusOr<engine::ExpertPlacement> placement =
      engine::LoadPlacementFile((dir / "placement.json").string(), moe);
  ASSERT_TRUE(placement.ok()) << placement.status();
  const engine::ExpertPlacement contiguous = engine::ContiguousPlacement(moe, experts, 4);
  for (int64_t l = 0; l < layers; ++l) {
    if (!moe[l]) continue;
    const absl::Span<const int64_t> layer(counts.data() + l * experts, experts);
    for (const auto& held : placement->layers[l].rank_experts) EXPECT_EQ(held.size(), 6u);
    EXPECT_LT(engine::MaxOverMeanLoad(placement->layers[l], layer),
              engine::MaxOverMeanLoad(contiguous.layers[l], layer))
        << "layer " << l;
  }

  // Bad invocations fail with a message.
  const std::string bad = absl::StrCat(
      MOESERVE_BINARY_DIR, "/tools/expert_placement/moeserve-expert-placement --model ", model_dir,
      " --counts ", (dir / "metrics.txt").string(), " --expert-parallel-size 3 --out ",
      (dir / "x.json").string(), " 2> /dev/null");
  EXPECT_NE(std::system(bad.c_str()), 0);
  fs::remove_all(dir);
}

}  // namespace
}  // namespace moeserve
