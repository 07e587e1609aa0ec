#include "engine/ops/cuda/device_buffer.h"

#include <cuda_runtime_api.h>

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "engine/ops/cuda/check.h"

namespace moeserve::engine {

absl::StatusOr<DeviceBuffer> DeviceBuffer::Allocate(size_t bytes) {
  if (bytes == 0) return DeviceBuffer();
  void* data = nullptr;
  const cudaError_t error = cudaMalloc(&data, bytes);
  if (error != cudaSuccess) {
    return CudaStatus(error, absl::StrCat("cudaMalloc(", bytes, " bytes)").c_str());
  }
  return DeviceBuffer(data, bytes);
}

DeviceBuffer::~DeviceBuffer() { Release(); }

DeviceBuffer::DeviceBuffer(DeviceBuffer&& other) noexcept
    : data_(std::exchange(other.data_, nullptr)),
      size_bytes_(std::exchange(other.size_bytes_, 0)) {}

DeviceBuffer& DeviceBuffer::operator=(DeviceBuffer&& other) noexcept {
  if (this != &other) {
    Release();
    data_ = std::exchange(other.data_, nullptr);
    size_bytes_ = std::exchange(other.size_bytes_, 0);
  }
  return *this;
}

void DeviceBuffer::Release() {
  // cudaFree's error is unrecoverable here; a sticky error shows at the next checked call.
  if (data_ != nullptr) (void)cudaFree(data_);
  data_ = nullptr;
  size_bytes_ = 0;
}

absl::Status DeviceBuffer::CopyFromHost(const void* host, size_t bytes) {
  if (bytes > size_bytes_) {
    return absl::OutOfRangeError(
        absl::StrCat("CopyFromHost of ", bytes, " bytes into a ", size_bytes_, "-byte buffer"));
  }
  if (bytes == 0) return absl::OkStatus();
  MOESERVE_CUDA_RETURN_IF_ERROR(cudaMemcpy(data_, host, bytes, cudaMemcpyHostToDevice));
  return absl::OkStatus();
}

absl::Status DeviceBuffer::CopyToHost(void* host, size_t bytes) const {
  if (bytes > size_bytes_) {
    return absl::OutOfRangeError(
        absl::StrCat("CopyToHost of ", bytes, " bytes from a ", size_bytes_, "-byte buffer"));
  }
  if (bytes == 0) return absl::OkStatus();
  MOESERVE_CUDA_RETURN_IF_ERROR(cudaMemcpy(host, data_, bytes, cudaMemcpyDeviceToHost));
  return absl::OkStatus();
}

absl::Status DeviceBuffer::Fill(uint8_t value) {
  if (size_bytes_ == 0) return absl::OkStatus();
  MOESERVE_CUDA_RETURN_IF_ERROR(cudaMemset(data_, value, size_bytes_));
  return absl::OkStatus();
}

absl::StatusOr<DeviceBuffer> DeviceBuffer::FromHost(const void* host, size_t bytes) {
  absl::StatusOr<DeviceBuffer> buffer = Allocate(bytes);
  if (!buffer.ok()) return buffer.status();
  if (absl::Status s = buffer->CopyFromHost(host, bytes); !s.ok()) return s;
  return buffer;
}

absl::StatusOr<DeviceArena> DeviceArena::Create(size_t capacity_bytes) {
  absl::StatusOr<DeviceBuffer> buffer = DeviceBuffer::Allocate(capacity_bytes);
  if (!buffer.ok()) return buffer.status();
  return DeviceArena(*std::move(buffer));
}

absl::StatusOr<void*> DeviceArena::Allocate(size_t bytes) {
  const size_t begin = (used_bytes_ + kAlignmentBytes - 1) / kAlignmentBytes * kAlignmentBytes;
  if (begin + bytes > buffer_.size_bytes()) {
    return absl::ResourceExhaustedError(absl::StrCat("DeviceArena: ", bytes,
                                                     " bytes requested with ", used_bytes_, " of ",
                                                     buffer_.size_bytes(), " in use"));
  }
  used_bytes_ = begin + bytes;
  peak_bytes_ = std::max(peak_bytes_, used_bytes_);
  return static_cast<char*>(buffer_.data()) + begin;
}

}  // namespace moeserve::engine
