// Element types of tensors in checkpoints and in the engine, and the scalar conversions
// between them and fp32.
//
// The CPU backend computes in fp32 (DESIGN.md §4) and converts stored BF16/F16/F8_E4M3
// values on load; the safetensors reader (engine/io) names dtypes with these enums.
// The conversions are exact where the target can represent the value and round to
// nearest-even otherwise, matching PyTorch so that CPU results reproduce the oracle's.
#pragma once

#include <cstdint>
#include <cstring>
#include <optional>
#include <string_view>
#include <vector>

namespace moeserve::engine {

enum class DType : uint8_t {
  kBool,
  kU8,
  kI8,
  kF8E4M3,
  kF8E5M2,
  kI16,
  kU16,
  kF16,
  kBF16,
  kI32,
  kU32,
  kF32,
  kF64,
  kI64,
  kU64,
};

// Bytes per element.
int DTypeSize(DType dtype);
// The safetensors spelling ("BF16", "F8_E4M3", ...).
const char* DTypeName(DType dtype);
// Parses a safetensors dtype string; nullopt for names we do not know.
std::optional<DType> ParseDTypeName(std::string_view name);

// Largest finite E4M3FN value (1.75 * 2^8), reference §4.
inline constexpr float kFp8E4M3Max = 448.0f;

inline float BitsToFloat(uint32_t bits) {
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}
inline uint32_t FloatToBits(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, sizeof bits);
  return bits;
}

inline float Bf16ToFloat(uint16_t bf16) { return BitsToFloat(static_cast<uint32_t>(bf16) << 16); }

// Round-to-nearest-even, NaN stays NaN (as torch's float -> bfloat16).
inline uint16_t FloatToBf16(float f) {
  uint32_t bits = FloatToBits(f);
  if ((bits & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((bits >> 16) | 0x40);
  bits += 0x7fffu + ((bits >> 16) & 1u);
  return static_cast<uint16_t>(bits >> 16);
}

// Whole tensors: uploads of BF16 weights, reading back BF16 outputs.
inline std::vector<uint16_t> FloatsToBf16(const std::vector<float>& values) {
  std::vector<uint16_t> out(values.size());
  for (size_t i = 0; i < values.size(); ++i) out[i] = FloatToBf16(values[i]);
  return out;
}
inline std::vector<float> Bf16ToFloats(const std::vector<uint16_t>& values) {
  std::vector<float> out(values.size());
  for (size_t i = 0; i < values.size(); ++i) out[i] = Bf16ToFloat(values[i]);
  return out;
}

float F16ToFloat(uint16_t f16);
uint16_t FloatToF16(float f);

// E4M3FN: 1 sign, 4 exponent (bias 7), 3 mantissa bits, no infinities, NaN = S.1111.111.
float Fp8E4M3ToFloat(uint8_t fp8);
// Saturating round-to-nearest-even, as __nv_cvt_float_to_fp8(x, __NV_SATFINITE, __NV_E4M3).
uint8_t FloatToFp8E4M3(float f);

// Reads element `index` of a buffer of `dtype` as fp32 (floating dtypes only).
float LoadAsFloat(const void* data, DType dtype, int64_t index);

}  // namespace moeserve::engine
