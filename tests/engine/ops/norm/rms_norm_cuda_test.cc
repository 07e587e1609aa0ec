// Tests of the CUDA RMSNorm (bf16 in/out, fp32 statistics) against RmsNormCpu on the same
// bf16-rounded inputs. Skips, saying why, when no CUDA device is present (ARCHITECTURE.md §5
// rule 8).
#include "engine/ops/norm/rms_norm_cuda.h"

#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <vector>

#include "engine/ops/dtype.h"
#include "engine/ops/norm/rms_norm.h"
#include "tests/testing/random.h"
#include "tests/testing/tensor_compare.h"

namespace moeserve::engine {
namespace {

using ::moeserve::engine::testing::MaxRelErrorAtMost;
using ::moeserve::engine::testing::TestRng;

// A device buffer of `count` uint16_t, freed on destruction.
class DeviceBf16Buffer {
 public:
  explicit DeviceBf16Buffer(size_t count) : bytes_(count * sizeof(uint16_t)) {
    error_ = cudaMalloc(&data_, bytes_);
  }
  ~DeviceBf16Buffer() {
    if (data_ != nullptr) cudaFree(data_);
  }
  DeviceBf16Buffer(const DeviceBf16Buffer&) = delete;
  DeviceBf16Buffer& operator=(const DeviceBf16Buffer&) = delete;

  cudaError_t error() const { return error_; }
  uint16_t* data() { return static_cast<uint16_t*>(data_); }
  cudaError_t CopyFrom(const std::vector<uint16_t>& host) {
    return cudaMemcpy(data_, host.data(), bytes_, cudaMemcpyHostToDevice);
  }
  cudaError_t CopyTo(std::vector<uint16_t>& host) const {
    host.resize(bytes_ / sizeof(uint16_t));
    return cudaMemcpy(host.data(), data_, bytes_, cudaMemcpyDeviceToHost);
  }

 private:
  size_t bytes_;
  void* data_ = nullptr;
  cudaError_t error_ = cudaSuccess;
};

class RmsNormCudaTest : public ::testing::Test {
 protected:
  void SetUp() override {
    int count = 0;
    const cudaError_t error = cudaGetDeviceCount(&count);
    if (error != cudaSuccess) {
      GTEST_SKIP() << "no CUDA device: " << cudaGetErrorString(error);
    }
    if (count == 0) GTEST_SKIP() << "no CUDA device: cudaGetDeviceCount returned 0";
  }
};

// Runs the kernel on random bf16 rows and compares with RmsNormCpu on the same (bf16-valued)
// inputs; the only differences are fp32 summation order and the final bf16 rounding (2^-9).
void CheckAgainstCpu(TestRng& rng, int64_t rows, int64_t dim, float eps, bool in_place) {
  SCOPED_TRACE("rows=" + std::to_string(rows) + " dim=" + std::to_string(dim) +
               (in_place ? " in place" : ""));
  const std::vector<uint16_t> x = rng.NormalBf16(static_cast<size_t>(rows * dim));
  std::vector<uint16_t> w(static_cast<size_t>(dim));
  for (uint16_t& v : w) v = FloatToBf16(static_cast<float>(rng.Uniform(0.5, 1.5)));

  DeviceBf16Buffer x_dev(x.size());
  DeviceBf16Buffer w_dev(w.size());
  DeviceBf16Buffer y_dev(x.size());
  ASSERT_EQ(x_dev.error(), cudaSuccess) << cudaGetErrorString(x_dev.error());
  ASSERT_EQ(w_dev.error(), cudaSuccess) << cudaGetErrorString(w_dev.error());
  ASSERT_EQ(y_dev.error(), cudaSuccess) << cudaGetErrorString(y_dev.error());
  ASSERT_EQ(x_dev.CopyFrom(x), cudaSuccess);
  ASSERT_EQ(w_dev.CopyFrom(w), cudaSuccess);
  uint16_t* out = in_place ? x_dev.data() : y_dev.data();

  const int launch = LaunchRmsNormBf16(x_dev.data(), w_dev.data(), eps, rows, dim, out, nullptr);
  ASSERT_EQ(launch, 0) << cudaGetErrorString(static_cast<cudaError_t>(launch));
  const cudaError_t sync = cudaDeviceSynchronize();
  ASSERT_EQ(sync, cudaSuccess) << cudaGetErrorString(sync);
  std::vector<uint16_t> y;
  ASSERT_EQ((in_place ? x_dev : y_dev).CopyTo(y), cudaSuccess);

  std::vector<float> expected(x.size());
  RmsNormCpu(Bf16ToFloats(x), Bf16ToFloats(w), eps, rows, absl::MakeSpan(expected));
  EXPECT_TRUE(MaxRelErrorAtMost(Bf16ToFloats(y), expected, 1e-2));
}

TEST_F(RmsNormCudaTest, MatchesCpuOnBf16Rows) {
  TestRng rng;
  CheckAgainstCpu(rng, 37, 2048, 1e-6f, /*in_place=*/false);  // V2-Lite hidden
  CheckAgainstCpu(rng, 5, 576, 1e-6f, /*in_place=*/false);    // not a multiple of 256 threads
  CheckAgainstCpu(rng, 3, 7168, 1e-6f, /*in_place=*/false);   // V3 hidden
  CheckAgainstCpu(rng, 11, 512, 1e-5f, /*in_place=*/false);   // kv_a latent
  CheckAgainstCpu(rng, 2, 100, 1e-6f, /*in_place=*/false);    // fewer columns than threads
}

TEST_F(RmsNormCudaTest, InPlaceMatchesCpu) {
  TestRng rng(testing::kDefaultTestSeed + 1);
  CheckAgainstCpu(rng, 9, 1536, 1e-6f, /*in_place=*/true);
}

// residual ← bf16(residual + x); y = RMSNorm(residual): against RmsNormCpu on the bf16-rounded
// sum, and the stored residual exactly.
void CheckFusedAddAgainstCpu(TestRng& rng, int64_t rows, int64_t dim, float eps) {
  SCOPED_TRACE("fused add rows=" + std::to_string(rows) + " dim=" + std::to_string(dim));
  const size_t n = static_cast<size_t>(rows * dim);
  const std::vector<uint16_t> residual = rng.NormalBf16(n, 4.0);
  const std::vector<uint16_t> x = rng.NormalBf16(n);
  std::vector<uint16_t> w(static_cast<size_t>(dim));
  for (uint16_t& v : w) v = FloatToBf16(static_cast<float>(rng.Uniform(0.5, 1.5)));
  DeviceBf16Buffer residual_dev(n), x_dev(n), w_dev(w.size()), y_dev(n);
  ASSERT_EQ(residual_dev.CopyFrom(residual), cudaSuccess);
  ASSERT_EQ(x_dev.CopyFrom(x), cudaSuccess);
  ASSERT_EQ(w_dev.CopyFrom(w), cudaSuccess);
  ASSERT_EQ(cudaMemset(y_dev.data(), 0xFF, n * sizeof(uint16_t)), cudaSuccess);  // NaN poison
  const int launch = LaunchFusedAddRmsNormBf16(residual_dev.data(), x_dev.data(), w_dev.data(), eps,
                                               rows, dim, y_dev.data(), nullptr);
  ASSERT_EQ(launch, 0) << cudaGetErrorString(static_cast<cudaError_t>(launch));
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  std::vector<uint16_t> y, new_residual;
  ASSERT_EQ(y_dev.CopyTo(y), cudaSuccess);
  ASSERT_EQ(residual_dev.CopyTo(new_residual), cudaSuccess);

  std::vector<uint16_t> sum(n);
  for (size_t i = 0; i < n; ++i) {
    sum[i] = FloatToBf16(Bf16ToFloat(residual[i]) + Bf16ToFloat(x[i]));
  }
  EXPECT_EQ(new_residual, sum);
  std::vector<float> expected(n);
  RmsNormCpu(Bf16ToFloats(sum), Bf16ToFloats(w), eps, rows, absl::MakeSpan(expected));
  EXPECT_TRUE(MaxRelErrorAtMost(Bf16ToFloats(y), expected, 1e-2));
}

TEST_F(RmsNormCudaTest, FusedResidualAddMatchesCpu) {
  TestRng rng(testing::kDefaultTestSeed + 2);
  CheckFusedAddAgainstCpu(rng, 33, 7168, 1e-6f);  // V3
  CheckFusedAddAgainstCpu(rng, 7, 2048, 1e-6f);   // V2-Lite
  CheckFusedAddAgainstCpu(rng, 1, 100, 1e-5f);
}

TEST_F(RmsNormCudaTest, ZeroRowsIsANoOp) {
  EXPECT_EQ(LaunchRmsNormBf16(nullptr, nullptr, 1e-6f, 0, 2048, nullptr, nullptr), 0);
}

}  // namespace
}  // namespace moeserve::engine
