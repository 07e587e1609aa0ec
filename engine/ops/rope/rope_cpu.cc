#include <algorithm>
#include <cmath>
#include <numbers>

#include "engine/ops/cpu/parallel_for.h"
#include "engine/ops/rope/rope.h"

namespace moeserve::engine {
namespace {

// The rotary dim index whose wavelength makes `num_rotations` turns over the original
// context: dim·ln(L0 / (2π·n)) / (2·ln(base)).
double CorrectionDim(double num_rotations, int64_t dim, double base, int64_t original_len) {
  return dim * std::log(original_len / (num_rotations * 2.0 * std::numbers::pi)) /
         (2.0 * std::log(base));
}

}  // namespace

double YarnMscale(double factor, double mscale) {
  return factor <= 1.0 ? 1.0 : 0.1 * mscale * std::log(factor) + 1.0;
}

RopeTable MakeRopeTable(int64_t rotary_dim, double base, const std::optional<YarnParams>& yarn) {
  const int64_t half = rotary_dim / 2;
  // fp32 like torch: pos_freq = base ** (arange(0, dim, 2).float() / dim).
  std::vector<float> pos_freq(static_cast<size_t>(half));
  for (int64_t i = 0; i < half; ++i) {
    const float exponent = static_cast<float>(2 * i) / static_cast<float>(rotary_dim);
    pos_freq[i] = std::pow(static_cast<float>(base), exponent);
  }
  RopeTable table;
  table.inv_freq.resize(static_cast<size_t>(half));
  for (int64_t i = 0; i < half; ++i) table.inv_freq[i] = 1.0f / pos_freq[i];
  if (!yarn.has_value() || yarn->factor <= 1.0) return table;

  const double low = std::max(std::floor(CorrectionDim(yarn->beta_fast, rotary_dim, base,
                                                       yarn->original_max_position_embeddings)),
                              0.0);
  double high = std::min(std::ceil(CorrectionDim(yarn->beta_slow, rotary_dim, base,
                                                 yarn->original_max_position_embeddings)),
                         static_cast<double>(rotary_dim - 1));
  if (low == high) high += 0.001;  // avoid a zero-width ramp
  const float factor = static_cast<float>(yarn->factor);
  for (int64_t i = 0; i < half; ++i) {
    const float extrapolation = 1.0f / pos_freq[i];
    const float interpolation = 1.0f / (factor * pos_freq[i]);
    const float ramp = std::clamp(
        (static_cast<float>(i) - static_cast<float>(low)) / static_cast<float>(high - low), 0.0f,
        1.0f);
    const float extrapolation_weight = 1.0f - ramp;
    table.inv_freq[i] =
        interpolation * (1.0f - extrapolation_weight) + extrapolation * extrapolation_weight;
  }
  table.attention_scaling = static_cast<float>(YarnMscale(yarn->factor, yarn->mscale) /
                                               YarnMscale(yarn->factor, yarn->mscale_all_dim));
  return table;
}

void ApplyRopeInterleavedCpu(const RopeTable& table, const int32_t* positions, int64_t num_tokens,
                             int64_t num_heads, int64_t token_stride, int64_t head_stride,
                             float* x) {
  const int64_t half = static_cast<int64_t>(table.inv_freq.size());
  ParallelFor(num_tokens, num_tokens * num_heads > 256, [&](int64_t t) {
    std::vector<float> cos_t(static_cast<size_t>(half));
    std::vector<float> sin_t(static_cast<size_t>(half));
    for (int64_t i = 0; i < half; ++i) {
      const float angle = static_cast<float>(positions[t]) * table.inv_freq[i];
      cos_t[i] = std::cos(angle) * table.attention_scaling;
      sin_t[i] = std::sin(angle) * table.attention_scaling;
    }
    for (int64_t h = 0; h < num_heads; ++h) {
      float* v = x + t * token_stride + h * head_stride;
      for (int64_t i = 0; i < half; ++i) {
        const float a = v[2 * i];
        const float b = v[2 * i + 1];
        v[2 * i] = a * cos_t[i] - b * sin_t[i];
        v[2 * i + 1] = a * sin_t[i] + b * cos_t[i];
      }
    }
  });
}

}  // namespace moeserve::engine
