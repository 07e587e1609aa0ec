// WeightGemmCpu alone: y = x·Wᵀ for DeepSeek-V2-Lite's decode shapes, W cold in memory (a pool
// of distinct matrices larger than the caches is cycled through, as a decode step streams each
// layer's weights once). For each weight format and kernel, the achieved GB/s of weight bytes
// and GMAC/s at M rows; GB/s against moeserve-bench-memory-bandwidth's read figure says how
// far a GEMV is from the memory floor. Prints a table and writes JSON with device, date, commit.
//   moeserve-bench-weight-gemm [--rows 1,8,32] [--pool-mib 512] [--seconds 1] [--output FILE]
#include <omp.h>

#include <chrono>
#include <cstdio>
#include <optional>
#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "bench/bench_report.h"
#include "engine/cli/command_line.h"
#include "engine/ops/cpu/cpu_features.h"
#include "engine/ops/dtype.h"
#include "engine/ops/linear/weight_gemm.h"

namespace {

using moeserve::engine::CpuIsa;
using moeserve::engine::WeightFormat;
using moeserve::engine::WeightMatrixView;
using Clock = std::chrono::steady_clock;

struct Shape {
  const char* name;
  int64_t rows, cols;  // out_features, in_features
};

// V2-Lite: a routed expert's gate_up and down, q_proj, the BF16 lm_head's slice of 8192 rows.
constexpr Shape kShapes[] = {{"expert gate_up", 2816, 2048},
                             {"expert down", 2048, 1408},
                             {"q_proj", 3072, 2048},
                             {"lm_head slice", 8192, 2048}};

// A pool of `count` matrices of one shape and format with random (finite) contents.
struct Pool {
  std::vector<uint8_t> bytes;
  std::vector<float> scales;
  int64_t matrix_bytes = 0, scale_count = 0, count = 0;
};

Pool MakePool(const Shape& s, WeightFormat format, int64_t pool_bytes) {
  Pool p;
  p.matrix_bytes = s.rows * s.cols * moeserve::engine::WeightFormatBytes(format);
  p.scale_count = ((s.rows + 127) / 128) * ((s.cols + 127) / 128);
  p.count = std::max<int64_t>(1, pool_bytes / p.matrix_bytes);
  p.bytes.resize(static_cast<size_t>(p.count * p.matrix_bytes));
  uint32_t state = 12345;
  for (size_t i = 0; i < p.bytes.size(); ++i) {
    state = state * 1664525u + 1013904223u;
    p.bytes[i] = static_cast<uint8_t>(state >> 24);
  }
  if (format == WeightFormat::kFp8Block128) {
    for (uint8_t& b : p.bytes) {
      if ((b & 0x7F) == 0x7F) b &= 0xFE;  // no e4m3 NaN
    }
  } else if (format == WeightFormat::kBf16) {
    for (size_t i = 1; i < p.bytes.size(); i += 2) p.bytes[i] &= 0xBF;  // exponent < 128: finite
  }
  p.scales.assign(static_cast<size_t>(p.count * p.scale_count), 1e-3f);
  return p;
}

struct Result {
  double gb_per_s, gmac_per_s;
};

Result Time(const Shape& s, WeightFormat format, const Pool& pool, CpuIsa isa, int64_t m,
            double seconds) {
  std::vector<float> x(static_cast<size_t>(m * s.cols), 0.5f);
  std::vector<float> y(static_cast<size_t>(m * s.rows));
  auto run = [&](int64_t i) {
    const WeightMatrixView w{format, pool.bytes.data() + (i % pool.count) * pool.matrix_bytes,
                             pool.scales.data() + (i % pool.count) * pool.scale_count, s.rows,
                             s.cols};
    moeserve::engine::WeightGemmCpu(x.data(), s.cols, w, y.data(), s.rows, m, false, isa);
  };
  for (int64_t i = 0; i < pool.count; ++i) run(i);  // fault in, warm the code
  int64_t calls = 0;
  const auto begin = Clock::now();
  double elapsed = 0;
  do {
    run(calls++);
    elapsed = std::chrono::duration<double>(Clock::now() - begin).count();
  } while (elapsed < seconds);
  return {static_cast<double>(calls * pool.matrix_bytes) / elapsed / 1e9,
          static_cast<double>(calls * m * s.rows * s.cols) / elapsed / 1e9};
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"WeightGemmCpu throughput on cold weights (GB/s of weights, GMAC/s)."};
  std::vector<int64_t> rows = {1, 8, 32};
  int64_t pool_mib = 512;
  double seconds = 1.0;
  std::string output = "bench_results/weight_gemm.json";
  app.add_option("--rows", rows, "rows of x (M)")->delimiter(',');
  app.add_option("--pool-mib", pool_mib, "bytes of distinct matrices cycled through");
  app.add_option("--seconds", seconds, "time per measurement");
  app.add_option("--output", output, "JSON report path");
  if (std::optional<int> exit_status = moeserve::engine::ParseCommandLine(app, argc, argv)) {
    return *exit_status;
  }

  std::vector<CpuIsa> isas;
  for (CpuIsa isa : {CpuIsa::kAvx2, CpuIsa::kAvx512, CpuIsa::kAvx512Bf16}) {
    if (moeserve::engine::CpuIsaAvailable(isa)) isas.push_back(isa);
  }
  nlohmann::json report = moeserve::bench::MeasurementContext();
  report["benchmark"] = "weight_gemm";
  report["threads"] = omp_get_max_threads();
  report["pool_mib"] = pool_mib;
  nlohmann::json results = nlohmann::json::array();
  std::printf("WeightGemmCpu on cold weights, %d threads, %lld MiB pool per shape\n",
              omp_get_max_threads(), static_cast<long long>(pool_mib));
  std::printf("%16s | %6s | %11s | %4s | %8s | %8s\n", "shape", "format", "kernel", "M", "GB/s",
              "GMAC/s");
  for (const Shape& s : kShapes) {
    for (WeightFormat format : {WeightFormat::kBf16, WeightFormat::kFp8Block128}) {
      const Pool pool = MakePool(s, format, pool_mib << 20);
      for (CpuIsa isa : isas) {
        for (int64_t m : rows) {
          const Result r = Time(s, format, pool, isa, m, seconds);
          std::printf("%16s | %6s | %11s | %4lld | %8.1f | %8.1f\n", s.name,
                      moeserve::engine::WeightFormatName(format), moeserve::engine::CpuIsaName(isa),
                      static_cast<long long>(m), r.gb_per_s, r.gmac_per_s);
          results.push_back({{"shape", s.name},
                             {"rows", s.rows},
                             {"cols", s.cols},
                             {"format", moeserve::engine::WeightFormatName(format)},
                             {"kernel", moeserve::engine::CpuIsaName(isa)},
                             {"m", m},
                             {"weight_gb_per_s", r.gb_per_s},
                             {"gmac_per_s", r.gmac_per_s}});
        }
      }
    }
  }
  report["results"] = results;
  return moeserve::bench::WriteReport(output, report) ? 0 : 1;
}
