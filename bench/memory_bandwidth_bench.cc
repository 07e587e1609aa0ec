// STREAM-like host memory bandwidth: times a read (sum) and a copy (memcpy) of a large buffer
// split evenly over OpenMP threads, and prints GB/s (1 GB = 1e9 bytes). The read figure is the
// one the CPU decode floor divides by: decoding streams weights and writes almost nothing.
// Copy counts read + written bytes (STREAM's convention; glibc's memcpy uses non-temporal
// stores at these sizes, so there is no hidden write-allocate read). Prints a table and writes
// JSON with device, date and commit.
//   moeserve-bench-memory-bandwidth [--size-mib 1024] [--repeats 10] [--threads N]
//                                   [--output FILE]
#include <omp.h>
#include <sys/mman.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <optional>
#include <vector>

#include "CLI/CLI.hpp"
#include "bench/bench_report.h"
#include "engine/cli/command_line.h"

namespace {

using Clock = std::chrono::steady_clock;

struct FreeDeleter {
  void operator()(uint64_t* p) const { std::free(p); }
};
using Buffer = std::unique_ptr<uint64_t[], FreeDeleter>;

// 2 MiB-aligned so the kernel can back it with transparent huge pages (fewer TLB misses, as a
// large weight allocation would get).
Buffer Allocate(size_t words) {
  constexpr size_t kAlign = size_t{2} << 20;
  const size_t bytes = (words * sizeof(uint64_t) + kAlign - 1) / kAlign * kAlign;
  auto* p = static_cast<uint64_t*>(std::aligned_alloc(kAlign, bytes));
  if (p == nullptr) {
    std::fprintf(stderr, "cannot allocate %zu bytes\n", bytes);
    std::exit(1);
  }
  madvise(p, bytes, MADV_HUGEPAGE);  // advisory; ignored where THP is off
  return Buffer(p);
}

// The [begin, end) words thread `t` of `n` owns: the same split for first touch and for every
// kernel, so each thread reads memory it faulted in (matters on NUMA hosts).
std::pair<size_t, size_t> Slice(size_t words, int t, int n) {
  return {words * t / n, words * (t + 1) / n};
}

uint64_t ReadSum(const uint64_t* data, size_t words) {
  uint64_t total = 0;
#pragma omp parallel reduction(+ : total)
  {
    const auto [begin, end] = Slice(words, omp_get_thread_num(), omp_get_num_threads());
    uint64_t sum = 0;
#pragma omp simd reduction(+ : sum)
    for (size_t i = begin; i < end; ++i) sum += data[i];
    total += sum;
  }
  return total;
}

void Copy(uint64_t* dst, const uint64_t* src, size_t words) {
#pragma omp parallel
  {
    const auto [begin, end] = Slice(words, omp_get_thread_num(), omp_get_num_threads());
    std::memcpy(dst + begin, src + begin, (end - begin) * sizeof(uint64_t));
  }
}

struct Result {
  const char* kernel;
  double bytes_per_pass;
  double best_gbps;
  double median_gbps;
};

// Times `repeats` passes after one warm-up pass; best and median GB/s.
template <typename Pass>
Result Time(const char* kernel, double bytes_per_pass, int repeats, Pass pass) {
  pass();
  std::vector<double> gbps;
  for (int r = 0; r < repeats; ++r) {
    const auto begin = Clock::now();
    pass();
    const double s = std::chrono::duration<double>(Clock::now() - begin).count();
    gbps.push_back(bytes_per_pass / s / 1e9);
  }
  std::sort(gbps.begin(), gbps.end());
  return Result{kernel, bytes_per_pass, gbps.back(), gbps[gbps.size() / 2]};
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Host memory bandwidth (STREAM-like read and copy, GB/s)."};
  int64_t size_mib = 1024;
  int repeats = 10;
  int threads = omp_get_max_threads();
  std::string output = "bench_results/memory_bandwidth.json";
  app.add_option("--size-mib", size_mib, "bytes of each buffer, MiB (>= 1024 defeats caches)")
      ->check(CLI::PositiveNumber);
  app.add_option("--repeats", repeats, "timed passes per kernel")->check(CLI::PositiveNumber);
  app.add_option("--threads", threads, "OpenMP threads")->check(CLI::PositiveNumber);
  app.add_option("--output", output, "JSON report path");
  if (std::optional<int> exit_status = moeserve::engine::ParseCommandLine(app, argc, argv)) {
    return *exit_status;
  }
  omp_set_num_threads(threads);

  const size_t words = static_cast<size_t>(size_mib) * 1048576 / sizeof(uint64_t);
  const double bytes = static_cast<double>(words * sizeof(uint64_t));
  Buffer src = Allocate(words);
  Buffer dst = Allocate(words);
  // First touch with the kernels' split: pages land on the node of the thread that uses them.
#pragma omp parallel
  {
    const auto [begin, end] = Slice(words, omp_get_thread_num(), omp_get_num_threads());
    for (size_t i = begin; i < end; ++i) {
      src[i] = i;
      dst[i] = 0;
    }
  }

  uint64_t checksum = 0;
  std::vector<Result> results;
  results.push_back(Time("read", bytes, repeats, [&] { checksum += ReadSum(src.get(), words); }));
  results.push_back(Time("copy", 2 * bytes, repeats, [&] { Copy(dst.get(), src.get(), words); }));
  if (dst[words - 1] != src[words - 1]) {
    std::fprintf(stderr, "copy check failed\n");
    return 1;
  }

  nlohmann::json report = moeserve::bench::MeasurementContext();
  report["benchmark"] = "memory_bandwidth";
  report["threads"] = threads;
  report["buffer_mib"] = size_mib;
  report["repeats"] = repeats;
  report["checksum"] = checksum;  // keeps the read pass observable
  std::printf("Memory bandwidth, %d threads, %lld MiB buffers, best / median of %d passes\n",
              threads, static_cast<long long>(size_mib), repeats);
  std::printf("%6s | %14s | %9s | %11s\n", "kernel", "bytes / pass", "best GB/s", "median GB/s");
  for (const Result& r : results) {
    std::printf("%6s | %14.0f | %9.2f | %11.2f\n", r.kernel, r.bytes_per_pass, r.best_gbps,
                r.median_gbps);
    report["results"].push_back({{"kernel", r.kernel},
                                 {"bytes_per_pass", r.bytes_per_pass},
                                 {"best_gb_per_s", r.best_gbps},
                                 {"median_gb_per_s", r.median_gbps}});
  }
  return moeserve::bench::WriteReport(output, report) ? 0 : 1;
}
