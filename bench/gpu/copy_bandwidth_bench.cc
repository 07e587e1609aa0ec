// Device-to-device copy bandwidth (cudaMemcpyAsync), the roofline for memory-bound kernels
// such as decode-time GEMMs. Reports GB/s counting bytes read plus bytes written (as the
// device notes do) and the copied bytes alone.
//   moeserve-bench-gpu-copy [--out bench/results/gpu_copy_bandwidth.json]
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

namespace moeserve::bench {
namespace {

int Main(int argc, char** argv) {
  CLI::App app("D2D copy bandwidth");
  std::string out = std::string(MOESERVE_SOURCE_DIR) + "/bench/results/gpu_copy_bandwidth.json";
  app.add_option("--out", out, "JSON report path");
  if (std::optional<int> exit_status = moeserve::engine::ParseCommandLine(app, argc, argv)) {
    return *exit_status;
  }

  const std::unique_ptr<engine::CudaContext> context = MustCreateContext();
  const cudaStream_t stream = static_cast<cudaStream_t>(context->stream());
  struct Row {
    size_t bytes;
    double ms;
  };
  std::vector<Row> rows;
  for (const size_t mib : {size_t{16}, size_t{64}, size_t{256}, size_t{1024}, size_t{4096}}) {
    const size_t bytes = mib << 20;
    auto src = engine::DeviceBuffer::Allocate(bytes);
    auto dst = engine::DeviceBuffer::Allocate(bytes);
    if (!src.ok() || !dst.ok()) break;
    CheckCuda(cudaMemset(src->data(), 1, bytes), "cudaMemset");
    const double ms = TimeMs(stream, 3, 20, [&] {
      CheckCuda(cudaMemcpyAsync(dst->data(), src->data(), bytes, cudaMemcpyDeviceToDevice, stream),
                "cudaMemcpyAsync");
    });
    rows.push_back({bytes, ms});
  }

  nlohmann::json report = GpuMeasurementContext(context->device());
  report["benchmark"] = "gpu_copy_bandwidth";
  std::printf("\n%-10s %12s %16s %14s\n", "MiB", "ms", "GB/s (r+w)", "GB/s (copied)");
  for (const Row& r : rows) {
    const double seconds = r.ms * 1e-3;
    const double rw = 2.0 * static_cast<double>(r.bytes) / seconds / 1e9;
    const double copied = static_cast<double>(r.bytes) / seconds / 1e9;
    std::printf("%-10zu %12.4f %16.1f %14.1f\n", r.bytes >> 20, r.ms, rw, copied);
    report["results"].push_back({{"bytes", r.bytes},
                                 {"ms", r.ms},
                                 {"gb_per_s_read_plus_write", rw},
                                 {"gb_per_s_copied", copied}});
  }
  return WriteReport(out, report) ? 0 : 1;
}

}  // namespace
}  // namespace moeserve::bench

int main(int argc, char** argv) { return moeserve::bench::Main(argc, argv); }
