// The CPU memory plan: the arithmetic, its refusal message, overflow-proof sums, this machine's
// free memory, and the whole check on a real checkpoint.
#include "engine/runner/cpu_memory_plan.h"

#include <gtest/gtest.h>

#include <limits>
#include <random>

#include "absl/strings/str_cat.h"
#include "engine/io/checkpoint.h"
#include "engine/model/weight_footprint.h"
#include "engine/runner/memory_planner.h"
#include "tests/testing/test_checkpoints.h"

namespace moeserve::engine {
namespace {

constexpr int64_t kGiB = int64_t{1} << 30;

TEST(CpuMemoryPlanTest, FitsWhenTheSumIsBelowWhatIsAvailable) {
  std::mt19937_64 rng(7);
  std::uniform_int_distribution<int64_t> size(1, 4 * kGiB);
  for (int trial = 0; trial < 100; ++trial) {
    const CpuMemoryPlanInput in{.weight_bytes = size(rng),
                                .kv_cache_bytes = size(rng),
                                .activation_bytes = size(rng),
                                .host = {.available_bytes = size(rng) * 4, .source = "test"},
                                .reserve_bytes = size(rng)};
    const int64_t sum =
        in.weight_bytes + in.kv_cache_bytes + in.activation_bytes + in.reserve_bytes;
    absl::StatusOr<CpuMemoryPlan> plan = PlanCpuMemory(in);
    if (sum <= in.host.available_bytes) {
      ASSERT_TRUE(plan.ok()) << plan.status();
      EXPECT_EQ(plan->needed_bytes, sum);
      EXPECT_NE(
          plan->summary.find("of " + FormatGiB(in.host.available_bytes) + " available (test)"),
          std::string::npos)
          << plan->summary;
    } else {
      ASSERT_EQ(plan.status().code(), absl::StatusCode::kResourceExhausted);
      const std::string message(plan.status().message());
      EXPECT_NE(message.find(absl::StrCat("needs ", sum, " bytes")), std::string::npos) << message;
      EXPECT_NE(message.find(absl::StrCat(in.host.available_bytes, " bytes")), std::string::npos)
          << message;
      EXPECT_NE(message.find("--kv-cache-tokens"), std::string::npos) << message;
    }
  }
}

TEST(CpuMemoryPlanTest, AHugeKvCacheSaturatesInsteadOfWrappingAround) {
  const int64_t max = std::numeric_limits<int64_t>::max();
  absl::StatusOr<CpuMemoryPlan> plan =
      PlanCpuMemory({.weight_bytes = kGiB,
                     .kv_cache_bytes = max,
                     .activation_bytes = kGiB,
                     .host = {.available_bytes = 16 * kGiB, .source = "test"}});
  ASSERT_EQ(plan.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(plan.status().message().find(absl::StrCat("needs ", max, " bytes")), std::string::npos)
      << plan.status();
}

TEST(CpuMemoryPlanTest, HostMemoryIsReadFromThisMachine) {
  absl::StatusOr<HostMemory> host = ReadHostMemory();
  ASSERT_TRUE(host.ok()) << host.status();
  EXPECT_GT(host->available_bytes, 0);
  EXPECT_FALSE(host->source.empty());
}

TEST(CpuMemoryPlanTest, ActivationsGrowWithTokensSequencesAndContext) {
  const std::string dir = testing::TestCheckpointDir("tiny-v3", false);
  absl::StatusOr<ModelConfig> config = LoadModelConfig(dir + "/config.json");
  ASSERT_TRUE(config.ok()) << config.status();
  const int64_t base = EstimateCpuActivationBytes(*config, 512, 8, 1024);
  EXPECT_GT(base, 512 * config->hidden_size * 4);
  EXPECT_GT(EstimateCpuActivationBytes(*config, 1024, 8, 1024), base);
  EXPECT_GT(EstimateCpuActivationBytes(*config, 512, 16, 1024), base);
  EXPECT_GT(EstimateCpuActivationBytes(*config, 512, 8, 2048), base);
}

TEST(CpuMemoryPlanTest, ModelPlanCountsTheCheckpointsWeightsAndEveryRanksKvCache) {
  const std::string dir = testing::TestCheckpointDir("tiny-v3", true);
  absl::StatusOr<ModelConfig> config = LoadModelConfig(dir + "/config.json");
  ASSERT_TRUE(config.ok()) << config.status();
  absl::StatusOr<Checkpoint> checkpoint = Checkpoint::Open(dir);
  ASSERT_TRUE(checkpoint.ok()) << checkpoint.status();
  const LoadOptions load{};
  const int64_t weights = EstimateWeightBytes(*checkpoint, *config, load);
  CpuServingShape shape{.num_kv_blocks = 16,
                        .kv_bytes_per_block = 1 << 20,
                        .max_num_batched_tokens = 256,
                        .max_num_seqs = 4,
                        .max_model_len = 1024};
  absl::StatusOr<CpuMemoryPlan> one = PlanCpuModelMemory(dir, *config, load, shape);
  ASSERT_TRUE(one.ok()) << one.status();
  const int64_t activations = EstimateCpuActivationBytes(*config, 256, 4, 1024);
  EXPECT_EQ(one->needed_bytes, weights + 16 * (1 << 20) + activations + (int64_t{512} << 20));
  shape.world_size = 2;
  absl::StatusOr<CpuMemoryPlan> two = PlanCpuModelMemory(dir, *config, load, shape);
  ASSERT_TRUE(two.ok()) << two.status();
  EXPECT_EQ(two->needed_bytes - one->needed_bytes, 16 * (1 << 20) + activations);
  EXPECT_EQ(PlanCpuModelMemory("/nonexistent/model", *config, load, shape).status().code(),
            absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace moeserve::engine
