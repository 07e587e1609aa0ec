// Tests of the scalar dtype conversions against references written here: exhaustive over every
// FP8 E4M3, F16 and BF16 code, brute-force nearest-value encoders for random and midpoint
// inputs (round-to-nearest-even), saturation and subnormals, and the safetensors dtype names.
#include "engine/ops/dtype.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <vector>

#include "tests/testing/random.h"

namespace moeserve::engine {
namespace {

using ::moeserve::engine::testing::TestRng;

constexpr float kInf = std::numeric_limits<float>::infinity();

// ---------- E4M3FN reference: 1 sign, 4 exponent (bias 7), 3 mantissa; NaN = S.1111.111.

bool IsFp8NanCode(int code) { return (code & 0x7f) == 0x7f; }

double RefFp8Decode(int code) {
  const double sign = (code & 0x80) ? -1.0 : 1.0;
  const int exponent = (code >> 3) & 0xf;
  const int mantissa = code & 0x7;
  if (exponent == 0) return sign * mantissa * std::pow(2.0, -9);  // subnormal: m · 2^-9
  return sign * (1.0 + mantissa / 8.0) * std::pow(2.0, exponent - 7);
}

// Nearest finite E4M3 value by brute force over the 127 non-negative finite codes; ties go to
// the even code (even mantissa); beyond the largest value, saturate to 448 (SATFINITE).
int RefFp8Encode(float x) {
  const int sign = std::signbit(x) ? 0x80 : 0x00;
  const double magnitude = std::fabs(static_cast<double>(x));
  int best = 0;
  double best_err = std::numeric_limits<double>::infinity();
  for (int code = 0; code <= 0x7e; ++code) {
    const double err = std::fabs(RefFp8Decode(code) - magnitude);
    if (err < best_err || (err == best_err && code % 2 == 0)) {
      best = code;
      best_err = err;
    }
  }
  return sign | best;
}

TEST(Fp8E4M3Test, DecodeMatchesReferenceForAll256Codes) {
  for (int code = 0; code < 256; ++code) {
    SCOPED_TRACE("code 0x" + std::to_string(code));
    const float v = Fp8E4M3ToFloat(static_cast<uint8_t>(code));
    if (IsFp8NanCode(code)) {
      EXPECT_TRUE(std::isnan(v));
    } else {
      EXPECT_EQ(static_cast<double>(v), RefFp8Decode(code));
      EXPECT_EQ(std::signbit(v), (code & 0x80) != 0);  // -0 stays -0
    }
  }
}

TEST(Fp8E4M3Test, DecodeThenEncodeRoundTripsEveryCodeExceptNan) {
  for (int code = 0; code < 256; ++code) {
    const uint8_t back = FloatToFp8E4M3(Fp8E4M3ToFloat(static_cast<uint8_t>(code)));
    if (IsFp8NanCode(code)) {
      EXPECT_TRUE(IsFp8NanCode(back)) << "code " << code << " -> " << int{back};
    } else {
      EXPECT_EQ(int{back}, code);
    }
  }
  EXPECT_EQ(FloatToFp8E4M3(std::numeric_limits<float>::quiet_NaN()), 0x7f);
}

TEST(Fp8E4M3Test, KnownValues) {
  EXPECT_EQ(Fp8E4M3ToFloat(0x7e), 448.0f);  // 1.75 · 2^8, reference §4
  EXPECT_EQ(Fp8E4M3ToFloat(0xfe), -448.0f);
  EXPECT_EQ(Fp8E4M3ToFloat(0x08), std::ldexp(1.0f, -6));  // min normal
  EXPECT_EQ(Fp8E4M3ToFloat(0x01), std::ldexp(1.0f, -9));  // min subnormal
  EXPECT_EQ(Fp8E4M3ToFloat(0x38), 1.0f);
  EXPECT_EQ(FloatToFp8E4M3(1.0f), 0x38);
  EXPECT_EQ(FloatToFp8E4M3(-2.0f), 0xc0);
  EXPECT_EQ(kFp8E4M3Max, 448.0f);
}

TEST(Fp8E4M3Test, MidpointsRoundToEvenAndNeighboursToNearest) {
  // Every pair of adjacent finite magnitudes, both signs: the exact midpoint goes to the code
  // with the even mantissa, one float ulp either side goes to the nearer code.
  for (int code = 0; code < 0x7e; ++code) {
    const float lo = Fp8E4M3ToFloat(static_cast<uint8_t>(code));
    const float hi = Fp8E4M3ToFloat(static_cast<uint8_t>(code + 1));
    const float mid = (lo + hi) / 2;  // exact in fp32
    ASSERT_EQ(static_cast<double>(mid), (static_cast<double>(lo) + hi) / 2);
    const int even = code % 2 == 0 ? code : code + 1;
    for (int sign : {0x00, 0x80}) {
      const float s = sign ? -1.0f : 1.0f;
      SCOPED_TRACE("between codes " + std::to_string(sign | code) + " and " +
                   std::to_string(sign | (code + 1)));
      EXPECT_EQ(int{FloatToFp8E4M3(s * mid)}, sign | even);
      EXPECT_EQ(int{FloatToFp8E4M3(s * std::nextafter(mid, 0.0f))}, sign | code);
      EXPECT_EQ(int{FloatToFp8E4M3(s * std::nextafter(mid, kInf))}, sign | (code + 1));
    }
  }
}

TEST(Fp8E4M3Test, RandomValuesMatchBruteForceNearest) {
  TestRng rng;
  for (int i = 0; i < 20000; ++i) {
    // Log-uniform magnitudes from far below the subnormals to far above saturation.
    const float x =
        static_cast<float>((rng.Bits() & 1 ? -1.0 : 1.0) * std::exp2(rng.Uniform(-14.0, 11.0)));
    ASSERT_EQ(int{FloatToFp8E4M3(x)}, RefFp8Encode(x)) << "x = " << x;
  }
}

TEST(Fp8E4M3Test, SaturatesToMaxFinite) {
  for (float x : {448.0f, 448.5f, 463.9f, 464.0f, 465.0f, 480.0f, 1e4f, 3e38f, kInf}) {
    EXPECT_EQ(FloatToFp8E4M3(x), 0x7e) << x;
    EXPECT_EQ(FloatToFp8E4M3(-x), 0xfe) << -x;
  }
  // Just below the max still rounds to the nearest finite value.
  EXPECT_EQ(FloatToFp8E4M3(433.0f), 0x7e);  // nearer 448 than 416
  EXPECT_EQ(FloatToFp8E4M3(431.0f), 0x7d);  // nearer 416
  EXPECT_EQ(FloatToFp8E4M3(432.0f), 0x7e);  // tie 416 / 448 -> even mantissa (448: m = 6)
}

TEST(Fp8E4M3Test, SubnormalsAreMultiplesOfTwoToTheMinus9) {
  const float step = std::ldexp(1.0f, -9);
  for (int k = 0; k <= 8; ++k) {
    EXPECT_EQ(int{FloatToFp8E4M3(k * step)}, k) << k;  // k = 8 is the min normal, code 0x08
    EXPECT_EQ(Fp8E4M3ToFloat(static_cast<uint8_t>(k)), k * step);
    EXPECT_EQ(int{FloatToFp8E4M3(-(k * step))}, 0x80 | k) << -k;  // -0 for k = 0
  }
  // Halfway cases round to the even multiple: 0.5 -> 0, 1.5 -> 2, 2.5 -> 2, 7.5 -> 8.
  EXPECT_EQ(FloatToFp8E4M3(0.5f * step), 0x00);
  EXPECT_EQ(FloatToFp8E4M3(1.5f * step), 0x02);
  EXPECT_EQ(FloatToFp8E4M3(2.5f * step), 0x02);
  EXPECT_EQ(FloatToFp8E4M3(7.5f * step), 0x08);
  EXPECT_EQ(FloatToFp8E4M3(0.75f * step), 0x01);
  EXPECT_EQ(FloatToFp8E4M3(0.25f * step), 0x00);
  EXPECT_EQ(FloatToFp8E4M3(-0.25f * step), 0x80);  // keeps the sign of zero
  EXPECT_EQ(FloatToFp8E4M3(1e-30f), 0x00);
}

// ---------- F16 reference.

bool IsF16NanCode(int code) { return (code & 0x7c00) == 0x7c00 && (code & 0x3ff) != 0; }

double RefF16Decode(int code) {
  const double sign = (code & 0x8000) ? -1.0 : 1.0;
  const int exponent = (code >> 10) & 0x1f;
  const int mantissa = code & 0x3ff;
  if (exponent == 0) return sign * mantissa * std::pow(2.0, -24);
  if (exponent == 31) return sign * std::numeric_limits<double>::infinity();  // NaN handled apart
  return sign * (1.0 + mantissa / 1024.0) * std::pow(2.0, exponent - 15);
}

// Round to nearest even over the monotonic non-negative codes 0 .. 0x7bff (65504); from 65520
// (max + half an ulp, whose even neighbour is the infinity code) upwards the result is infinity.
int RefF16Encode(float x) {
  const int sign = std::signbit(x) ? 0x8000 : 0;
  const double m = std::fabs(static_cast<double>(x));
  if (m >= 65520.0) return sign | 0x7c00;
  int lo = 0;
  int hi = 0x7bff;
  while (hi - lo > 1) {  // invariant: value(lo) <= m, or lo == 0
    const int mid = (lo + hi) / 2;
    if (RefF16Decode(mid) <= m) {
      lo = mid;
    } else {
      hi = mid;
    }
  }
  if (RefF16Decode(hi) <= m) lo = hi;
  if (lo == 0x7bff) return sign | lo;
  const double below = m - RefF16Decode(lo);
  const double above = RefF16Decode(lo + 1) - m;
  if (below < above) return sign | lo;
  if (above < below) return sign | (lo + 1);
  return sign | (lo % 2 == 0 ? lo : lo + 1);
}

TEST(F16Test, AllCodesDecodeToReferenceAndEncodeBack) {
  for (int code = 0; code < 65536; ++code) {
    const float v = F16ToFloat(static_cast<uint16_t>(code));
    const uint16_t back = FloatToF16(v);
    if (IsF16NanCode(code)) {
      ASSERT_TRUE(std::isnan(v)) << code;
      ASSERT_TRUE(IsF16NanCode(back)) << code << " -> " << back;
      ASSERT_EQ(back & 0x8000, code & 0x8000) << code;
      continue;
    }
    ASSERT_EQ(static_cast<double>(v), RefF16Decode(code)) << code;
    ASSERT_EQ(int{back}, code) << "value " << v;
  }
}

TEST(F16Test, MidpointsRoundToEven) {
  for (int code = 0; code < 0x7bff; ++code) {
    const float lo = F16ToFloat(static_cast<uint16_t>(code));
    const float hi = F16ToFloat(static_cast<uint16_t>(code + 1));
    const float mid = (lo + hi) / 2;
    const int even = code % 2 == 0 ? code : code + 1;
    ASSERT_EQ(int{FloatToF16(mid)}, even) << mid;
    ASSERT_EQ(int{FloatToF16(-mid)}, 0x8000 | even) << -mid;
    ASSERT_EQ(int{FloatToF16(std::nextafter(mid, 0.0f))}, code) << mid;
    ASSERT_EQ(int{FloatToF16(std::nextafter(mid, kInf))}, code + 1) << mid;
  }
  EXPECT_EQ(FloatToF16(65504.0f), 0x7bff);
  EXPECT_EQ(FloatToF16(65519.0f), 0x7bff);
  EXPECT_EQ(FloatToF16(65520.0f), 0x7c00);
  EXPECT_EQ(FloatToF16(-kInf), 0xfc00);
}

TEST(F16Test, RandomValuesMatchReference) {
  TestRng rng;
  for (int i = 0; i < 100000; ++i) {
    const float x =
        static_cast<float>((rng.Bits() & 1 ? -1.0 : 1.0) * std::exp2(rng.Uniform(-27.0, 17.0)));
    ASSERT_EQ(int{FloatToF16(x)}, RefF16Encode(x)) << "x = " << x;
  }
}

// ---------- BF16 reference: the top 16 bits of fp32, round to nearest even.

int RefBf16Encode(float x) {
  const uint32_t bits = FloatToBits(x);
  const int truncated = static_cast<int>(bits >> 16);  // toward zero in magnitude
  const double m = std::fabs(static_cast<double>(x));
  const auto value = [](int code) {
    // 0x7f80 read as 2^128 so that the overflow boundary is the ordinary midpoint.
    if ((code & 0x7fff) == 0x7f80) return std::ldexp(1.0, 128);
    return std::fabs(static_cast<double>(BitsToFloat(static_cast<uint32_t>(code) << 16)));
  };
  const double below = m - value(truncated);
  const double above = value(truncated + 1) - m;
  if (below < above) return truncated;
  if (above < below) return truncated + 1;
  return truncated % 2 == 0 ? truncated : truncated + 1;
}

TEST(Bf16Test, AllCodesRoundTrip) {
  for (int code = 0; code < 65536; ++code) {
    const float v = Bf16ToFloat(static_cast<uint16_t>(code));
    ASSERT_EQ(FloatToBits(v), static_cast<uint32_t>(code) << 16);
    const uint16_t back = FloatToBf16(v);
    if (std::isnan(v)) {
      ASSERT_TRUE(std::isnan(Bf16ToFloat(back))) << code;
      ASSERT_EQ(back & 0x8000, code & 0x8000);
    } else {
      ASSERT_EQ(int{back}, code);
    }
  }
}

TEST(Bf16Test, TiesRoundToEven) {
  // 1 + 2^-8 is halfway between 1 (0x3f80, even) and 1 + 2^-7 (0x3f81): goes down.
  EXPECT_EQ(FloatToBf16(1.0f + std::ldexp(1.0f, -8)), 0x3f80);
  // 1 + 3·2^-8 is halfway between 0x3f81 (odd) and 0x3f82 (even): goes up.
  EXPECT_EQ(FloatToBf16(1.0f + 3 * std::ldexp(1.0f, -8)), 0x3f82);
  EXPECT_EQ(FloatToBf16(-(1.0f + 3 * std::ldexp(1.0f, -8))), 0xbf82);
  // Just past the tie goes to the nearer value.
  EXPECT_EQ(FloatToBf16(std::nextafter(1.0f + std::ldexp(1.0f, -8), 2.0f)), 0x3f81);
  // Rounding carries into the exponent, and past the max into infinity.
  EXPECT_EQ(FloatToBf16(BitsToFloat(0x3fffffffu)), 0x4000);
  EXPECT_EQ(FloatToBf16(std::numeric_limits<float>::max()), 0x7f80);
  EXPECT_TRUE(std::isnan(Bf16ToFloat(FloatToBf16(std::numeric_limits<float>::quiet_NaN()))));
}

TEST(Bf16Test, RandomValuesMatchReference) {
  TestRng rng;
  for (int i = 0; i < 200000; ++i) {
    // Random bit patterns cover every exponent, subnormals and the overflow edge.
    const uint32_t bits = rng.Bits();
    const float x = BitsToFloat(bits);
    if (std::isnan(x)) continue;
    ASSERT_EQ(int{FloatToBf16(x)}, RefBf16Encode(x)) << "bits 0x" << std::hex << bits;
  }
}

// ---------- Names, sizes, loads.

struct NameCase {
  const char* name;
  DType dtype;
  int size;
};

constexpr NameCase kNames[] = {
    {"BOOL", DType::kBool, 1},      {"U8", DType::kU8, 1},          {"I8", DType::kI8, 1},
    {"F8_E4M3", DType::kF8E4M3, 1}, {"F8_E5M2", DType::kF8E5M2, 1}, {"I16", DType::kI16, 2},
    {"U16", DType::kU16, 2},        {"F16", DType::kF16, 2},        {"BF16", DType::kBF16, 2},
    {"I32", DType::kI32, 4},        {"U32", DType::kU32, 4},        {"F32", DType::kF32, 4},
    {"F64", DType::kF64, 8},        {"I64", DType::kI64, 8},        {"U64", DType::kU64, 8},
};

TEST(DTypeNameTest, ParsesEverySafetensorsName) {
  for (const NameCase& c : kNames) {
    SCOPED_TRACE(c.name);
    const std::optional<DType> parsed = ParseDTypeName(c.name);
    ASSERT_TRUE(parsed.has_value());
    EXPECT_EQ(*parsed, c.dtype);
    EXPECT_STREQ(DTypeName(c.dtype), c.name);
    EXPECT_EQ(DTypeSize(c.dtype), c.size);
  }
}

TEST(DTypeNameTest, RejectsUnknownNames) {
  for (const char* name : {"", "bf16", "F8_E4M3FN", "FLOAT32", "F32 ", "F8", "C64", "E4M3"}) {
    EXPECT_FALSE(ParseDTypeName(name).has_value()) << "'" << name << "'";
  }
}

TEST(LoadAsFloatTest, ReadsEachFloatingDType) {
  const float f32[] = {1.5f, -2.25f};
  EXPECT_EQ(LoadAsFloat(f32, DType::kF32, 1), -2.25f);
  const double f64[] = {0.1, 3.0};
  EXPECT_EQ(LoadAsFloat(f64, DType::kF64, 0), 0.1f);
  const uint16_t bf16[] = {0x3f80, 0xc040};  // 1, -3
  EXPECT_EQ(LoadAsFloat(bf16, DType::kBF16, 1), -3.0f);
  const uint16_t f16[] = {0x3c00, 0xc500};  // 1, -5
  EXPECT_EQ(LoadAsFloat(f16, DType::kF16, 1), -5.0f);
  const uint8_t e4m3[] = {0x38, 0xfe};  // 1, -448
  EXPECT_EQ(LoadAsFloat(e4m3, DType::kF8E4M3, 1), -448.0f);
  const uint8_t e5m2[] = {0x3c, 0xc5};  // upper bytes of F16 1 and -5
  EXPECT_EQ(LoadAsFloat(e5m2, DType::kF8E5M2, 0), 1.0f);
  EXPECT_EQ(LoadAsFloat(e5m2, DType::kF8E5M2, 1), -5.0f);
  const int32_t i32[] = {7};
  EXPECT_TRUE(std::isnan(LoadAsFloat(i32, DType::kI32, 0)));
}

}  // namespace
}  // namespace moeserve::engine
