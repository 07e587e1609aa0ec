// The FP8 MoE layer on the GPU (moe_layer_cuda.h) against the CPU backend's MoeForward
// (engine/model/moe_layer.h) with activation quantization on, on random FP8 weights, through both
// expert GEMM paths (per-expert cuBLASLt and the grouped no-sync kernel): a small
// shape for each routing rule and a V2-Lite-like shape (hidden 2048, expert width 1408, 64
// experts, top-6, 2 shared experts), through the router and with forced skewed routings (every
// token to one expert, most experts empty; T = 1).
//
// Tolerance: relative Frobenius error ≤ 2e-2. Both sides quantize the same bf16 x identically,
// but the GPU rounds the gate_up output to bf16 before SiLU·mul and re-quantization while the
// CPU keeps fp32, so about 1 in 64 activations lands one E4M3 step (6-12 %) away; that and the
// bf16 expert outputs give ~1e-2. An indexing error gives O(1). The measured error is printed.
// Skips without a CUDA device.
#include "engine/ops/moe/moe_layer_cuda.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "engine/model/dense_mlp.h"
#include "engine/model/model_config.h"
#include "engine/model/moe_layer.h"
#include "engine/model/weights.h"
#include "engine/ops/dtype.h"
#include "engine/ops/linear/fp8_quant.h"
#include "engine/parallel/expert_placement.h"
#include "tests/testing/cuda_test_util.h"
#include "tests/testing/random.h"
#include "tests/testing/tensor_compare.h"

namespace moeserve::engine {
namespace {

using ::moeserve::engine::testing::CompareTensors;
using ::moeserve::engine::testing::CudaTest;
using ::moeserve::engine::testing::DeviceArray;
using ::moeserve::engine::testing::TestRng;

constexpr double kTolerance = 2e-2;

struct MoeShape {
  const char* name;
  int64_t hidden, width, experts, top_k, shared_experts;
  TopkMethod method = TopkMethod::kGreedy;
  int64_t groups = 1, topk_groups = 1;
  bool renormalize = false;
  double scaling = 1.0;
};

// The same random FP8 MoE as the CPU backend holds it and as the GPU layer uploads it.
struct TestMoe {
  ModelConfig config;
  MoeWeights cpu;
  MoeLayerHostWeights gpu;
};

// Uniform weights with variance 1/fan_in keep activations O(1) and are cheap to draw.
void MakeMlp(TestRng& rng, int64_t hidden, int64_t width, Fp8MlpHostWeights& gpu, MlpWeights& cpu) {
  auto linear = [&](int64_t rows, int64_t cols, Fp8BlockWeight& q, LinearWeight& l) {
    const double a = std::sqrt(3.0 / static_cast<double>(cols));
    const std::vector<float> w = rng.UniformFloats(static_cast<size_t>(rows * cols), -a, a);
    q = QuantizeFp8BlockWeight(w, rows, cols);
    l = LinearWeight{.out_features = rows,
                     .in_features = cols,
                     .weight = DequantizeFp8BlockWeight(q.fp8, q.scale_inv, rows, cols),
                     .fp8 = true};
  };
  linear(2 * width, hidden, gpu.gate_up, cpu.gate_up);
  linear(hidden, width, gpu.down, cpu.down);
}

std::unique_ptr<TestMoe> MakeMoe(TestRng& rng, const MoeShape& s) {
  auto moe = std::make_unique<TestMoe>();
  ModelConfig& c = moe->config;
  c.hidden_size = s.hidden;
  c.moe_intermediate_size = s.width;
  c.n_routed_experts = s.experts;
  c.n_shared_experts = s.shared_experts;
  c.num_experts_per_tok = s.top_k;
  c.topk_method = s.method;
  c.scoring_func = s.method == TopkMethod::kNoauxTc ? ScoringFunc::kSigmoid : ScoringFunc::kSoftmax;
  c.n_group = s.groups;
  c.topk_group = s.topk_groups;
  c.norm_topk_prob = s.renormalize;
  c.routed_scaling_factor = s.scaling;

  const std::vector<uint16_t> router =
      rng.NormalBf16(static_cast<size_t>(s.experts * s.hidden), 1.0 / std::sqrt(s.hidden));
  moe->gpu.router = router;
  moe->cpu.router.resize(router.size());
  for (size_t i = 0; i < router.size(); ++i) moe->cpu.router[i] = Bf16ToFloat(router[i]);
  if (s.method == TopkMethod::kNoauxTc) {
    moe->cpu.correction_bias = rng.NormalFloats(static_cast<size_t>(s.experts), 0.1);
  }
  moe->cpu.experts.resize(static_cast<size_t>(s.experts));
  moe->gpu.experts.resize(static_cast<size_t>(s.experts));
  for (int64_t e = 0; e < s.experts; ++e) {
    MakeMlp(rng, s.hidden, s.width, moe->gpu.experts[e], moe->cpu.experts[e]);
  }
  if (s.shared_experts > 0) {
    moe->gpu.shared.emplace();
    moe->cpu.shared.emplace();
    MakeMlp(rng, s.hidden, s.width * s.shared_experts, *moe->gpu.shared, *moe->cpu.shared);
  }
  moe->gpu.hidden = s.hidden;
  moe->gpu.expert_width = s.width;
  moe->gpu.shared_width = s.width * s.shared_experts;
  moe->gpu.routing = MakeRoutingParams(c, moe->cpu);  // correction_bias: host, copied at Create
  return moe;
}

constexpr MoeShape kSmallGreedy{"small greedy", 256, 128, 8, 2, 1};
constexpr MoeShape kSmallNoauxTc{"small noaux_tc",     384, 256, 16,   4,  1,
                                 TopkMethod::kNoauxTc, 4,   2,   true, 2.5};
constexpr MoeShape kV2Lite{"V2-Lite", 2048, 1408, 64, 6, 2};

// Built once: 64 experts of V2-Lite size take a few seconds to draw and quantize.
const TestMoe& V2LiteMoe() {
  static const TestMoe* const moe = [] {
    TestRng rng(testing::kDefaultTestSeed + 7);
    return MakeMoe(rng, kV2Lite).release();
  }();
  return *moe;
}

// Both expert GEMM paths run on every case.
constexpr MoeExpertGemm kModes[] = {MoeExpertGemm::kPerExpertCublasLt,
                                    MoeExpertGemm::kGroupedNoSync,
                                    MoeExpertGemm::kGroupedTensorCores};

const char* ModeName(MoeExpertGemm mode) {
  switch (mode) {
    case MoeExpertGemm::kGroupedNoSync:
      return "grouped";
    case MoeExpertGemm::kGroupedTensorCores:
      return "mma";
    default:
      return "cublaslt";
  }
}

double RelativeFrobenius(const std::vector<float>& actual, const std::vector<float>& reference) {
  return std::sqrt(CompareTensors(actual, reference).nmse);
}

class MoeLayerCudaTest : public CudaTest {
 protected:
  void SetUp() override {
    CudaTest::SetUp();
    if (IsSkipped()) return;
    auto context = CudaContext::Create({.arena_bytes = size_t{512} << 20});
    ASSERT_TRUE(context.ok()) << context.status();
    context_ = *std::move(context);
    auto gemm = CublasLtGemm::Create(*context_);
    ASSERT_TRUE(gemm.ok()) << gemm.status();
    gemm_ = *std::move(gemm);
  }

  std::unique_ptr<MoeLayerCuda> Upload(const TestMoe& moe) {
    auto layer = MoeLayerCuda::Create(*context_, *gemm_, moe.gpu);
    EXPECT_TRUE(layer.ok()) << layer.status();
    return layer.ok() ? *std::move(layer) : nullptr;
  }

  // Runs `run` (a Forward or ForwardRouted into `out`) and checks the arena use it promised.
  template <typename Run>
  std::vector<float> RunOnGpu(MoeLayerCuda& layer, int64_t tokens, int64_t hidden, Run run) {
    DeviceArray<uint16_t> out(static_cast<size_t>(tokens * hidden));
    out.Poison();
    context_->arena().Reset();
    const absl::Status s = run(out.data());
    EXPECT_TRUE(s.ok()) << s;
    EXPECT_TRUE(context_->Synchronize().ok());
    EXPECT_LE(context_->arena().used_bytes(), layer.ScratchBytes(tokens));
    return Bf16ToFloats(out.Download());
  }

  void CheckThroughRouter(const TestMoe& moe, const char* name, int64_t tokens, TestRng& rng) {
    SCOPED_TRACE(std::string(name) + " T=" + std::to_string(tokens));
    const int64_t hidden = moe.config.hidden_size;
    std::unique_ptr<MoeLayerCuda> layer = Upload(moe);
    ASSERT_NE(layer, nullptr);
    const std::vector<uint16_t> x = rng.NormalBf16(static_cast<size_t>(tokens * hidden));
    const std::vector<float> xf = Bf16ToFloats(x);
    std::vector<float> expected(xf.size());
    std::vector<int64_t> expert_counts(static_cast<size_t>(moe.config.n_routed_experts), 0);
    MoeForward(moe.config, moe.cpu, xf.data(), tokens, /*quantize_activations=*/true,
               expected.data(), expert_counts.data());
    int64_t empty = 0;
    for (const int64_t n : expert_counts) empty += n == 0;

    DeviceArray<uint16_t> x_dev(x);
    for (const MoeExpertGemm mode : kModes) {
      SCOPED_TRACE(ModeName(mode));
      layer->set_expert_gemm(mode);
      const std::vector<float> actual = RunOnGpu(*layer, tokens, hidden, [&](uint16_t* out) {
        return layer->Forward(x_dev.data(), tokens, out);
      });
      const double error = RelativeFrobenius(actual, expected);
      std::printf("%-16s %-8s T=%-4lld empty experts=%-3lld relative Frobenius error %.3g\n", name,
                  ModeName(mode), static_cast<long long>(tokens), static_cast<long long>(empty),
                  error);
      EXPECT_LE(error, kTolerance) << CompareTensors(actual, expected);
    }
  }

  // ForwardRouted with ids/weights given; the reference combines MlpForward of each expert
  // over all tokens (rows are independent, so that equals running it on the routed ones).
  void CheckRouted(const TestMoe& moe, const char* name, const std::vector<int32_t>& ids,
                   int64_t tokens, TestRng& rng) {
    SCOPED_TRACE(std::string(name) + " T=" + std::to_string(tokens));
    const int64_t hidden = moe.config.hidden_size, top_k = moe.config.num_experts_per_tok;
    std::unique_ptr<MoeLayerCuda> layer = Upload(moe);
    ASSERT_NE(layer, nullptr);
    const std::vector<uint16_t> x = rng.NormalBf16(static_cast<size_t>(tokens * hidden));
    const std::vector<float> xf = Bf16ToFloats(x);
    const std::vector<float> weights =
        rng.UniformFloats(static_cast<size_t>(tokens * top_k), 0.05, 1.0);

    std::vector<float> expected(xf.size(), 0.0f);
    if (moe.cpu.shared.has_value()) {
      MlpForward(*moe.cpu.shared, xf.data(), tokens, true, expected.data());
    }
    std::vector<float> expert_out(xf.size());
    std::vector<float> routed(xf.size(), 0.0f);
    for (int64_t e = 0; e < moe.config.n_routed_experts; ++e) {
      bool used = false;
      for (const int32_t id : ids) used = used || id == e;
      if (!used) continue;
      MlpForward(moe.cpu.experts[e], xf.data(), tokens, true, expert_out.data());
      for (int64_t t = 0; t < tokens; ++t) {
        for (int64_t s = 0; s < top_k; ++s) {
          if (ids[t * top_k + s] != e) continue;
          for (int64_t d = 0; d < hidden; ++d) {
            routed[t * hidden + d] += weights[t * top_k + s] * expert_out[t * hidden + d];
          }
        }
      }
    }
    for (size_t i = 0; i < expected.size(); ++i) expected[i] += routed[i];

    DeviceArray<uint16_t> x_dev(x);
    DeviceArray<int32_t> ids_dev(ids);
    DeviceArray<float> weights_dev(weights);
    for (const MoeExpertGemm mode : kModes) {
      SCOPED_TRACE(ModeName(mode));
      layer->set_expert_gemm(mode);
      const std::vector<float> actual = RunOnGpu(*layer, tokens, hidden, [&](uint16_t* out) {
        return layer->ForwardRouted(x_dev.data(), tokens, ids_dev.data(), weights_dev.data(), out);
      });
      const double error = RelativeFrobenius(actual, expected);
      std::printf("%-28s %-8s T=%-4lld relative Frobenius error %.3g\n", name, ModeName(mode),
                  static_cast<long long>(tokens), error);
      EXPECT_LE(error, kTolerance) << CompareTensors(actual, expected);
    }
  }

  std::unique_ptr<CudaContext> context_;
  std::unique_ptr<CublasLtGemm> gemm_;
};

TEST_F(MoeLayerCudaTest, SmallShapesMatchCpuMoeForEachRoutingRule) {
  TestRng rng;
  for (const MoeShape& shape : {kSmallGreedy, kSmallNoauxTc}) {
    const std::unique_ptr<TestMoe> moe = MakeMoe(rng, shape);
    for (const int64_t tokens : {int64_t{1}, int64_t{5}, int64_t{64}}) {
      CheckThroughRouter(*moe, shape.name, tokens, rng);
    }
  }
}

TEST_F(MoeLayerCudaTest, V2LiteShapeMatchesCpuMoe) {
  TestRng rng(testing::kDefaultTestSeed + 1);
  for (const int64_t tokens : {int64_t{1}, int64_t{37}, int64_t{128}}) {
    CheckThroughRouter(V2LiteMoe(), "V2-Lite", tokens, rng);
  }
}

TEST_F(MoeLayerCudaTest, SkewedRoutingMatchesCpu) {
  TestRng rng(testing::kDefaultTestSeed + 2);
  const TestMoe& moe = V2LiteMoe();
  const int64_t top_k = moe.config.num_experts_per_tok;
  // Every token: slot 0 → expert 63, the other slots → experts 0..4 shuffled; 58 experts empty.
  const int64_t tokens = 200;
  std::vector<int32_t> ids;
  for (int64_t t = 0; t < tokens; ++t) {
    ids.push_back(63);
    std::vector<int32_t> rest = {0, 1, 2, 3, 4};
    for (int64_t i = 4; i > 0; --i) std::swap(rest[i], rest[rng.Int(0, i)]);
    ids.insert(ids.end(), rest.begin(), rest.begin() + (top_k - 1));
  }
  CheckRouted(moe, "V2-Lite one hot expert", ids, tokens, rng);
  // One token: six experts with one row each (padded to 4), 58 empty.
  CheckRouted(moe, "V2-Lite T=1", {7, 40, 2, 63, 0, 31}, 1, rng);
  // Small shape: every token to the same two experts.
  TestRng small_rng(testing::kDefaultTestSeed + 3);
  const std::unique_ptr<TestMoe> small = MakeMoe(small_rng, kSmallGreedy);
  std::vector<int32_t> same(static_cast<size_t>(33 * 2));
  for (size_t i = 0; i < same.size(); ++i) same[i] = i % 2 == 0 ? 5 : 1;
  CheckRouted(*small, "small all to experts 5,1", same, 33, rng);
}

// GPU expert parallelism: every rank routes every token, computes only the pairs mapped to
// its slots (ExpertSlotsOnRank) and rank 0 alone adds the shared experts; the ranks' outputs
// summed must equal the whole layer, and every rank counts every routed token once.
TEST_F(MoeLayerCudaTest, ExpertParallelRanksSumToTheWholeLayer) {
  TestRng rng(testing::kDefaultTestSeed + 4);
  const std::unique_ptr<TestMoe> moe = MakeMoe(rng, kSmallNoauxTc);
  const int64_t experts = moe->config.n_routed_experts, hidden = moe->config.hidden_size;
  std::unique_ptr<MoeLayerCuda> whole = Upload(*moe);
  ASSERT_NE(whole, nullptr);
  for (const int ranks : {2, 4}) {
    // A skewed placement with two extra slots per rank: hot experts get replicas.
    std::vector<int64_t> counts(static_cast<size_t>(experts));
    for (int64_t e = 0; e < experts; ++e) counts[e] = 10000 / (1 + e);
    absl::StatusOr<ExpertPlacement> placement = ComputeBalancedPlacement(
        counts, {true}, experts, ranks, static_cast<int>(experts / ranks) + 2);
    ASSERT_TRUE(placement.ok()) << placement.status();
    const LayerPlacement& layer = placement->layers[0];
    std::vector<std::unique_ptr<MoeLayerCuda>> shards;
    std::vector<DeviceArray<int64_t>> shard_counts;
    for (int r = 0; r < ranks; ++r) {
      MoeLayerHostWeights host = moe->gpu;
      host.experts.clear();
      for (const int32_t e : layer.rank_experts[r]) host.experts.push_back(moe->gpu.experts[e]);
      host.local_slots = ExpertSlotsOnRank(layer, experts, r);
      if (r != 0) {
        host.shared.reset();
        host.shared_width = 0;
      }
      auto shard = MoeLayerCuda::Create(*context_, *gemm_, host);
      ASSERT_TRUE(shard.ok()) << shard.status();
      shard_counts.emplace_back(std::vector<int64_t>(static_cast<size_t>(experts), 0));
      (*shard)->set_expert_token_counts(shard_counts.back().data());
      shards.push_back(*std::move(shard));
    }
    DeviceArray<int64_t> whole_counts(std::vector<int64_t>(static_cast<size_t>(experts), 0));
    whole->set_expert_token_counts(whole_counts.data());
    for (const int64_t tokens : {int64_t{1}, int64_t{37}, int64_t{64}}) {
      SCOPED_TRACE(std::to_string(ranks) + " ranks, T=" + std::to_string(tokens));
      DeviceArray<uint16_t> x(rng.NormalBf16(static_cast<size_t>(tokens * hidden)));
      for (const MoeExpertGemm mode : kModes) {
        SCOPED_TRACE(ModeName(mode));
        whole->set_expert_gemm(mode);
        const std::vector<float> expected = RunOnGpu(*whole, tokens, hidden, [&](uint16_t* out) {
          return whole->Forward(x.data(), tokens, out);
        });
        std::vector<float> summed(expected.size(), 0.0f);
        for (auto& shard : shards) {
          shard->set_expert_gemm(mode);
          const std::vector<float> part = RunOnGpu(*shard, tokens, hidden, [&](uint16_t* out) {
            return shard->Forward(x.data(), tokens, out);
          });
          for (size_t i = 0; i < summed.size(); ++i) summed[i] += part[i];
        }
        // Each rank rounds its partial sum to bf16 once; the whole layer rounds once overall.
        EXPECT_LE(RelativeFrobenius(summed, expected), 1e-2) << CompareTensors(summed, expected);
      }
    }
    const std::vector<int64_t> reference = whole_counts.Download();
    for (int r = 0; r < ranks; ++r)
      EXPECT_EQ(shard_counts[r].Download(), reference) << "rank " << r;
    whole->set_expert_token_counts(nullptr);
  }
}

TEST_F(MoeLayerCudaTest, RejectsInconsistentWeights) {
  TestRng rng;
  std::unique_ptr<TestMoe> moe = MakeMoe(rng, kSmallGreedy);
  moe->gpu.experts[3].down.scale_inv.pop_back();
  auto layer = MoeLayerCuda::Create(*context_, *gemm_, moe->gpu);
  ASSERT_FALSE(layer.ok());
  EXPECT_EQ(layer.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(layer.status().message().find("experts[3].down.scale_inv"), std::string::npos)
      << layer.status();
}

}  // namespace
}  // namespace moeserve::engine
