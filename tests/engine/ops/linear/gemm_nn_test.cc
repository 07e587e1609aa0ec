// GemmNnCpu (y = x·V, V row-major [k, n] with a row stride) on every instruction set this CPU
// has, against a double-precision reference (within 1e-6 of Σ|x·v|), and against each other:
// every implementation is one std::fma-rounded chain per element in k order, so all must agree
// bit for bit. Also: trailing zero columns of x (masked keys) leave the result unchanged, bit
// for bit; accumulation adds the chain to y once; stride padding is never written; BF16 V gives
// the same bits as fp32 V holding the widened values, on every instruction set.
#include "engine/ops/linear/gemm_nn.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "engine/ops/dtype.h"
#include "tests/testing/random.h"

namespace moeserve::engine {
namespace {

using ::moeserve::engine::testing::TestRng;

constexpr float kSentinel = -4321.0f;

struct Shape {
  int64_t m, n, k, ldx, ldv, ldy;
};

std::vector<CpuIsa> AvailableIsas() {
  std::vector<CpuIsa> isas;
  for (const CpuIsa isa : {CpuIsa::kPortable, CpuIsa::kAvx2, CpuIsa::kAvx512}) {
    if (CpuIsaAvailable(isa)) isas.push_back(isa);
  }
  return isas;
}

TEST(GemmNnCpuTest, MatchesReferenceAndAgreesAcrossIsasBitForBit) {
  TestRng rng;
  for (const Shape& s : {Shape{1, 1, 1, 1, 1, 1}, Shape{2, 512, 64, 64, 576, 512},
                         Shape{3, 128, 150, 150, 512, 384}, Shape{7, 70, 33, 40, 80, 75},
                         Shape{37, 65, 200, 200, 65, 65}, Shape{4, 16, 0, 1, 16, 16}}) {
    for (const bool accumulate : {false, true}) {
      SCOPED_TRACE("m=" + std::to_string(s.m) + " n=" + std::to_string(s.n) +
                   " k=" + std::to_string(s.k) + (accumulate ? " accumulate" : ""));
      const std::vector<float> x = rng.UniformFloats(static_cast<size_t>(s.m * s.ldx), -1.0, 1.0);
      const std::vector<float> v =
          rng.UniformFloats(static_cast<size_t>(std::max<int64_t>(s.k, 1) * s.ldv), -1.0, 1.0);
      std::vector<float> y0 = rng.UniformFloats(static_cast<size_t>(s.m * s.ldy), -1.0, 1.0);
      for (int64_t i = 0; i < s.m; ++i) {
        for (int64_t j = s.n; j < s.ldy; ++j) y0[i * s.ldy + j] = kSentinel;
      }
      std::vector<float> first;
      for (const CpuIsa isa : AvailableIsas()) {
        SCOPED_TRACE(CpuIsaName(isa));
        std::vector<float> y = y0;
        GemmNnCpu(x.data(), s.ldx, v.data(), s.ldv, y.data(), s.ldy, s.m, s.n, s.k, accumulate,
                  isa);
        for (int64_t i = 0; i < s.m; ++i) {
          for (int64_t j = 0; j < s.ldy; ++j) {
            const size_t at = static_cast<size_t>(i * s.ldy + j);
            if (j >= s.n) {
              ASSERT_EQ(y[at], kSentinel) << "stride padding written at (" << i << ", " << j << ")";
              continue;
            }
            double expected = accumulate ? y0[at] : 0.0, magnitude = std::fabs(expected);
            for (int64_t kk = 0; kk < s.k; ++kk) {
              const double term = static_cast<double>(x[i * s.ldx + kk]) * v[kk * s.ldv + j];
              expected += term;
              magnitude += std::fabs(term);
            }
            ASSERT_LE(std::fabs(y[at] - expected), 1e-6 * magnitude + 1e-30)
                << "(" << i << ", " << j << ")";
          }
        }
        if (first.empty()) {
          first = y;
        } else {
          ASSERT_EQ(y, first) << "differs from " << CpuIsaName(AvailableIsas()[0]);
        }
      }
    }
  }
}

// Attention's P·V with masked keys: x extended by zero columns over extra (finite) rows of V.
TEST(GemmNnCpuTest, TrailingZeroTermsLeaveTheResultUnchanged) {
  TestRng rng(testing::kDefaultTestSeed + 1);
  const int64_t m = 6, n = 200, k = 77, extra = 51;
  std::vector<float> x = rng.UniformFloats(static_cast<size_t>(m * (k + extra)), -1.0, 1.0);
  for (int64_t i = 0; i < m; ++i) {
    for (int64_t kk = k; kk < k + extra; ++kk) x[i * (k + extra) + kk] = 0.0f;
  }
  const std::vector<float> v = rng.UniformFloats(static_cast<size_t>((k + extra) * n), -1, 1);
  for (const CpuIsa isa : AvailableIsas()) {
    SCOPED_TRACE(CpuIsaName(isa));
    std::vector<float> short_k(static_cast<size_t>(m * n)), long_k(short_k.size());
    GemmNnCpu(x.data(), k + extra, v.data(), n, short_k.data(), n, m, n, k, false, isa);
    GemmNnCpu(x.data(), k + extra, v.data(), n, long_k.data(), n, m, n, k + extra, false, isa);
    EXPECT_EQ(short_k, long_k);
  }
}

// The BF16 overload (the BF16 latent cache's P·V) widens exactly: bit-identical to the fp32
// overload on the widened values, with accumulation and strides, for every instruction set.
TEST(GemmNnCpuTest, Bf16ValuesEqualTheirWidenedFp32BitForBit) {
  TestRng rng(testing::kDefaultTestSeed + 7);
  for (const Shape& s : {Shape{1, 128, 64, 64, 576, 512}, Shape{5, 70, 33, 40, 80, 75},
                         Shape{8, 512, 64, 64, 576, 512}}) {
    SCOPED_TRACE("m=" + std::to_string(s.m) + " n=" + std::to_string(s.n));
    const std::vector<float> x = rng.UniformFloats(static_cast<size_t>(s.m * s.ldx), -1.0, 1.0);
    const std::vector<uint16_t> v_bf16 =
        FloatsToBf16(rng.NormalFloats(static_cast<size_t>(s.k * s.ldv)));
    const std::vector<float> v_widened = Bf16ToFloats(v_bf16);
    const std::vector<float> y0 = rng.UniformFloats(static_cast<size_t>(s.m * s.ldy), -1.0, 1.0);
    for (const CpuIsa isa : AvailableIsas()) {
      SCOPED_TRACE(CpuIsaName(isa));
      for (const bool accumulate : {false, true}) {
        std::vector<float> from_bf16 = y0, from_fp32 = y0;
        GemmNnCpu(x.data(), s.ldx, v_bf16.data(), s.ldv, from_bf16.data(), s.ldy, s.m, s.n, s.k,
                  accumulate, isa);
        GemmNnCpu(x.data(), s.ldx, v_widened.data(), s.ldv, from_fp32.data(), s.ldy, s.m, s.n,
                  s.k, accumulate, isa);
        ASSERT_EQ(from_bf16, from_fp32);
        ASSERT_NE(from_bf16, y0);
      }
    }
  }
}

}  // namespace
}  // namespace moeserve::engine
