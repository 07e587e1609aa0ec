// Our prefill GEMM against the maintained libraries issue 20 names, on DeepSeek-V2-Lite's
// shapes at M rows of x (prefill chunks, batched decode, experts with many tokens):
//   ours        — WeightGemmCpu on the weights as held (BF16, FP8 128×128) with BestCpuIsa()
//                 (the default `--cpu-kernels fast`: widened to fp32, FMA), and with
//                 kAvx512Bf16 where the CPU has it (`--cpu-kernels bf16`: vdpbf16ps);
//   onednn-ba   — oneDNN matmul, bf16 x (rounded from fp32 inside the timed call, as ours does)
//                 times the BF16 weights in place ([N, K] row-major is oneDNN's "ba");
//   onednn-any  — the same with the weights reordered once into oneDNN's preferred blocked
//                 layout (what a load-time repack for oneDNN would give; the reorder is not timed);
//   openblas    — OpenBLAS sgemm on an fp32 copy of the weights: Debian's OpenBLAS 0.3.21 is built
//                 without BUILD_BFLOAT16 (no cblas_sbgemm), so fp32 is what it offers; holding fp32
//                 weights is what issue 20 rules out, the figure says what it would have bought.
// Weights stay warm (one matrix, reused), as they are across a prefill chunk's rows. Every
// library runs on the same OpenMP runtime and thread count as ours. Prints a table and writes
// JSON with device, date and commit.
//   moeserve-bench-library-gemm [--rows 32,128,512] [--seconds 1] [--output FILE]
#include <cblas.h>
#include <omp.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "bench/bench_report.h"
#include "engine/cli/command_line.h"
#include "engine/ops/cpu/cpu_features.h"
#include "engine/ops/linear/weight_gemm.h"
#include "oneapi/dnnl/dnnl.hpp"

namespace {

using moeserve::engine::WeightFormat;
using moeserve::engine::WeightMatrixView;
using Clock = std::chrono::steady_clock;

struct Shape {
  const char* name;
  int64_t rows, cols;  // out_features (N), in_features (K)
};

// V2-Lite: q_proj, o_proj, kv_b_proj, a routed expert's gate_up and down, the dense layer's
// gate_up.
constexpr Shape kShapes[] = {{"q_proj", 3072, 2048},      {"o_proj", 2048, 2048},
                             {"kv_b_proj", 4096, 512},    {"expert gate_up", 2816, 2048},
                             {"expert down", 2048, 1408}, {"dense gate_up", 21888, 2048}};

uint16_t Bf16Bits(float f) {  // round to nearest even
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return static_cast<uint16_t>((u + 0x7FFF + ((u >> 16) & 1)) >> 16);
}

float FromBf16(uint16_t b) {
  const uint32_t u = static_cast<uint32_t>(b) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// GMAC/s of `call` over `seconds`, after one warm-up call.
double Gmacs(const std::function<void()>& call, int64_t macs, double seconds) {
  call();
  int64_t calls = 0;
  const auto begin = Clock::now();
  double elapsed = 0;
  do {
    call();
    ++calls;
    elapsed = std::chrono::duration<double>(Clock::now() - begin).count();
  } while (elapsed < seconds);
  return static_cast<double>(calls * macs) / elapsed / 1e9;
}

struct Operands {
  std::vector<float> x, y;
  std::vector<uint16_t> w_bf16, x_bf16;
  std::vector<uint8_t> w_fp8;
  std::vector<float> w_f32, fp8_scales;
};

Operands MakeOperands(const Shape& s, int64_t m) {
  Operands o;
  uint32_t state = 2026;
  auto uniform = [&state] {
    state = state * 1664525u + 1013904223u;
    return static_cast<float>(state >> 8) / 16777216.0f - 0.5f;
  };
  o.x.resize(static_cast<size_t>(m * s.cols));
  for (float& v : o.x) v = uniform();
  o.y.resize(static_cast<size_t>(m * s.rows));
  o.x_bf16.resize(o.x.size());
  o.w_bf16.resize(static_cast<size_t>(s.rows * s.cols));
  o.w_f32.resize(o.w_bf16.size());
  for (size_t i = 0; i < o.w_bf16.size(); ++i) {
    o.w_bf16[i] = Bf16Bits(uniform() * 0.05f);
    o.w_f32[i] = FromBf16(o.w_bf16[i]);
  }
  o.w_fp8.resize(o.w_bf16.size());
  for (uint8_t& b : o.w_fp8) {
    state = state * 1664525u + 1013904223u;
    b = static_cast<uint8_t>(state >> 24);
    if ((b & 0x7F) == 0x7F) b &= 0xFE;  // no e4m3 NaN
  }
  o.fp8_scales.assign(static_cast<size_t>(((s.rows + 127) / 128) * ((s.cols + 127) / 128)), 1e-3f);
  return o;
}

struct OneDnnMatmul {
  dnnl::engine engine{dnnl::engine::kind::cpu, 0};
  dnnl::stream stream{engine};
  dnnl::matmul primitive;
  dnnl::memory src, weights, dst;

  // weights_tag: dnnl::memory::format_tag::ba (in place) or ::any (oneDNN's choice, reordered).
  OneDnnMatmul(const Shape& s, int64_t m, Operands& o, dnnl::memory::format_tag weights_tag) {
    using dnnl::memory;
    const memory::desc src_md({m, s.cols}, memory::data_type::bf16, memory::format_tag::ab);
    const memory::desc w_md({s.cols, s.rows}, memory::data_type::bf16, weights_tag);
    const memory::desc dst_md({m, s.rows}, memory::data_type::f32, memory::format_tag::ab);
    const dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(src_md, w_md, dst_md), engine);
    primitive = dnnl::matmul(pd);
    src = memory(src_md, engine, o.x_bf16.data());
    dst = memory(dst_md, engine, o.y.data());
    const memory::desc plain_md({s.cols, s.rows}, memory::data_type::bf16, memory::format_tag::ba);
    memory plain(plain_md, engine, o.w_bf16.data());
    if (pd.weights_desc() == plain_md) {
      weights = plain;
    } else {
      weights = memory(pd.weights_desc(), engine);
      dnnl::reorder(plain, weights).execute(stream, plain, weights);
      stream.wait();
    }
  }

  void Run(Operands& o) {
    for (size_t i = 0; i < o.x.size(); ++i) o.x_bf16[i] = Bf16Bits(o.x[i]);
    primitive.execute(stream,
                      {{DNNL_ARG_SRC, src}, {DNNL_ARG_WEIGHTS, weights}, {DNNL_ARG_DST, dst}});
    stream.wait();
  }
};

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Prefill-shaped GEMM: WeightGemmCpu against oneDNN and OpenBLAS (GMAC/s)."};
  std::vector<int64_t> rows = {32, 128, 512};
  double seconds = 1.0;
  std::string output = "bench_results/library_gemm.json";
  app.add_option("--rows", rows, "rows of x (M)")->delimiter(',');
  app.add_option("--seconds", seconds, "time per measurement");
  app.add_option("--output", output, "JSON report path");
  if (std::optional<int> exit_status = moeserve::engine::ParseCommandLine(app, argc, argv)) {
    return *exit_status;
  }

  const int threads = omp_get_max_threads();
  openblas_set_num_threads(threads);
  const auto isa = moeserve::engine::BestCpuIsa();
  nlohmann::json report = moeserve::bench::MeasurementContext();
  report["benchmark"] = "library_gemm";
  report["threads"] = threads;
  report["our_kernel"] = moeserve::engine::CpuIsaName(isa);
  report["onednn_version"] = std::to_string(dnnl_version()->major) + "." +
                             std::to_string(dnnl_version()->minor) + "." +
                             std::to_string(dnnl_version()->patch);
  report["openblas_config"] = openblas_get_config();
  nlohmann::json results = nlohmann::json::array();
  std::printf("GMAC/s on warm weights, %d threads; ours = WeightGemmCpu(%s)\n", threads,
              moeserve::engine::CpuIsaName(isa));
  std::printf("%15s | %4s | %9s | %9s | %12s | %11s | %10s | %10s | %13s\n", "shape", "M",
              "ours bf16", "ours fp8", "ours bf16dot", "ours fp8dot", "onednn-ba", "onednn-any",
              "openblas fp32");
  for (const Shape& s : kShapes) {
    for (int64_t m : rows) {
      Operands o = MakeOperands(s, m);
      const int64_t macs = m * s.rows * s.cols;
      auto ours = [&](WeightFormat format, moeserve::engine::CpuIsa kernel) {
        const WeightMatrixView w{
            format,
            format == WeightFormat::kBf16 ? static_cast<const void*>(o.w_bf16.data())
                                          : static_cast<const void*>(o.w_fp8.data()),
            format == WeightFormat::kBf16 ? nullptr : o.fp8_scales.data(), s.rows, s.cols};
        return Gmacs(
            [&] {
              moeserve::engine::WeightGemmCpu(o.x.data(), s.cols, w, o.y.data(), s.rows, m, false,
                                              kernel);
            },
            macs, seconds);
      };
      const double ours_bf16 = ours(WeightFormat::kBf16, isa);
      const double ours_fp8 = ours(WeightFormat::kFp8Block128, isa);
      const bool has_dot = moeserve::engine::CpuIsaAvailable(moeserve::engine::CpuIsa::kAvx512Bf16);
      const double ours_bf16_dot =
          has_dot ? ours(WeightFormat::kBf16, moeserve::engine::CpuIsa::kAvx512Bf16) : 0.0;
      const double ours_fp8_dot =
          has_dot ? ours(WeightFormat::kFp8Block128, moeserve::engine::CpuIsa::kAvx512Bf16) : 0.0;
      OneDnnMatmul in_place(s, m, o, dnnl::memory::format_tag::ba);
      const double onednn_ba = Gmacs([&] { in_place.Run(o); }, macs, seconds);
      OneDnnMatmul repacked(s, m, o, dnnl::memory::format_tag::any);
      const double onednn_any = Gmacs([&] { repacked.Run(o); }, macs, seconds);
      const double openblas = Gmacs(
          [&] {
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<blasint>(m),
                        static_cast<blasint>(s.rows), static_cast<blasint>(s.cols), 1.0f,
                        o.x.data(), static_cast<blasint>(s.cols), o.w_f32.data(),
                        static_cast<blasint>(s.cols), 0.0f, o.y.data(),
                        static_cast<blasint>(s.rows));
          },
          macs, seconds);
      std::printf("%15s | %4lld | %9.1f | %9.1f | %12.1f | %11.1f | %10.1f | %10.1f | %13.1f\n",
                  s.name, static_cast<long long>(m), ours_bf16, ours_fp8, ours_bf16_dot,
                  ours_fp8_dot, onednn_ba, onednn_any, openblas);
      results.push_back({{"shape", s.name},
                         {"rows", s.rows},
                         {"cols", s.cols},
                         {"m", m},
                         {"ours_bf16_gmac_per_s", ours_bf16},
                         {"ours_fp8_gmac_per_s", ours_fp8},
                         {"ours_bf16_dot_gmac_per_s", ours_bf16_dot},
                         {"ours_fp8_dot_gmac_per_s", ours_fp8_dot},
                         {"onednn_bf16_in_place_gmac_per_s", onednn_ba},
                         {"onednn_bf16_repacked_gmac_per_s", onednn_any},
                         {"openblas_f32_gmac_per_s", openblas}});
    }
  }
  report["results"] = results;
  return moeserve::bench::WriteReport(output, report) ? 0 : 1;
}
