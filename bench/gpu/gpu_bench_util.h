// Shared by the GPU microbenchmarks: CUDA-event timing, filling device memory with a tiled
// random pattern quickly, and the measurement context with the GPU named.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "bench/bench_report.h"
#include "engine/ops/cuda/cuda_context.h"
#include "nlohmann/json.hpp"

namespace moeserve::bench {

// Aborts with the call's name on a CUDA error (benchmarks have no caller to return a Status to).
inline void CheckCuda(cudaError_t error, const char* what) {
  if (error != cudaSuccess) {
    std::fprintf(stderr, "%s failed: %s\n", what, cudaGetErrorString(error));
    std::fflush(stdout);
    std::exit(1);
  }
}

// Exits 1 with the message on an error Status (same reason as CheckCuda).
inline void MustOk(const absl::Status& status) {
  if (!status.ok()) {
    std::fprintf(stderr, "%s\n", std::string(status.message()).c_str());
    std::fflush(stdout);
    std::exit(1);
  }
}

// The benchmark's CUDA context, or exit 1 with the reason (no GPU, no driver, ...).
inline std::unique_ptr<engine::CudaContext> MustCreateContext(size_t arena_bytes = 0) {
  absl::StatusOr<std::unique_ptr<engine::CudaContext>> context =
      engine::CudaContext::Create({.arena_bytes = arena_bytes});
  MustOk(context.status());
  return *std::move(context);
}

// Mean milliseconds per call of `body` over `iterations` calls after `warmup` calls, timed with
// CUDA events on `stream`.
inline double TimeMs(cudaStream_t stream, int warmup, int iterations,
                     const std::function<void()>& body) {
  for (int i = 0; i < warmup; ++i) body();
  cudaEvent_t start, stop;
  CheckCuda(cudaEventCreate(&start), "cudaEventCreate");
  CheckCuda(cudaEventCreate(&stop), "cudaEventCreate");
  CheckCuda(cudaEventRecord(start, stream), "cudaEventRecord");
  for (int i = 0; i < iterations; ++i) body();
  CheckCuda(cudaEventRecord(stop, stream), "cudaEventRecord");
  CheckCuda(cudaEventSynchronize(stop), "cudaEventSynchronize");
  float ms = 0.0f;
  CheckCuda(cudaEventElapsedTime(&ms, start, stop), "cudaEventElapsedTime");
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  return static_cast<double>(ms) / iterations;
}

// Fills `bytes` of device memory with a random 1 MiB pattern from `make_byte`, tiled by
// doubling device-to-device copies.
inline void FillTiled(void* device, size_t bytes,
                      const std::function<uint8_t(std::mt19937&)>& make_byte, uint32_t seed) {
  std::mt19937 rng(seed);
  const size_t chunk = std::min(bytes, size_t{1} << 20);
  std::vector<uint8_t> host(chunk);
  for (uint8_t& b : host) b = make_byte(rng);
  char* dst = static_cast<char*>(device);
  CheckCuda(cudaMemcpy(dst, host.data(), chunk, cudaMemcpyHostToDevice), "cudaMemcpy");
  for (size_t filled = chunk; filled < bytes;) {
    const size_t n = std::min(filled, bytes - filled);
    CheckCuda(cudaMemcpy(dst + filled, dst, n, cudaMemcpyDeviceToDevice), "cudaMemcpy");
    filled += n;
  }
}

// MeasurementContext() with the GPU as "device" and the host CPU kept as "host".
inline nlohmann::json GpuMeasurementContext(const engine::CudaDeviceInfo& device) {
  nlohmann::json context = MeasurementContext();
  context["host"] = context["device"];
  context["device"] = device.name;
  context["compute_capability"] =
      std::to_string(device.compute_major) + "." + std::to_string(device.compute_minor);
  context["driver"] = device.driver_version;
  context["runtime"] = device.runtime_version;
  context["num_sms"] = device.num_sms;
  return context;
}

}  // namespace moeserve::bench
