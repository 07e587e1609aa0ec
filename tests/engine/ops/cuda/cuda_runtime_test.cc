// The CUDA backend's runtime pieces: error statuses that name the call, the clear error when
// CUDA is asked for on a machine without a GPU, DeviceBuffer and the step arena.
#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "engine/ops/cuda/check.h"
#include "engine/ops/cuda/cuda_context.h"
#include "engine/ops/cuda/device_buffer.h"
#include "tests/testing/cuda_test_util.h"

namespace moeserve::engine {
namespace {

using ::moeserve::engine::testing::CudaTest;

absl::Status FailingCall() {
  MOESERVE_CUDA_RETURN_IF_ERROR(cudaErrorInvalidValue);
  return absl::OkStatus();
}

absl::Status FailingCublasCall() {
  MOESERVE_CUBLAS_RETURN_IF_ERROR(CUBLAS_STATUS_NOT_SUPPORTED);
  return absl::OkStatus();
}

// Needs no device: only the error-code tables of cudart and cuBLASLt.
TEST(CudaCheckTest, StatusNamesTheCallAndTheCode) {
  const absl::Status cuda = FailingCall();
  EXPECT_EQ(cuda.code(), absl::StatusCode::kInternal);
  EXPECT_NE(cuda.message().find("cudaErrorInvalidValue"), std::string::npos) << cuda;
  EXPECT_NE(cuda.message().find("(1)"), std::string::npos) << cuda;
  const absl::Status cublas = FailingCublasCall();
  EXPECT_EQ(cublas.code(), absl::StatusCode::kUnimplemented);
  EXPECT_NE(cublas.message().find("CUBLAS_STATUS_NOT_SUPPORTED"), std::string::npos) << cublas;
  EXPECT_TRUE(CudaStatus(cudaSuccess, "x").ok());
  EXPECT_EQ(CudaStatus(cudaErrorMemoryAllocation, "cudaMalloc").code(),
            absl::StatusCode::kResourceExhausted);
}

// Runs only where there is NO device: asking for the backend must fail clearly, not crash.
TEST(CudaContextTest, CreateFailsClearlyWithoutAGpu) {
  if (CudaDeviceAvailable().ok()) GTEST_SKIP() << "a CUDA device is present";
  auto context = CudaContext::Create({});
  ASSERT_FALSE(context.ok());
  EXPECT_EQ(context.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(context.status().message().find("the CUDA backend was requested but no CUDA device"),
            std::string::npos)
      << context.status();
  EXPECT_NE(context.status().message().find("cudaGetDeviceCount"), std::string::npos)
      << context.status();
}

using CudaRuntimeTest = CudaTest;

TEST_F(CudaRuntimeTest, ContextReadsDeviceProperties) {
  auto context = CudaContext::Create({.arena_bytes = 1 << 20});
  ASSERT_TRUE(context.ok()) << context.status();
  const CudaDeviceInfo& device = (*context)->device();
  EXPECT_FALSE(device.name.empty());
  EXPECT_GE(device.compute_major, 7);
  EXPECT_GT(device.num_sms, 0);
  EXPECT_GT(device.total_memory_bytes, size_t{0});
  EXPECT_GT(device.driver_version, 0);
  EXPECT_NE((*context)->stream(), nullptr);
  EXPECT_TRUE((*context)->Synchronize().ok());
  std::printf("%s\n", device.ToString().c_str());
}

TEST_F(CudaRuntimeTest, DeviceBufferRoundTripsAndMoves) {
  std::vector<int> host(1000);
  for (size_t i = 0; i < host.size(); ++i) host[i] = static_cast<int>(i * 7);
  auto buffer = DeviceBuffer::Allocate(host.size() * sizeof(int));
  ASSERT_TRUE(buffer.ok()) << buffer.status();
  ASSERT_TRUE(buffer->CopyFromHost(host.data(), host.size() * sizeof(int)).ok());
  DeviceBuffer moved = *std::move(buffer);
  std::vector<int> back(host.size());
  ASSERT_TRUE(moved.CopyToHost(back.data(), back.size() * sizeof(int)).ok());
  EXPECT_EQ(back, host);
  EXPECT_EQ(moved.CopyToHost(back.data(), 1 << 20).code(), absl::StatusCode::kOutOfRange);
  // An impossible allocation is a ResourceExhausted status naming cudaMalloc, not a crash.
  auto huge = DeviceBuffer::Allocate(size_t{1} << 50);
  ASSERT_FALSE(huge.ok());
  EXPECT_NE(huge.status().message().find("cudaMalloc"), std::string::npos) << huge.status();
}

TEST_F(CudaRuntimeTest, ArenaAlignsAndResets) {
  auto arena = DeviceArena::Create(1 << 20);
  ASSERT_TRUE(arena.ok()) << arena.status();
  auto a = arena->Allocate(100);
  auto b = arena->Allocate(100);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(reinterpret_cast<uintptr_t>(*a) % DeviceArena::kAlignmentBytes, 0u);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(*b) % DeviceArena::kAlignmentBytes, 0u);
  EXPECT_NE(*a, *b);
  EXPECT_EQ(arena->Allocate(2 << 20).status().code(), absl::StatusCode::kResourceExhausted);
  arena->Reset();
  auto c = arena->Allocate(100);
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(*c, *a);
  EXPECT_GE(arena->peak_bytes(), size_t{356});
}

}  // namespace
}  // namespace moeserve::engine
