// The weight-byte estimate the CPU memory plan uses, checked against what the loader really
// holds, for every test preset, BF16 and FP8 checkpoints, both kernel sets and online FP8.
#include "engine/model/weight_footprint.h"

#include <gtest/gtest.h>

#include <string>
#include <tuple>

#include "engine/model/weight_loader.h"
#include "tests/testing/test_checkpoints.h"

namespace moeserve::engine {
namespace {

using FootprintCase = std::tuple<std::string, bool, CpuKernels, bool>;

class WeightFootprintTest : public ::testing::TestWithParam<FootprintCase> {};

TEST_P(WeightFootprintTest, EstimateEqualsTheBytesTheLoaderHolds) {
  const auto& [preset, fp8_checkpoint, kernels, quantize] = GetParam();
  const std::string dir = testing::TestCheckpointDir(preset, fp8_checkpoint);
  absl::StatusOr<ModelConfig> config = LoadModelConfig(dir + "/config.json");
  ASSERT_TRUE(config.ok()) << config.status();
  absl::StatusOr<Checkpoint> checkpoint = Checkpoint::Open(dir);
  ASSERT_TRUE(checkpoint.ok()) << checkpoint.status();
  const LoadOptions options{.quantize_fp8 = quantize, .cpu_kernels = kernels};
  absl::StatusOr<ModelWeights> weights = LoadModelWeights(*checkpoint, *config, options);
  ASSERT_TRUE(weights.ok()) << weights.status();
  const int64_t held = WeightBytesHeld(*weights);
  EXPECT_GT(held, 0);
  EXPECT_EQ(EstimateWeightBytes(*checkpoint, *config, options), held);
}

INSTANTIATE_TEST_SUITE_P(
    Presets, WeightFootprintTest,
    ::testing::Combine(::testing::Values("tiny-v3", "tiny-v2-lite"), ::testing::Bool(),
                       ::testing::Values(CpuKernels::kFast, CpuKernels::kReference),
                       ::testing::Bool()),
    [](const ::testing::TestParamInfo<FootprintCase>& info) {
      std::string name = std::get<0>(info.param) + (std::get<1>(info.param) ? "_fp8" : "_bf16") +
                         (std::get<2>(info.param) == CpuKernels::kFast ? "_fast" : "_reference") +
                         (std::get<3>(info.param) ? "_quantized" : "");
      for (char& c : name) c = c == '-' ? '_' : c;
      return name;
    });

}  // namespace
}  // namespace moeserve::engine
