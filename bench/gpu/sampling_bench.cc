// What greedy sampling costs on the GPU, against the alternative of copying the logits to the
// host and running the CPU sampler there: device argmax + a copy of the token ids back, vs a
// copy of [batch, vocab] fp32 logits into pinned host memory. Vocabularies of V2-Lite (102400)
// and V3 (129280); batch 1 … 256. The difference is what each decode step saves by sampling
// greedily on the device (issue 7: "or a copy of logits to the host, with its measured cost").
//   moeserve-bench-gpu-sampling [--out bench/results/gpu_sampling.json]
#include <cuda_runtime_api.h>

#include <cstdio>
#include <optional>
#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "bench/gpu/gpu_bench_util.h"
#include "engine/cli/command_line.h"
#include "engine/ops/cuda/cuda_context.h"
#include "engine/ops/cuda/device_buffer.h"
#include "engine/sampling/argmax_cuda.h"

namespace moeserve::bench {
namespace {

int Main(int argc, char** argv) {
  CLI::App app("greedy sampling on device vs logits copy to host");
  std::string out = std::string(MOESERVE_SOURCE_DIR) + "/bench/results/gpu_sampling.json";
  app.add_option("--out", out, "JSON report path");
  if (std::optional<int> exit_status = moeserve::engine::ParseCommandLine(app, argc, argv)) {
    return *exit_status;
  }

  const std::unique_ptr<engine::CudaContext> context = MustCreateContext();
  const cudaStream_t stream = static_cast<cudaStream_t>(context->stream());
  constexpr int64_t kMaxBatch = 256;
  constexpr int64_t kMaxVocab = 129280;
  auto logits = engine::DeviceBuffer::Allocate(kMaxBatch * kMaxVocab * sizeof(float));
  auto ids = engine::DeviceBuffer::Allocate(kMaxBatch * sizeof(int32_t));
  if (!logits.ok() || !ids.ok()) {
    std::fprintf(stderr, "device allocation failed\n");
    return 1;
  }
  // Random logits: the argmax must scan real values, not a constant row.
  FillTiled(
      logits->data(), kMaxBatch * kMaxVocab * sizeof(float),
      [](std::mt19937& rng) { return static_cast<uint8_t>(rng() % 61); }, 7);
  void* host_logits = nullptr;
  int32_t* host_ids = nullptr;
  CheckCuda(cudaMallocHost(&host_logits, kMaxBatch * kMaxVocab * sizeof(float)), "cudaMallocHost");
  CheckCuda(cudaMallocHost(reinterpret_cast<void**>(&host_ids), kMaxBatch * sizeof(int32_t)),
            "cudaMallocHost");

  nlohmann::json report = GpuMeasurementContext(context->device());
  report["benchmark"] = "gpu_sampling";
  std::printf("\n%-8s %-6s %16s %20s %10s\n", "vocab", "batch", "argmax+ids (us)",
              "logits D2H (us)", "ratio");
  for (const int64_t vocab : {int64_t{102400}, kMaxVocab}) {
    for (const int64_t batch : {1, 8, 32, 64, 128, 256}) {
      const double argmax_ms = TimeMs(stream, 3, 50, [&] {
        CheckCuda(static_cast<cudaError_t>(engine::LaunchArgmaxF32(
                      logits->as<float>(), batch, vocab, ids->as<int32_t>(), stream)),
                  "LaunchArgmaxF32");
        CheckCuda(cudaMemcpyAsync(host_ids, ids->data(), batch * sizeof(int32_t),
                                  cudaMemcpyDeviceToHost, stream),
                  "cudaMemcpyAsync");
      });
      const double copy_ms = TimeMs(stream, 3, 50, [&] {
        CheckCuda(cudaMemcpyAsync(host_logits, logits->data(), batch * vocab * sizeof(float),
                                  cudaMemcpyDeviceToHost, stream),
                  "cudaMemcpyAsync");
      });
      std::printf("%-8ld %-6ld %16.1f %20.1f %9.1fx\n", static_cast<long>(vocab),
                  static_cast<long>(batch), argmax_ms * 1e3, copy_ms * 1e3, copy_ms / argmax_ms);
      report["results"].push_back({{"vocab", vocab},
                                   {"batch", batch},
                                   {"device_argmax_us", argmax_ms * 1e3},
                                   {"logits_to_host_us", copy_ms * 1e3}});
    }
  }
  cudaFreeHost(host_logits);
  cudaFreeHost(host_ids);
  return WriteReport(out, report) ? 0 : 1;
}

}  // namespace
}  // namespace moeserve::bench

int main(int argc, char** argv) { return moeserve::bench::Main(argc, argv); }
