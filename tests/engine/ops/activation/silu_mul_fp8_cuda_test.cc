// The fused SiLU·mul + FP8 re-quantization kernel (silu_mul_fp8_cuda.h) against the CPU ops it
// fuses: SiluMulCpu, then QuantizeActivationsFp8, on the same bf16 inputs. The GPU's expf may
// differ from std::exp by an ulp, so a quantized value may land one E4M3 code away where the
// activation sits on a rounding boundary: at most 1 in 1000 values may, and only by one code;
// scales agree to 1e-6. Checked with per-expert segments (empty ones included) and with the
// single-segment dense layout, at V2-Lite/V3 expert widths and a partial last group. Rows past
// the last segment must stay untouched. Skips without a CUDA device.
#include "engine/ops/activation/silu_mul_fp8_cuda.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "engine/ops/activation/silu_mul.h"
#include "engine/ops/dtype.h"
#include "engine/ops/linear/fp8_quant.h"
#include "engine/ops/linear/fp8_segmented_layout.h"
#include "tests/testing/cuda_test_util.h"
#include "tests/testing/random.h"

namespace moeserve::engine {
namespace {

using ::moeserve::engine::testing::CudaTest;
using ::moeserve::engine::testing::DeviceArray;
using ::moeserve::engine::testing::LaunchedOk;
using ::moeserve::engine::testing::TestRng;

class SiluMulFp8CudaTest : public CudaTest {};

// offsets empty: the dense layout over max_rows rows.
void CheckCase(TestRng& rng, int64_t width, int64_t max_rows, const std::vector<int32_t>& offsets) {
  const int64_t rows = offsets.empty() ? max_rows : offsets.back();
  const int64_t segments = offsets.empty() ? 1 : static_cast<int64_t>(offsets.size()) - 1;
  const std::vector<int32_t> dense = {0, static_cast<int32_t>(max_rows)};
  const std::vector<int32_t>& bounds = offsets.empty() ? dense : offsets;
  const int64_t groups = (width + 127) / 128;
  const std::vector<uint16_t> gate_up =
      rng.NormalBf16(static_cast<size_t>(max_rows * 2 * width), 2.0);

  std::vector<float> gate_up_f(static_cast<size_t>(rows * 2 * width));
  for (size_t i = 0; i < gate_up_f.size(); ++i) gate_up_f[i] = Bf16ToFloat(gate_up[i]);
  std::vector<float> activated(static_cast<size_t>(rows * width));
  SiluMulCpu(gate_up_f.data(), rows, width, activated.data());
  std::vector<uint8_t> q_cpu(activated.size());
  std::vector<float> s_cpu(static_cast<size_t>(rows * groups));
  QuantizeActivationsFp8(activated, rows, width, absl::MakeSpan(q_cpu), absl::MakeSpan(s_cpu));

  DeviceArray<uint16_t> gate_up_dev(gate_up);
  DeviceArray<int32_t> offsets_dev(bounds);
  DeviceArray<uint8_t> q(static_cast<size_t>(max_rows * width));
  DeviceArray<float> scales(static_cast<size_t>(max_rows * groups));
  q.Poison();
  scales.Poison();
  ASSERT_TRUE(LaunchedOk(LaunchSiluMulQuantizeFp8(gate_up_dev.data(), max_rows, width,
                                                  offsets.empty() ? nullptr : offsets_dev.data(),
                                                  segments, q.data(), scales.data(), nullptr)));
  const std::vector<uint8_t> q_gpu = q.Download();
  const std::vector<float> s_gpu = scales.Download();

  for (int64_t row = 0; row < rows; ++row) {
    const int64_t s = FindSegment(bounds.data(), segments, row);
    for (int64_t g = 0; g < groups; ++g) {
      const float actual = s_gpu[SegmentedScaleIndex(bounds[s], bounds[s + 1], groups, row, g)];
      const float expected = s_cpu[row * groups + g];
      ASSERT_LE(std::fabs(actual - expected), 1e-6f * expected) << "row " << row << " g " << g;
    }
  }
  int64_t off_by_one = 0;
  for (size_t i = 0; i < q_cpu.size(); ++i) {
    if (q_gpu[i] == q_cpu[i]) continue;
    // Same sign bit and adjacent magnitude codes: one E4M3 step apart.
    ASSERT_EQ(q_gpu[i] & 0x80, q_cpu[i] & 0x80) << "element " << i;
    ASSERT_EQ(std::abs((q_gpu[i] & 0x7F) - (q_cpu[i] & 0x7F)), 1) << "element " << i;
    ++off_by_one;
  }
  EXPECT_LE(off_by_one, static_cast<int64_t>(q_cpu.size() / 1000)) << "of " << q_cpu.size();
  for (size_t i = q_cpu.size(); i < q_gpu.size(); ++i) {
    ASSERT_EQ(q_gpu[i], 0xFF) << "byte " << i << " past the last segment was written";
  }
}

TEST_F(SiluMulFp8CudaTest, MatchesSiluMulThenCpuQuantization) {
  TestRng rng;
  for (const int64_t width : {int64_t{1408}, int64_t{2048}, int64_t{200}}) {
    SCOPED_TRACE("width=" + std::to_string(width));
    // Expert segments padded to 4 rows, three of them empty; 8 spare rows at the end.
    CheckCase(rng, width, 56, {0, 8, 8, 20, 20, 20, 48});
    // One expert with everything (the skewed case), 128-row alignment.
    CheckCase(rng, width, 384, {0, 0, 256, 256});
    // The dense layout: the shared experts' rows.
    CheckCase(rng, width, 40, {});
  }
}

}  // namespace
}  // namespace moeserve::engine
