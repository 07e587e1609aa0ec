// The FP8 MoE layer on the GPU (engine/ops/moe/moe_layer_cuda.h) at the V2-Lite shape (hidden
// 2048, 64 experts of width 1408, top-6, 2 shared experts) for T = 1 … 4096 tokens: time per
// Forward (router, permutation, expert FP8 GEMMs, fused SiLU·mul+requant, un-permute, shared
// experts) with the per-expert cuBLASLt loop, the tensor-core grouped kernel (mma) and (T ≤ 256)
// the CUDA-core grouped kernel, against
// the memory floor, the bytes of the weights a step must
// read (router, shared experts, and the experts uniform random routing touches on average,
// E·(1 − (1 − k/E)^T)) over the measured device-to-device copy bandwidth.
//   moeserve-bench-gpu-moe [--out bench/results/gpu_moe_layer.json] [--max-tokens 4096]
#include <cuda_runtime_api.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "bench/gpu/gpu_bench_util.h"
#include "bench/gpu/random_weights.h"
#include "engine/cli/command_line.h"
#include "engine/ops/cuda/cuda_context.h"
#include "engine/ops/cuda/device_buffer.h"
#include "engine/ops/dtype.h"
#include "engine/ops/linear/gemm_cublaslt.h"
#include "engine/ops/moe/moe_layer_cuda.h"

namespace moeserve::bench {
namespace {

constexpr int64_t kHidden = 2048, kWidth = 1408, kExperts = 64, kTopK = 6, kShared = 2;

int Main(int argc, char** argv) {
  CLI::App app("FP8 MoE layer on the GPU at the V2-Lite shape");
  std::string out = std::string(MOESERVE_SOURCE_DIR) + "/bench/results/gpu_moe_layer.json";
  int64_t max_tokens = 4096;
  int iterations = 20;
  app.add_option("--out", out, "JSON report path");
  app.add_option("--max-tokens", max_tokens, "largest T");
  app.add_option("--iterations", iterations, "timed calls per measurement");
  if (std::optional<int> exit_status = moeserve::engine::ParseCommandLine(app, argc, argv)) {
    return *exit_status;
  }

  std::mt19937 rng(20250611);
  engine::MoeLayerHostWeights host;
  host.hidden = kHidden;
  host.expert_width = kWidth;
  host.shared_width = kShared * kWidth;
  host.routing.rule = engine::RoutingRule::kSoftmaxGreedy;
  host.routing.num_experts = kExperts;
  host.routing.top_k = kTopK;
  host.router.resize(static_cast<size_t>(kExperts * kHidden));
  std::normal_distribution<float> normal(0.0f, 1.0f / std::sqrt(static_cast<float>(kHidden)));
  for (uint16_t& r : host.router) r = engine::FloatToBf16(normal(rng));
  for (int64_t e = 0; e < kExperts; ++e) host.experts.push_back(RandomFp8Mlp(kWidth, kHidden, rng));
  host.shared = RandomFp8Mlp(kShared * kWidth, kHidden, rng);

  auto context = engine::CudaContext::Create({.arena_bytes = 0});
  MustOk(context.status());
  auto gemm = engine::CublasLtGemm::Create(**context);
  MustOk(gemm.status());
  auto layer = engine::MoeLayerCuda::Create(**context, **gemm, host);
  MustOk(layer.status());
  // The arena is sized from the layer's own accounting once the layer exists.
  MustOk((*context)->ReserveArena((*layer)->ScratchBytes(max_tokens)));
  const cudaStream_t stream = static_cast<cudaStream_t>((*context)->stream());
  std::printf("device: %s\n", (*context)->device().ToString().c_str());

  const double bandwidth = MeasureCopyBandwidth(stream);

  auto x = engine::DeviceBuffer::Allocate(static_cast<size_t>(max_tokens * kHidden) * 2);
  auto y = engine::DeviceBuffer::Allocate(static_cast<size_t>(max_tokens * kHidden) * 2);
  MustOk(x.status());
  MustOk(y.status());
  FillTiled(
      x->data(), x->size_bytes(),
      [](std::mt19937& r) {
        static bool low = true;
        low = !low;  // little-endian bf16: random low byte, then sign + exponent near 1.0
        return low ? static_cast<uint8_t>(0x3C + (r() & 3) + ((r() & 1) << 7))
                   : static_cast<uint8_t>(r());
      },
      7);

  const double expert_bytes = 3.0 * kWidth * kHidden;  // fp8 gate_up + down (scales ~0.01 %)
  const double fixed_bytes = 3.0 * kShared * kWidth * kHidden + 2.0 * kExperts * kHidden;
  nlohmann::json report = GpuMeasurementContext((*context)->device());
  report["benchmark"] = "gpu_moe_layer_v2_lite";
  report["iterations"] = iterations;
  report["copy_bandwidth_gbps"] = bandwidth / 1e9;
  std::printf("copy bandwidth %.0f GB/s\n\n%6s %12s %10s %10s %8s %10s %8s %12s %8s\n",
              bandwidth / 1e9, "T", "experts hit", "floor us", "loop us", "ratio", "mma us",
              "ratio", "grouped us", "ratio");
  for (int64_t tokens = 1; tokens <= max_tokens; tokens *= 2) {
    auto time_mode = [&](engine::MoeExpertGemm mode) {
      (*layer)->set_expert_gemm(mode);
      return TimeMs(stream, 3, iterations, [&] {
        (*context)->arena().Reset();
        MustOk((*layer)->Forward(x->as<uint16_t>(), tokens, y->as<uint16_t>()));
      });
    };
    const double loop_ms = time_mode(engine::MoeExpertGemm::kPerExpertCublasLt);
    const double mma_ms = time_mode(engine::MoeExpertGemm::kGroupedTensorCores);
    // The CUDA-core grouped kernel is for decode batches; past 256 tokens it only loses.
    const double grouped_ms =
        tokens <= 256 ? time_mode(engine::MoeExpertGemm::kGroupedNoSync) : 0.0;
    const double hit =
        kExperts * (1.0 - std::pow(1.0 - static_cast<double>(kTopK) / kExperts, tokens));
    const double floor_ms = (fixed_bytes + hit * expert_bytes) / bandwidth * 1e3;
    std::printf("%6lld %12.1f %10.1f %10.1f %8.2f %10.1f %8.2f", static_cast<long long>(tokens),
                hit, floor_ms * 1e3, loop_ms * 1e3, loop_ms / floor_ms, mma_ms * 1e3,
                mma_ms / floor_ms);
    nlohmann::json row = {{"tokens", tokens},
                          {"expected_experts_hit", hit},
                          {"floor_us", floor_ms * 1e3},
                          {"per_expert_cublaslt_us", loop_ms * 1e3},
                          {"per_expert_cublaslt_ratio_to_floor", loop_ms / floor_ms},
                          {"grouped_mma_us", mma_ms * 1e3},
                          {"grouped_mma_ratio_to_floor", mma_ms / floor_ms}};
    if (grouped_ms > 0.0) {
      std::printf(" %12.1f %8.2f\n", grouped_ms * 1e3, grouped_ms / floor_ms);
      row["grouped_us"] = grouped_ms * 1e3;
      row["grouped_ratio_to_floor"] = grouped_ms / floor_ms;
    } else {
      std::printf(" %12s %8s\n", "-", "-");
    }
    report["results"].push_back(row);
  }
  return WriteReport(out, report) ? 0 : 1;
}

}  // namespace
}  // namespace moeserve::bench

int main(int argc, char** argv) { return moeserve::bench::Main(argc, argv); }
