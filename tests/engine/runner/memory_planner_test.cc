// PlanKvCache against a hand computation of the same rule, and its refusals.
#include "engine/runner/memory_planner.h"

#include <gtest/gtest.h>

#include <random>

namespace moeserve::engine {
namespace {

constexpr int64_t kGiB = int64_t{1} << 30;

TEST(PlanKvCacheTest, GivesTheKvPoolWhatTheBudgetLeaves) {
  std::mt19937_64 rng(42);
  for (int trial = 0; trial < 200; ++trial) {
    const int64_t total = std::uniform_int_distribution<int64_t>(16, 141)(rng) * kGiB;
    const int64_t used = std::uniform_int_distribution<int64_t>(0, total / 2)(rng);
    const double utilization = std::uniform_real_distribution<double>(0.6, 1.0)(rng);
    // V2-Lite: 27 layers × 64 × 576 × 2 bytes.
    const int64_t per_block = 27 * 64 * 576 * 2;
    const KvMemoryPlanInput input{.total_device_bytes = total,
                                  .used_device_bytes = used,
                                  .gpu_memory_utilization = utilization,
                                  .kv_bytes_per_block = per_block,
                                  .max_model_len = 4096};
    const int64_t budget = static_cast<int64_t>(static_cast<double>(total) * utilization);
    const int64_t free_for_kv = budget - used - input.reserve_bytes;
    absl::StatusOr<KvMemoryPlan> plan = PlanKvCache(input);
    if (free_for_kv / per_block < 64) {
      EXPECT_EQ(plan.status().code(), absl::StatusCode::kResourceExhausted);
      continue;
    }
    ASSERT_TRUE(plan.ok()) << plan.status();
    EXPECT_EQ(plan->num_blocks, free_for_kv / per_block);
    EXPECT_EQ(plan->capacity_tokens, plan->num_blocks * 64);
    EXPECT_LE(used + input.reserve_bytes + plan->kv_bytes, budget);
    EXPECT_GT(used + input.reserve_bytes + plan->kv_bytes + per_block, budget);
    EXPECT_NE(plan->summary.find(std::to_string(plan->capacity_tokens) + " tokens"),
              std::string::npos)
        << plan->summary;
  }
}

TEST(PlanKvCacheTest, RefusesAUtilizationOutsideZeroToOne) {
  for (double bad : {0.0, -0.5, 1.01, std::nan("")}) {
    absl::StatusOr<KvMemoryPlan> plan = PlanKvCache({.total_device_bytes = 80 * kGiB,
                                                     .gpu_memory_utilization = bad,
                                                     .kv_bytes_per_block = 1 << 20,
                                                     .max_model_len = 4096});
    ASSERT_EQ(plan.status().code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_NE(plan.status().message().find("--gpu-memory-utilization"), absl::string_view::npos);
  }
}

TEST(PlanKvCacheTest, SaysWhatToChangeWhenOneSequenceDoesNotFit) {
  absl::StatusOr<KvMemoryPlan> plan = PlanKvCache({.total_device_bytes = 80 * kGiB,
                                                   .used_device_bytes = 70 * kGiB,
                                                   .gpu_memory_utilization = 0.9,
                                                   .kv_bytes_per_block = 1 << 20,
                                                   .max_model_len = 163840});
  ASSERT_EQ(plan.status().code(), absl::StatusCode::kResourceExhausted);
  const std::string message(plan.status().message());
  EXPECT_NE(message.find("--max-model-len 163840"), std::string::npos) << message;
  EXPECT_NE(message.find("--gpu-memory-utilization"), std::string::npos) << message;
}

}  // namespace
}  // namespace moeserve::engine
