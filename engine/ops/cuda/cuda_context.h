// The CUDA backend's per-device state: the device's properties (read once at start), the
// stream every op of a step is queued on, and the step arena for activations.
//
// Created once by the backend when `--device cuda` is asked for; Create fails with
// FailedPrecondition naming cudaGetDeviceCount's error when the machine has no usable GPU, so
// the server can say so and exit. The cuBLASLt handle and GEMM workspace live in CublasLtGemm
// (engine/ops/linear/gemm_cublaslt.h), a separate target, so that binaries without GEMMs (and
// the server's metrics thread, build-notes pitfall 1) do not load libcublasLt.
// Engine thread only.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/ops/cuda/device_buffer.h"

namespace moeserve::engine {

struct CudaDeviceInfo {
  int device_index = 0;
  std::string name;  // "NVIDIA H100 80GB HBM3"
  int compute_major = 0;
  int compute_minor = 0;
  int num_sms = 0;
  size_t total_memory_bytes = 0;
  size_t l2_cache_bytes = 0;
  int driver_version = 0;   // cudaDriverGetVersion, e.g. 13000
  int runtime_version = 0;  // cudaRuntimeGetVersion

  // cuBLASLt's DeepSeek-style VEC128/BLK128x128 FP8 scaling exists only on sm_90 (reference §5.2).
  bool supports_block_scaled_fp8() const { return compute_major == 9 && compute_minor == 0; }
  std::string ToString() const;
};

// OK when at least one device is usable; otherwise FailedPrecondition with the reason
// ("no CUDA device: cudaGetDeviceCount failed: cudaErrorInsufficientDriver (35): ...").
// Tests GTEST_SKIP with this message.
absl::Status CudaDeviceAvailable();

// Reads the properties of `device_index`.
absl::StatusOr<CudaDeviceInfo> QueryCudaDevice(int device_index);

struct CudaContextOptions {
  int device_index = 0;
  size_t arena_bytes = size_t{256} << 20;  // per-step activation scratch
};

class CudaContext {
 public:
  static absl::StatusOr<std::unique_ptr<CudaContext>> Create(const CudaContextOptions& options);
  ~CudaContext();
  CudaContext(const CudaContext&) = delete;
  CudaContext& operator=(const CudaContext&) = delete;

  const CudaDeviceInfo& device() const { return device_; }
  // A cudaStream_t (void* so this header needs no CUDA headers).
  void* stream() const { return stream_; }
  DeviceArena& arena() { return arena_; }
  // Replaces the arena with one of `bytes` (the model runner sizes it once the weights are on
  // the device and the largest step is known). Nothing may be live in the old one.
  absl::Status ReserveArena(size_t bytes);

  // Waits for everything queued on stream().
  absl::Status Synchronize() const;

 private:
  CudaContext(CudaDeviceInfo device, void* stream, DeviceArena arena)
      : device_(std::move(device)), stream_(stream), arena_(std::move(arena)) {}

  // Constant after construction.
  CudaDeviceInfo device_;
  void* stream_;
  // Engine thread only.
  DeviceArena arena_;
};

}  // namespace moeserve::engine
