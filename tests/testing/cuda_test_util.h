// Helpers for the CUDA op tests (ARCHITECTURE.md §5 rule 8): the skip when no device is present,
// device arrays that copy to and from std::vector, and NaN poisoning of outputs so a kernel that
// leaves an element unwritten fails instead of passing on stale memory.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "engine/ops/cuda/check.h"
#include "engine/ops/cuda/cuda_context.h"
#include "engine/ops/cuda/device_buffer.h"

namespace moeserve::engine::testing {

// Base fixture: GTEST_SKIP with cudaGetDeviceCount's error when there is no usable device.
class CudaTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const absl::Status available = CudaDeviceAvailable();
    if (!available.ok()) GTEST_SKIP() << available.message();
  }
};

// A device array of T; aborts the test (via ADD_FAILURE + empty buffer) on allocation errors.
template <typename T>
class DeviceArray {
 public:
  explicit DeviceArray(size_t count) : count_(count) {
    absl::StatusOr<DeviceBuffer> buffer = DeviceBuffer::Allocate(count * sizeof(T));
    if (!buffer.ok()) {
      ADD_FAILURE() << buffer.status();
      return;
    }
    buffer_ = *std::move(buffer);
  }
  explicit DeviceArray(const std::vector<T>& host) : DeviceArray(host.size()) { Upload(host); }

  T* data() const { return buffer_.as<T>(); }
  size_t size() const { return count_; }

  // Both wait for the device: a pageable cudaMemcpy may return before its DMA lands, and
  // neither it nor cudaMemset orders against the models' non-blocking streams.
  void Upload(const std::vector<T>& host) {
    ASSERT_EQ(host.size(), count_);
    const absl::Status s = buffer_.CopyFromHost(host.data(), count_ * sizeof(T));
    ASSERT_TRUE(s.ok()) << s;
    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  }
  std::vector<T> Download() const {
    std::vector<T> host(count_);
    const absl::Status s = buffer_.CopyToHost(host.data(), count_ * sizeof(T));
    EXPECT_TRUE(s.ok()) << s;
    return host;
  }
  // 0xFF bytes: NaN for fp32, bf16 and e4m3, -1 for int32.
  void Poison() {
    const absl::Status s = buffer_.Fill(0xFF);
    ASSERT_TRUE(s.ok()) << s;
    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  }

 private:
  size_t count_;
  DeviceBuffer buffer_;
};

// Waits for the default stream and checks the launcher's result and any asynchronous error.
inline ::testing::AssertionResult LaunchedOk(int launch_error) {
  absl::Status s = CudaLaunchStatus(launch_error, "launch");
  if (s.ok()) s = CudaStatus(cudaDeviceSynchronize(), "cudaDeviceSynchronize");
  if (!s.ok()) return ::testing::AssertionFailure() << s;
  return ::testing::AssertionSuccess();
}

}  // namespace moeserve::engine::testing
