// MLA attention kernels on the GPU: the decode kernel's bandwidth over the paged latent cache
// and the prefill kernel's throughput, next to the measured device-to-device copy bandwidth.
//   decode: 16 and 128 heads × batch 1…256 × context 512…32k, one query per sequence, pages in
//           shuffled order; GB/s counts the unique bytes the step must move: the KV cache read
//           (ctx · 1152 B per sequence) + q read + o_lat written + lse written.
//   prefill: 16 and 128 heads, whole prompts and a chunk after a cached prefix; TFLOPS counts
//           the causal QKᵀ and PV multiply-adds (2·(192 + 128) FLOPs per visible key, per head).
//   moeserve-bench-gpu-mla [--out bench/results/gpu_mla_attention.json] [--quick]
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <numeric>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "bench/gpu/gpu_bench_util.h"
#include "engine/cli/command_line.h"
#include "engine/ops/attention/mla_decode_cuda.h"
#include "engine/ops/attention/mla_decode_split.h"
#include "engine/ops/attention/mla_prefill_cuda.h"
#include "engine/ops/cuda/cuda_context.h"
#include "engine/ops/cuda/device_buffer.h"
#include "engine/ops/dtype.h"

namespace moeserve::bench {
namespace {

using engine::DeviceBuffer;

constexpr float kSoftmaxScale = 0.1352338f;  // V3's τ; the value does not change the cost

DeviceBuffer MustAllocate(size_t bytes) {
  auto buffer = DeviceBuffer::Allocate(std::max<size_t>(bytes, 16));
  if (!buffer.ok()) {
    std::fprintf(stderr, "%s\n", std::string(buffer.status().message()).c_str());
    std::exit(1);
  }
  return *std::move(buffer);
}

// N(0, 1) bf16 values, a 1 MiB pattern tiled by doubling device copies (FillTiled's random
// bytes would include NaN and inf bf16 patterns).
void FillBf16(void* device, size_t bytes, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<uint16_t> pattern(std::min<size_t>(bytes / 2, size_t{1} << 19));
  for (uint16_t& v : pattern) v = engine::FloatToBf16(normal(rng));
  char* dst = static_cast<char*>(device);
  const size_t chunk = pattern.size() * 2;
  CheckCuda(cudaMemcpy(dst, pattern.data(), chunk, cudaMemcpyHostToDevice), "cudaMemcpy");
  for (size_t filled = chunk; filled < bytes;) {
    const size_t n = std::min(filled, bytes - filled);
    CheckCuda(cudaMemcpy(dst + filled, dst, n, cudaMemcpyDeviceToDevice), "cudaMemcpy");
    filled += n;
  }
}

double CopyBandwidthGbPerS(cudaStream_t stream) {
  const size_t bytes = size_t{1} << 30;
  DeviceBuffer src = MustAllocate(bytes), dst = MustAllocate(bytes);
  CheckCuda(cudaMemset(src.data(), 1, bytes), "cudaMemset");
  const double ms = TimeMs(stream, 3, 20, [&] {
    CheckCuda(cudaMemcpyAsync(dst.data(), src.data(), bytes, cudaMemcpyDeviceToDevice, stream),
              "cudaMemcpyAsync");
  });
  return 2.0 * static_cast<double>(bytes) / (ms * 1e-3) / 1e9;  // read + write
}

int Main(int argc, char** argv) {
  CLI::App app("MLA attention kernels: decode GB/s, prefill TFLOPS");
  std::string out = std::string(MOESERVE_SOURCE_DIR) + "/bench/results/gpu_mla_attention.json";
  bool quick = false;
  app.add_option("--out", out, "JSON report path");
  app.add_flag("--quick", quick, "fewer shapes (smoke run)");
  if (std::optional<int> exit_status = moeserve::engine::ParseCommandLine(app, argc, argv)) {
    return *exit_status;
  }

  const std::unique_ptr<engine::CudaContext> context = MustCreateContext();
  const engine::CudaDeviceInfo& device = context->device();
  const cudaStream_t stream = static_cast<cudaStream_t>(context->stream());
  const double copy_gbps = CopyBandwidthGbPerS(stream);
  nlohmann::json report = GpuMeasurementContext(device);
  report["benchmark"] = "gpu_mla_attention";
  report["copy_gb_per_s_read_plus_write"] = copy_gbps;
  std::printf("device: %s, copy bandwidth (read + write): %.1f GB/s\n", device.name.c_str(),
              copy_gbps);

  // --- decode
  const std::vector<int64_t> batches =
      quick ? std::vector<int64_t>{1, 64} : std::vector<int64_t>{1, 4, 16, 64, 128, 256};
  const std::vector<int64_t> contexts =
      quick ? std::vector<int64_t>{512, 8192} : std::vector<int64_t>{512, 2048, 8192, 32768};
  const int64_t max_pages =
      batches.back() * ((contexts.back() + engine::kMlaPageSize - 1) / engine::kMlaPageSize);
  const size_t page_bytes = size_t{engine::kMlaPageSize} * engine::kMlaKvDim * 2;
  DeviceBuffer pages = MustAllocate(max_pages * page_bytes);
  FillBf16(pages.data(), max_pages * page_bytes, 1);
  std::printf("\n%-6s %6s %7s %7s %7s %10s %10s %8s\n", "heads", "batch", "context", "splits",
              "block_m", "us", "GB/s", "% copy");
  for (const int64_t heads : {int64_t{16}, int64_t{128}}) {
    for (const int64_t batch : batches) {
      for (const int64_t ctx : contexts) {
        const int64_t blocks = (ctx + engine::kMlaPageSize - 1) / engine::kMlaPageSize;
        std::vector<int32_t> ids(static_cast<size_t>(batch * blocks));
        std::iota(ids.begin(), ids.end(), 0);
        std::shuffle(ids.begin(), ids.end(), std::mt19937(static_cast<uint32_t>(batch * ctx)));
        std::vector<int32_t> qsl(batch + 1), lens(batch, static_cast<int32_t>(ctx));
        std::iota(qsl.begin(), qsl.end(), 0);
        DeviceBuffer tables_d = MustAllocate(ids.size() * 4), qsl_d = MustAllocate(qsl.size() * 4),
                     lens_d = MustAllocate(lens.size() * 4);
        CheckCuda(cudaMemcpy(tables_d.data(), ids.data(), ids.size() * 4, cudaMemcpyHostToDevice),
                  "cudaMemcpy");
        CheckCuda(cudaMemcpy(qsl_d.data(), qsl.data(), qsl.size() * 4, cudaMemcpyHostToDevice),
                  "cudaMemcpy");
        CheckCuda(cudaMemcpy(lens_d.data(), lens.data(), lens.size() * 4, cudaMemcpyHostToDevice),
                  "cudaMemcpy");
        const size_t rows = static_cast<size_t>(batch * heads);
        DeviceBuffer q = MustAllocate(rows * engine::kMlaKvDim * 2);
        FillBf16(q.data(), rows * engine::kMlaKvDim * 2, 2);
        DeviceBuffer o = MustAllocate(rows * engine::kMlaVDim * 2), lse = MustAllocate(rows * 4);
        const engine::MlaDecodePlan plan =
            engine::PlanMlaDecode(batch, heads, batch, 1, ctx, device.num_sms);
        DeviceBuffer workspace = MustAllocate(plan.workspace_bytes);
        const engine::MlaDecodeCudaArgs args{.q = q.as<uint16_t>(),
                                             .pages = pages.as<uint16_t>(),
                                             .block_tables = tables_d.as<int32_t>(),
                                             .query_start_loc = qsl_d.as<int32_t>(),
                                             .seq_lens = lens_d.as<int32_t>(),
                                             .num_pages = max_pages,
                                             .max_blocks_per_seq = blocks,
                                             .num_seqs = batch,
                                             .num_heads = heads,
                                             .num_tokens = batch,
                                             .softmax_scale = kSoftmaxScale,
                                             .out = o.as<uint16_t>(),
                                             .lse = lse.as<float>()};
        const double ms = TimeMs(stream, 3, 20, [&] {
          CheckCuda(static_cast<cudaError_t>(
                        engine::LaunchMlaDecodeBf16(args, plan, workspace.data(), stream)),
                    "LaunchMlaDecodeBf16");
        });
        CheckCuda(cudaStreamSynchronize(stream), "cudaStreamSynchronize");
        const double bytes =
            static_cast<double>(batch) * ctx * engine::kMlaKvDim * 2 +
            static_cast<double>(rows) * (engine::kMlaKvDim * 2 + engine::kMlaVDim * 2 + 4);
        const double gbps = bytes / (ms * 1e-3) / 1e9;
        std::printf("%-6lld %6lld %7lld %7d %7d %10.1f %10.1f %7.1f%%\n",
                    static_cast<long long>(heads), static_cast<long long>(batch),
                    static_cast<long long>(ctx), plan.num_splits, plan.block_m, ms * 1e3, gbps,
                    100.0 * gbps / copy_gbps);
        report["decode"].push_back({{"heads", heads},
                                    {"batch", batch},
                                    {"context", ctx},
                                    {"splits", plan.num_splits},
                                    {"block_m", plan.block_m},
                                    {"us", ms * 1e3},
                                    {"gb_per_s", gbps},
                                    {"fraction_of_copy", gbps / copy_gbps}});
      }
    }
  }

  // --- prefill (one sequence per launch, as the kernel's contract)
  struct PrefillShape {
    int64_t queries, ctx;
  };
  const std::vector<PrefillShape> prefill_shapes =
      quick ? std::vector<PrefillShape>{{2048, 2048}}
            : std::vector<PrefillShape>{{512, 512}, {2048, 2048}, {8192, 8192}, {2048, 8192}};
  std::printf("\n%-6s %8s %8s %10s %8s\n", "heads", "queries", "context", "ms", "TFLOPS");
  for (const int64_t heads : {int64_t{16}, int64_t{128}}) {
    for (const PrefillShape& s : prefill_shapes) {
      const int64_t qk = engine::kMhaNopeDim + engine::kMhaRopeDim;
      DeviceBuffer q = MustAllocate(s.queries * heads * qk * 2);
      DeviceBuffer kv = MustAllocate(s.ctx * heads * (engine::kMhaNopeDim + engine::kMhaVDim) * 2);
      DeviceBuffer latents = MustAllocate(s.ctx * engine::kMlaKvDim * 2);
      DeviceBuffer o = MustAllocate(s.queries * heads * engine::kMhaVDim * 2);
      FillBf16(q.data(), s.queries * heads * qk * 2, 3);
      FillBf16(kv.data(), s.ctx * heads * (engine::kMhaNopeDim + engine::kMhaVDim) * 2, 4);
      FillBf16(latents.data(), s.ctx * engine::kMlaKvDim * 2, 5);
      const engine::MhaPrefillCudaArgs args{.q = q.as<uint16_t>(),
                                            .k_nope_v = kv.as<uint16_t>(),
                                            .k_pe = latents.as<uint16_t>() + engine::kMlaVDim,
                                            .k_pe_stride = engine::kMlaKvDim,
                                            .num_queries = s.queries,
                                            .ctx = s.ctx,
                                            .num_heads = heads,
                                            .softmax_scale = kSoftmaxScale,
                                            .out = o.as<uint16_t>()};
      const double ms = TimeMs(stream, 2, 10, [&] {
        CheckCuda(static_cast<cudaError_t>(engine::LaunchMhaPrefillBf16(args, stream)),
                  "LaunchMhaPrefillBf16");
      });
      CheckCuda(cudaStreamSynchronize(stream), "cudaStreamSynchronize");
      // Query i sees ctx − queries + i + 1 keys.
      const double visible = static_cast<double>(s.queries) * (s.ctx - s.queries) +
                             static_cast<double>(s.queries) * (s.queries + 1) / 2.0;
      const double flops = visible * heads * 2.0 * (qk + engine::kMhaVDim);
      const double tflops = flops / (ms * 1e-3) / 1e12;
      std::printf("%-6lld %8lld %8lld %10.3f %8.1f\n", static_cast<long long>(heads),
                  static_cast<long long>(s.queries), static_cast<long long>(s.ctx), ms, tflops);
      report["prefill"].push_back({{"heads", heads},
                                   {"queries", s.queries},
                                   {"context", s.ctx},
                                   {"ms", ms},
                                   {"tflops", tflops}});
    }
  }
  return WriteReport(out, report) ? 0 : 1;
}

}  // namespace
}  // namespace moeserve::bench

int main(int argc, char** argv) { return moeserve::bench::Main(argc, argv); }
