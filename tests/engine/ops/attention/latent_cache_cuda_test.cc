// Tests of the CUDA latent-cache kernels against the CPU ops on the same bf16-valued inputs:
// - LaunchWriteLatentCacheFusedBf16 vs RmsNormCpu(c_kv) → ApplyRopeInterleavedCpu(k_pe) →
//   WriteLatentCacheCpu, with V3's YaRN table, random positions, shuffled slots, padding
//   (negative) and out-of-range slots skipped, and a kv_a row stride wider than 576; every slot
//   not written must keep its previous contents;
// - LaunchGatherLatentCacheBf16 vs GatherLatentCacheCpu through a shuffled block table, with a
//   length that ends mid-page; the output is NaN-poisoned first.
// Skips, saying why, without a CUDA device.
#include "engine/ops/attention/latent_cache_cuda.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <vector>

#include "absl/types/span.h"
#include "engine/ops/attention/latent_cache.h"
#include "engine/ops/dtype.h"
#include "engine/ops/norm/rms_norm.h"
#include "engine/ops/rope/rope.h"
#include "tests/testing/cuda_test_util.h"
#include "tests/testing/random.h"
#include "tests/testing/tensor_compare.h"

namespace moeserve::engine {
namespace {

using ::moeserve::engine::testing::CudaTest;
using ::moeserve::engine::testing::DeviceArray;
using ::moeserve::engine::testing::LaunchedOk;
using ::moeserve::engine::testing::MaxRelErrorAtMost;
using ::moeserve::engine::testing::TestRng;

constexpr int64_t kKvDim = 576;
constexpr int64_t kRank = 512;
constexpr int64_t kRope = 64;
constexpr int64_t kPageSize = 64;

using LatentCacheCudaTest = CudaTest;

TEST_F(LatentCacheCudaTest, FusedWriteMatchesNormRopeAndScatterOnCpu) {
  TestRng rng;
  const int64_t num_tokens = 70, stride = kKvDim + 64, num_pages = 4;
  const int64_t num_slots = num_pages * kPageSize;
  const float eps = 1e-6f;
  const std::vector<uint16_t> kv_a = rng.NormalBf16(num_tokens * stride, 2.0);
  std::vector<uint16_t> norm_weight(kRank);
  for (uint16_t& w : norm_weight) w = FloatToBf16(static_cast<float>(rng.Uniform(0.5, 1.5)));
  const RopeTable table = MakeRopeTable(kRope, 10000.0,
                                        YarnParams{.factor = 40,
                                                   .original_max_position_embeddings = 4096,
                                                   .mscale = 1.0,
                                                   .mscale_all_dim = 1.0});
  std::vector<int32_t> positions(num_tokens);
  for (int32_t& p : positions) p = static_cast<int32_t>(rng.Int(0, 100000));
  const std::vector<int32_t> order = rng.Permutation(num_slots);
  std::vector<int64_t> slots(num_tokens);
  for (int64_t t = 0; t < num_tokens; ++t) slots[t] = order[t];
  slots[3] = -1;          // padding
  slots[10] = num_slots;  // out of range: skipped, not a fault
  const std::vector<uint16_t> pages_before = rng.NormalBf16(num_slots * kKvDim);

  // CPU: the MLA layer's sequence on the bf16 values (mla_layer.cc).
  std::vector<float> latent(num_tokens * kKvDim);
  const std::vector<float> kv_a_f = Bf16ToFloats(kv_a);
  for (int64_t t = 0; t < num_tokens; ++t) {
    std::copy_n(kv_a_f.begin() + t * stride, kKvDim, latent.begin() + t * kKvDim);
  }
  const std::vector<float> weight_f = Bf16ToFloats(norm_weight);
  for (int64_t t = 0; t < num_tokens; ++t) {
    absl::Span<float> c_kv(latent.data() + t * kKvDim, kRank);
    RmsNormCpu(c_kv, weight_f, eps, 1, c_kv);
  }
  ApplyRopeInterleavedCpu(table, positions.data(), num_tokens, 1, kKvDim, 0, latent.data() + kRank);
  std::vector<float> expected = Bf16ToFloats(pages_before);
  std::vector<int64_t> cpu_slots = slots;
  cpu_slots[10] = -1;  // the CPU op has no bound; the GPU op skips the out-of-range slot
  WriteLatentCacheCpu(latent.data(), cpu_slots.data(), num_tokens, kKvDim, expected.data());

  DeviceArray<uint16_t> kv_a_d(kv_a), weight_d(norm_weight), pages_d(pages_before);
  DeviceArray<float> inv_freq_d(table.inv_freq);
  DeviceArray<int32_t> positions_d(positions);
  DeviceArray<int64_t> slots_d(slots);
  ASSERT_TRUE(LaunchedOk(LaunchWriteLatentCacheFusedBf16(
      kv_a_d.data(), stride, weight_d.data(), eps, inv_freq_d.data(), table.attention_scaling,
      positions_d.data(), slots_d.data(), num_tokens, num_slots, pages_d.data(), nullptr)));
  const std::vector<float> actual = Bf16ToFloats(pages_d.Download());
  // c_kv is O(1) after the norm, k_pe O(2): bf16 rounding of the outputs dominates.
  EXPECT_TRUE(MaxRelErrorAtMost(actual, expected, 1e-2));
  // Slots no token targets are bit-identical to before.
  std::vector<bool> written(num_slots, false);
  for (int64_t s : cpu_slots) {
    if (s >= 0) written[s] = true;
  }
  const std::vector<uint16_t> after = pages_d.Download();
  for (int64_t s = 0; s < num_slots; ++s) {
    if (written[s]) continue;
    for (int64_t d = 0; d < kKvDim; ++d) {
      ASSERT_EQ(after[s * kKvDim + d], pages_before[s * kKvDim + d]) << "slot " << s;
    }
  }
}

TEST_F(LatentCacheCudaTest, GatherFollowsTheBlockTable) {
  TestRng rng(testing::kDefaultTestSeed + 1);
  const int64_t num_pages = 6, num_tokens = 3 * kPageSize + 17;
  const std::vector<uint16_t> pages = rng.NormalBf16(num_pages * kPageSize * kKvDim);
  const std::vector<int32_t> order = rng.Permutation(num_pages);
  const std::vector<int32_t> block_table(order.begin(), order.begin() + 4);
  std::vector<float> expected(num_tokens * kKvDim);
  const std::vector<float> pages_f = Bf16ToFloats(pages);
  GatherLatentCacheCpu(pages_f.data(), block_table.data(), num_tokens, kPageSize, kKvDim,
                       expected.data());

  DeviceArray<uint16_t> pages_d(pages), out_d(num_tokens * kKvDim);
  DeviceArray<int32_t> table_d(block_table);
  out_d.Poison();
  ASSERT_TRUE(LaunchedOk(LaunchGatherLatentCacheBf16(pages_d.data(), num_pages, table_d.data(),
                                                     num_tokens, out_d.data(), nullptr)));
  EXPECT_TRUE(MaxRelErrorAtMost(Bf16ToFloats(out_d.Download()), expected, 0.0));
}

}  // namespace
}  // namespace moeserve::engine
