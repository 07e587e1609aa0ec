#include "engine/ops/cuda/cuda_context.h"

#include <cuda_runtime_api.h>

#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "engine/ops/cuda/check.h"

namespace moeserve::engine {

std::string CudaDeviceInfo::ToString() const {
  return absl::StrFormat("%s (device %d, sm_%d%d, %d SMs, %.1f GiB, driver %d, runtime %d)", name,
                         device_index, compute_major, compute_minor, num_sms,
                         static_cast<double>(total_memory_bytes) / (1 << 30), driver_version,
                         runtime_version);
}

absl::Status CudaDeviceAvailable() {
  int count = 0;
  const cudaError_t error = cudaGetDeviceCount(&count);
  if (error != cudaSuccess) {
    return absl::FailedPreconditionError(
        absl::StrCat("no CUDA device: ", CudaStatus(error, "cudaGetDeviceCount").message()));
  }
  if (count == 0) {
    return absl::FailedPreconditionError("no CUDA device: cudaGetDeviceCount returned 0");
  }
  return absl::OkStatus();
}

absl::StatusOr<CudaDeviceInfo> QueryCudaDevice(int device_index) {
  cudaDeviceProp prop{};
  MOESERVE_CUDA_RETURN_IF_ERROR(cudaGetDeviceProperties(&prop, device_index));
  CudaDeviceInfo info;
  info.device_index = device_index;
  info.name = prop.name;
  info.compute_major = prop.major;
  info.compute_minor = prop.minor;
  info.num_sms = prop.multiProcessorCount;
  info.total_memory_bytes = prop.totalGlobalMem;
  info.l2_cache_bytes = static_cast<size_t>(prop.l2CacheSize);
  MOESERVE_CUDA_RETURN_IF_ERROR(cudaDriverGetVersion(&info.driver_version));
  MOESERVE_CUDA_RETURN_IF_ERROR(cudaRuntimeGetVersion(&info.runtime_version));
  return info;
}

absl::StatusOr<std::unique_ptr<CudaContext>> CudaContext::Create(
    const CudaContextOptions& options) {
  if (absl::Status available = CudaDeviceAvailable(); !available.ok()) {
    return absl::FailedPreconditionError(
        absl::StrCat("the CUDA backend was requested but ", available.message()));
  }
  MOESERVE_CUDA_RETURN_IF_ERROR(cudaSetDevice(options.device_index));
  absl::StatusOr<CudaDeviceInfo> device = QueryCudaDevice(options.device_index);
  if (!device.ok()) return device.status();
  absl::StatusOr<DeviceArena> arena = DeviceArena::Create(options.arena_bytes);
  if (!arena.ok()) return arena.status();
  cudaStream_t stream = nullptr;
  MOESERVE_CUDA_RETURN_IF_ERROR(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  return std::unique_ptr<CudaContext>(
      new CudaContext(*std::move(device), stream, *std::move(arena)));
}

CudaContext::~CudaContext() {
  if (stream_ != nullptr) (void)cudaStreamDestroy(static_cast<cudaStream_t>(stream_));
}

absl::Status CudaContext::ReserveArena(size_t bytes) {
  MOESERVE_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(static_cast<cudaStream_t>(stream_)));
  arena_ = DeviceArena();  // free the old buffer before allocating the new one
  absl::StatusOr<DeviceArena> arena = DeviceArena::Create(bytes);
  if (!arena.ok()) return arena.status();
  arena_ = *std::move(arena);
  return absl::OkStatus();
}

absl::Status CudaContext::Synchronize() const {
  MOESERVE_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(static_cast<cudaStream_t>(stream_)));
  return absl::OkStatus();
}

}  // namespace moeserve::engine
