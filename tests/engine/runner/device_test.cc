// SelectDevice: --device cpu always works; cuda refuses with the reason when this build or this
// machine cannot run the model on a GPU; auto falls back to the CPU and says why.
#include "engine/runner/device.h"

#include <gtest/gtest.h>

#ifdef MOESERVE_HAVE_CUDA
#include "engine/ops/cuda/cuda_context.h"
#endif

namespace moeserve::engine {
namespace {

bool MachineHasGpu() {
#ifdef MOESERVE_HAVE_CUDA
  return CudaDeviceAvailable().ok();
#else
  return false;
#endif
}

TEST(SelectDeviceTest, CpuIsAlwaysAvailable) {
  absl::StatusOr<DeviceSelection> device = SelectDevice("cpu");
  ASSERT_TRUE(device.ok()) << device.status();
  EXPECT_EQ(device->kind, DeviceKind::kCpu);
  EXPECT_EQ(device->name, "cpu");
}

TEST(SelectDeviceTest, UnknownDeviceNamesTheFlag) {
  absl::StatusOr<DeviceSelection> device = SelectDevice("tpu");
  ASSERT_FALSE(device.ok());
  EXPECT_EQ(device.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(device.status().message().find("--device"), absl::string_view::npos);
  EXPECT_NE(device.status().message().find("tpu"), absl::string_view::npos);
}

TEST(SelectDeviceTest, CudaWithoutGpuRefusesWithTheReason) {
  if (MachineHasGpu()) GTEST_SKIP() << "a GPU is present; this checks the no-GPU refusal";
  absl::StatusOr<DeviceSelection> device = SelectDevice("cuda");
  ASSERT_FALSE(device.ok());
  EXPECT_EQ(device.status().code(), absl::StatusCode::kFailedPrecondition);
  const absl::string_view message = device.status().message();
  EXPECT_EQ(message.substr(0, 15), "--device cuda: ") << message;
  if (BuiltWithCuda()) {
    EXPECT_NE(message.find("cudaGetDeviceCount"), absl::string_view::npos) << message;
  } else {
    EXPECT_NE(message.find("no CUDA backend"), absl::string_view::npos) << message;
  }
}

TEST(SelectDeviceTest, AutoWithoutGpuFallsBackToCpuAndSaysWhy) {
  if (MachineHasGpu()) GTEST_SKIP() << "a GPU is present; this checks the CPU fallback";
  absl::StatusOr<DeviceSelection> device = SelectDevice("auto");
  ASSERT_TRUE(device.ok()) << device.status();
  EXPECT_EQ(device->kind, DeviceKind::kCpu);
  EXPECT_NE(device->description.find("no GPU"), std::string::npos) << device->description;
}

TEST(SelectDeviceTest, CudaWithGpuDescribesTheDevice) {
  if (!MachineHasGpu()) GTEST_SKIP() << "no CUDA device (or no CUDA backend in this build)";
  absl::StatusOr<DeviceSelection> device = SelectDevice("cuda");
  ASSERT_TRUE(device.ok()) << device.status();
  EXPECT_EQ(device->kind, DeviceKind::kCuda);
  EXPECT_EQ(device->name, "cuda:0");
  EXPECT_NE(device->description.find("sm_"), std::string::npos) << device->description;
}

}  // namespace
}  // namespace moeserve::engine
