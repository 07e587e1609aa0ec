#include "engine/ops/dtype.h"

#include <array>
#include <cmath>
#include <utility>

namespace moeserve::engine {
namespace {

struct DTypeInfo {
  DType dtype;
  std::string_view name;
  int size;
};

constexpr std::array<DTypeInfo, 15> kDTypes = {{
    {DType::kBool, "BOOL", 1},
    {DType::kU8, "U8", 1},
    {DType::kI8, "I8", 1},
    {DType::kF8E4M3, "F8_E4M3", 1},
    {DType::kF8E5M2, "F8_E5M2", 1},
    {DType::kI16, "I16", 2},
    {DType::kU16, "U16", 2},
    {DType::kF16, "F16", 2},
    {DType::kBF16, "BF16", 2},
    {DType::kI32, "I32", 4},
    {DType::kU32, "U32", 4},
    {DType::kF32, "F32", 4},
    {DType::kF64, "F64", 8},
    {DType::kI64, "I64", 8},
    {DType::kU64, "U64", 8},
}};

const DTypeInfo& Info(DType dtype) { return kDTypes[static_cast<size_t>(dtype)]; }

float Fp8E5M2ToFloat(uint8_t v) { return F16ToFloat(static_cast<uint16_t>(v) << 8); }

}  // namespace

int DTypeSize(DType dtype) { return Info(dtype).size; }
const char* DTypeName(DType dtype) { return Info(dtype).name.data(); }

std::optional<DType> ParseDTypeName(std::string_view name) {
  for (const DTypeInfo& info : kDTypes) {
    if (info.name == name) return info.dtype;
  }
  return std::nullopt;
}

float F16ToFloat(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exponent = (h >> 10) & 0x1fu;
  const uint32_t mantissa = h & 0x3ffu;
  if (exponent == 0) {
    // Zero or subnormal: mantissa * 2^-24.
    const float magnitude = std::ldexp(static_cast<float>(mantissa), -24);
    return sign ? -magnitude : magnitude;
  }
  if (exponent == 31) return BitsToFloat(sign | 0x7f800000u | (mantissa << 13));
  return BitsToFloat(sign | ((exponent + 112) << 23) | (mantissa << 13));
}

uint16_t FloatToF16(float f) {
  const uint32_t bits = FloatToBits(f);
  const uint16_t sign = static_cast<uint16_t>((bits >> 16) & 0x8000u);
  const float magnitude = std::fabs(f);
  if (std::isnan(f)) return sign | 0x7e00u;
  if (magnitude >= 65520.0f) return sign | 0x7c00u;  // rounds to infinity
  if (magnitude < 6.103515625e-05f) {
    // Subnormal: multiples of 2^-24, nearbyint rounds half to even.
    return sign | static_cast<uint16_t>(std::nearbyint(std::ldexp(magnitude, 24)));
  }
  uint32_t m = FloatToBits(magnitude);
  m += 0xfffu + ((m >> 13) & 1u);  // round mantissa to 10 bits, nearest-even
  const uint32_t exponent = (m >> 23) - 112;
  return sign | static_cast<uint16_t>((exponent << 10) | ((m >> 13) & 0x3ffu));
}

float Fp8E4M3ToFloat(uint8_t v) {
  const bool negative = v & 0x80;
  const int exponent = (v >> 3) & 0xf;
  const int mantissa = v & 0x7;
  float magnitude;
  if (exponent == 0xf && mantissa == 0x7) {
    magnitude = NAN;
  } else if (exponent == 0) {
    magnitude = std::ldexp(static_cast<float>(mantissa), -9);  // subnormal: m * 2^-9
  } else {
    magnitude = std::ldexp(1.0f + mantissa / 8.0f, exponent - 7);
  }
  return negative ? -magnitude : magnitude;
}

uint8_t FloatToFp8E4M3(float f) {
  if (std::isnan(f)) return 0x7f;
  const uint8_t sign = std::signbit(f) ? 0x80 : 0x00;
  float magnitude = std::fabs(f);
  if (magnitude >= kFp8E4M3Max) return sign | 0x7e;  // saturate to 448
  if (magnitude < std::ldexp(1.0f, -6)) {
    // Subnormal range: multiples of 2^-9 (0 .. 7), rounding half to even; 8 is the
    // smallest normal (exponent 1, mantissa 0), which the encoding below produces too.
    const int units = static_cast<int>(std::nearbyint(std::ldexp(magnitude, 9)));
    return sign | static_cast<uint8_t>(units);
  }
  int exponent;
  const float fraction = std::frexp(magnitude, &exponent);  // magnitude = fraction * 2^exponent
  // magnitude = (1 + m/8) * 2^(exponent-1): scale the significand to [8, 16) and round.
  int significand = static_cast<int>(std::nearbyint(std::ldexp(fraction, 4)));
  int biased = exponent - 1 + 7;
  if (significand == 16) {
    significand = 8;
    ++biased;
  }
  if (biased > 15 || (biased == 15 && significand - 8 > 6)) return sign | 0x7e;
  return sign | static_cast<uint8_t>((biased << 3) | (significand - 8));
}

float LoadAsFloat(const void* data, DType dtype, int64_t index) {
  const auto* bytes = static_cast<const uint8_t*>(data);
  switch (dtype) {
    case DType::kF32: {
      float v;
      std::memcpy(&v, bytes + index * 4, 4);
      return v;
    }
    case DType::kBF16: {
      uint16_t v;
      std::memcpy(&v, bytes + index * 2, 2);
      return Bf16ToFloat(v);
    }
    case DType::kF16: {
      uint16_t v;
      std::memcpy(&v, bytes + index * 2, 2);
      return F16ToFloat(v);
    }
    case DType::kF64: {
      double v;
      std::memcpy(&v, bytes + index * 8, 8);
      return static_cast<float>(v);
    }
    case DType::kF8E4M3:
      return Fp8E4M3ToFloat(bytes[index]);
    case DType::kF8E5M2:
      return Fp8E5M2ToFloat(bytes[index]);
    default:
      return NAN;
  }
}

}  // namespace moeserve::engine
