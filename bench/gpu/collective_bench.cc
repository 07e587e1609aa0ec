// What the GPU group's collectives cost per step: NCCL all-reduce of [tokens, hidden] bf16 on
// every local GPU (one thread and one stream each, the communicator queued on that stream as
// the model uses it), for DeepSeek-V2-Lite's and V3's hidden sizes. Prints the time per
// all-reduce, the algorithm bandwidth (bytes / time) and the bus bandwidth (× 2(W−1)/W, the
// nccl-tests convention), and what that adds to one V3 step: 61 layers × 2 all-reduces with
// tensor parallelism (attention + MLP/MoE), × 1 per MoE layer (58) with expert parallelism
// alone. Needs at least 2 GPUs; exits 0 with the reason otherwise.
//   moeserve-bench-gpu-collectives [--out bench/results/gpu_collectives.json]
#include <cuda_runtime_api.h>

#include <cstdio>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "CLI/CLI.hpp"
#include "bench/gpu/gpu_bench_util.h"
#include "engine/cli/command_line.h"
#include "engine/ops/cuda/cuda_context.h"
#include "engine/ops/cuda/device_buffer.h"
#include "engine/parallel/nccl_communicator.h"

namespace moeserve::bench {
namespace {

struct Row {
  int64_t hidden;
  int64_t tokens;
  double ms;
};

int Main(int argc, char** argv) {
  CLI::App app("NCCL all-reduce per step on the local GPUs");
  std::string out = std::string(MOESERVE_SOURCE_DIR) + "/bench/results/gpu_collectives.json";
  app.add_option("--out", out, "JSON report path");
  if (std::optional<int> exit_status = moeserve::engine::ParseCommandLine(app, argc, argv)) {
    return *exit_status;
  }

  int world = 0;
  CheckCuda(cudaGetDeviceCount(&world), "cudaGetDeviceCount");
  if (world < 2) {
    std::printf("moeserve-bench-gpu-collectives needs at least 2 GPUs; this machine has %d\n",
                world);
    return 0;
  }
  absl::StatusOr<std::string> id = engine::NewNcclUniqueId();
  MustOk(id.status());
  const std::vector<int64_t> hiddens = {2048, 7168};
  const std::vector<int64_t> token_counts = {1, 8, 32, 64, 128, 256, 1024, 4096};
  std::vector<Row> rows;  // rank 0's timings
  std::unique_ptr<engine::CudaContext> info_context;
  std::vector<std::thread> threads;
  for (int rank = 0; rank < world; ++rank) {
    threads.emplace_back([&, rank] {
      absl::StatusOr<std::unique_ptr<engine::CudaContext>> context =
          engine::CudaContext::Create({.device_index = rank, .arena_bytes = 0});
      MustOk(context.status());
      const cudaStream_t stream = static_cast<cudaStream_t>((*context)->stream());
      auto comm = engine::NcclCommunicator::Create(
          {.rank = rank, .world_size = world, .device = rank, .unique_id = *id, .stream = stream});
      MustOk(comm.status());
      for (const int64_t hidden : hiddens) {
        for (const int64_t tokens : token_counts) {
          const int64_t count = tokens * hidden;
          absl::StatusOr<engine::DeviceBuffer> data =
              engine::DeviceBuffer::Allocate(static_cast<size_t>(count) * 2);
          MustOk(data.status());
          MustOk(data->Fill(0x3c));  // a finite bf16 pattern
          const double ms = TimeMs(stream, 5, 50, [&] {
            MustOk((*comm)->AllReduceSum(data->data(), count, engine::CommDataType::kBfloat16));
          });
          if (rank == 0) rows.push_back({hidden, tokens, ms});
        }
      }
      comm->reset();
      if (rank == 0) info_context = *std::move(context);
    });
  }
  for (std::thread& t : threads) t.join();

  nlohmann::json report = GpuMeasurementContext(info_context->device());
  report["benchmark"] = "gpu_collectives";
  report["world_size"] = world;
  const double bus_factor = 2.0 * (world - 1) / world;
  std::printf("\n%d GPUs, bf16 all-reduce (NCCL, stream-ordered as in the model)\n", world);
  std::printf("%-7s %-7s %12s %10s %12s %12s %16s %16s\n", "hidden", "tokens", "bytes", "us",
              "algbw GB/s", "busbw GB/s", "V3 step TP (ms)", "V3 step EP (ms)");
  for (const Row& r : rows) {
    const double bytes = static_cast<double>(r.tokens * r.hidden * 2);
    const double algbw = bytes / (r.ms * 1e-3) / 1e9;
    const double tp_step = 61 * 2 * r.ms, ep_step = 58 * r.ms;
    std::printf("%-7lld %-7lld %12.0f %10.1f %12.1f %12.1f %16.2f %16.2f\n",
                static_cast<long long>(r.hidden), static_cast<long long>(r.tokens), bytes,
                r.ms * 1e3, algbw, algbw * bus_factor, tp_step, ep_step);
    report["results"].push_back({{"hidden", r.hidden},
                                 {"tokens", r.tokens},
                                 {"bytes", bytes},
                                 {"ms", r.ms},
                                 {"algbw_gb_per_s", algbw},
                                 {"busbw_gb_per_s", algbw * bus_factor},
                                 {"v3_step_ms_tensor_parallel", tp_step},
                                 {"v3_step_ms_expert_parallel", ep_step}});
  }
  return WriteReport(out, report) ? 0 : 1;
}

}  // namespace
}  // namespace moeserve::bench

int main(int argc, char** argv) { return moeserve::bench::Main(argc, argv); }
