// FP8 block-scaled GEMM (cuBLASLt BLK128x128 × VEC128, reference §5.3) next to cuBLASLt BF16 on
// the same DeepSeek-V3 and V2-Lite projection shapes, Y[M, N] = X[M, K]·W[N, K]ᵀ, for
// M = 1 … 8192 tokens. TFLOPS = 2·M·N·K / time; the FP8 time is the GEMM alone (activation
// quantization excluded, as it fuses into the previous op), and the path column says which of
// cuBLASLt's block-scaled operand orders (Fp8GemmPath) or the dequantize-to-BF16 fallback ran.
//   moeserve-bench-gpu-gemm [--out bench/results/gpu_gemm.json] [--max-m 8192]
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
#include "engine/ops/dtype.h"
#include "engine/ops/linear/fp8_quant_cuda.h"
#include "engine/ops/linear/gemm_cublaslt.h"

namespace moeserve::bench {
namespace {

using engine::CublasLtGemm;
using engine::DeviceBuffer;

struct Shape {
  const char* name;
  int64_t n;
  int64_t k;
};

constexpr Shape kShapes[] = {
    {"V3 q_a_proj", 1536, 7168},
    {"V3 q_b_proj", 24576, 1536},
    {"V3 kv_a_proj", 576, 7168},
    {"V3 o_proj", 7168, 16384},
    {"V3 expert gate_up", 4096, 7168},
    {"V3 expert down", 7168, 2048},
    {"V3 dense gate_up", 36864, 7168},
    {"V3 dense down", 7168, 18432},
    {"V2-Lite q_proj", 3072, 2048},
    {"V2-Lite o_proj", 2048, 2048},
    {"V2-Lite expert gate_up", 2816, 2048},
    {"V2-Lite expert down", 2048, 1408},
};

DeviceBuffer MustAllocate(size_t bytes) {
  auto buffer = DeviceBuffer::Allocate(bytes);
  if (!buffer.ok()) {
    std::fprintf(stderr, "%s\n", std::string(buffer.status().message()).c_str());
    std::exit(1);
  }
  return *std::move(buffer);
}

void MustOk(const absl::Status& status) {
  if (!status.ok()) {
    std::fprintf(stderr, "%s\n", std::string(status.message()).c_str());
    std::fflush(stdout);
    std::exit(1);
  }
}

uint8_t RandomFp8(std::mt19937& rng) {
  // Finite e4m3 bytes only (0x7F and 0xFF are NaN).
  uint8_t b = static_cast<uint8_t>(rng());
  return (b & 0x7F) == 0x7F ? static_cast<uint8_t>(b & 0xF0) : b;
}

int Main(int argc, char** argv) {
  CLI::App app("FP8 block-scaled vs BF16 GEMM through cuBLASLt");
  std::string out = std::string(MOESERVE_SOURCE_DIR) + "/bench/results/gpu_gemm.json";
  int64_t max_m = 8192;
  int iterations = 20;
  app.add_option("--out", out, "JSON report path");
  app.add_option("--max-m", max_m, "largest M (tokens)");
  app.add_option("--iterations", iterations, "timed calls per measurement");
  if (std::optional<int> exit_status = moeserve::engine::ParseCommandLine(app, argc, argv)) {
    return *exit_status;
  }

  const std::unique_ptr<engine::CudaContext> context = MustCreateContext();
  auto gemm = CublasLtGemm::Create(*context);
  MustOk(gemm.status());
  const cudaStream_t stream = static_cast<cudaStream_t>(context->stream());
  std::printf("device: %s\n", context->device().ToString().c_str());

  std::vector<int64_t> ms;
  for (int64_t m = 1; m <= max_m; m *= 2) ms.push_back(m);
  int64_t max_n = 0, max_k = 0;
  for (const Shape& s : kShapes) {
    max_n = std::max(max_n, s.n);
    max_k = std::max(max_k, s.k);
  }
  // Buffers sized for the largest shape, reused by all.
  const int64_t max_padded = engine::Fp8PaddedTokens(max_m);
  size_t max_w = 0;
  for (const Shape& s : kShapes) max_w = std::max(max_w, static_cast<size_t>(s.n * s.k));
  DeviceBuffer w_bf16 = MustAllocate(max_w * 2);
  DeviceBuffer w_fp8 = MustAllocate(max_w);
  DeviceBuffer w_scales =
      MustAllocate(static_cast<size_t>((max_n / 128 + 1) * (max_k / 128 + 4)) * 4);
  DeviceBuffer x_bf16 = MustAllocate(static_cast<size_t>(max_padded * max_k) * 2);
  DeviceBuffer x_fp8 = MustAllocate(static_cast<size_t>(max_padded * max_k));
  DeviceBuffer x_scales = MustAllocate(static_cast<size_t>((max_k / 128 + 1) * max_padded) * 4);
  DeviceBuffer y = MustAllocate(static_cast<size_t>(max_padded * max_n) * 4);
  const auto random_bf16_byte = [](std::mt19937& rng) {
    // Little-endian bf16: even bytes are random low mantissa bits, odd bytes sign and an
    // exponent near 1.0 (0x3C..0x3F), so values stay finite and O(1).
    static bool next_is_low_byte = true;
    const bool low = next_is_low_byte;
    next_is_low_byte = !next_is_low_byte;
    return low ? static_cast<uint8_t>(rng())
               : static_cast<uint8_t>(0x3C + (rng() & 3) + ((rng() & 1) << 7));
  };
  FillTiled(w_bf16.data(), w_bf16.size_bytes(), random_bf16_byte, 1);
  FillTiled(x_bf16.data(), x_bf16.size_bytes(), random_bf16_byte, 2);
  FillTiled(w_fp8.data(), w_fp8.size_bytes(), RandomFp8, 3);
  const std::vector<float> ones(w_scales.size_bytes() / 4, 1.0f / 448.0f);
  MustOk(w_scales.CopyFromHost(ones.data(), ones.size() * 4));

  struct Row {
    std::string shape;
    int64_t m, n, k;
    double fp8_ms, bf16_ms;
    engine::Fp8GemmPath fp8_path;
  };
  std::vector<Row> rows;
  for (const Shape& s : kShapes) {
    for (const int64_t m : ms) {
      const int64_t padded = engine::Fp8PaddedTokens(m);
      const engine::Fp8WeightView w{w_fp8.as<uint8_t>(), w_scales.as<float>(), s.n, s.k,
                                    engine::Fp8ScaleStride(s.k)};
      CheckCuda(static_cast<cudaError_t>(engine::LaunchQuantizeActivationsFp8Bf16(
                    x_bf16.as<uint16_t>(), m, padded, s.k, x_fp8.as<uint8_t>(),
                    x_scales.as<float>(), stream)),
                "LaunchQuantizeActivationsFp8Bf16");
      auto path = (*gemm)->Fp8PathFor(
          {x_fp8.as<uint8_t>(), x_scales.as<float>(), w, y.as<uint16_t>(), padded});
      MustOk(path.status());
      const double fp8_ms = TimeMs(stream, 3, iterations, [&] {
        MustOk((*gemm)->Fp8BlockScaled(x_fp8.as<uint8_t>(), x_scales.as<float>(), w,
                                       y.as<uint16_t>(), padded));
      });
      const double bf16_ms = TimeMs(stream, 3, iterations, [&] {
        MustOk((*gemm)->Bf16(x_bf16.as<uint16_t>(), w_bf16.as<uint16_t>(), y.data(),
                             engine::GemmOutputType::kBf16, m, s.n, s.k));
      });
      rows.push_back({s.name, m, s.n, s.k, fp8_ms, bf16_ms, *path});
      std::fprintf(stderr, ".");
    }
  }
  std::fprintf(stderr, "\n");

  nlohmann::json report = GpuMeasurementContext(context->device());
  report["benchmark"] = "gpu_gemm_fp8_vs_bf16";
  report["iterations"] = iterations;
  std::printf("\n%-24s %6s %6s %6s %10s %10s %10s %10s %7s  %s\n", "shape", "M", "N", "K", "fp8 us",
              "fp8 TF/s", "bf16 us", "bf16 TF/s", "speedup", "fp8 path");
  for (const Row& r : rows) {
    const double flops = 2.0 * static_cast<double>(r.m) * r.n * r.k;
    const double fp8_tflops = flops / (r.fp8_ms * 1e-3) / 1e12;
    const double bf16_tflops = flops / (r.bf16_ms * 1e-3) / 1e12;
    const char* path = engine::Fp8GemmPathName(r.fp8_path);
    std::printf("%-24s %6lld %6lld %6lld %10.1f %10.1f %10.1f %10.1f %7.2f  %s\n", r.shape.c_str(),
                static_cast<long long>(r.m), static_cast<long long>(r.n),
                static_cast<long long>(r.k), r.fp8_ms * 1e3, fp8_tflops, r.bf16_ms * 1e3,
                bf16_tflops, r.bf16_ms / r.fp8_ms, path);
    report["results"].push_back({{"shape", r.shape},
                                 {"m", r.m},
                                 {"n", r.n},
                                 {"k", r.k},
                                 {"fp8_us", r.fp8_ms * 1e3},
                                 {"fp8_tflops", fp8_tflops},
                                 {"bf16_us", r.bf16_ms * 1e3},
                                 {"bf16_tflops", bf16_tflops},
                                 {"fp8_path", path}});
  }
  return WriteReport(out, report) ? 0 : 1;
}

}  // namespace
}  // namespace moeserve::bench

int main(int argc, char** argv) { return moeserve::bench::Main(argc, argv); }
