#include "clients/bench/bench_random.h"

#include <cmath>

namespace moeserve::bench {

double BenchRandom::Uniform() {
  return static_cast<double>(engine_() >> 11) * 0x1.0p-53;  // 2^-53: exact in double
}

int64_t BenchRandom::UniformInt(int64_t lo, int64_t hi) {
  const uint64_t span = static_cast<uint64_t>(hi - lo) + 1;
  if (span == 0) return static_cast<int64_t>(engine_());  // the full 64-bit range
  // Rejection sampling removes the modulo bias of the last partial block.
  const uint64_t limit = UINT64_MAX - UINT64_MAX % span;
  uint64_t bits;
  do {
    bits = engine_();
  } while (bits >= limit);
  return lo + static_cast<int64_t>(bits % span);
}

double BenchRandom::Normal() {
  if (has_spare_normal_) {
    has_spare_normal_ = false;
    return spare_normal_;
  }
  double u, v, s;
  do {
    u = 2.0 * Uniform() - 1.0;
    v = 2.0 * Uniform() - 1.0;
    s = u * u + v * v;
  } while (s >= 1.0 || s == 0.0);
  const double factor = std::sqrt(-2.0 * std::log(s) / s);
  spare_normal_ = v * factor;
  has_spare_normal_ = true;
  return u * factor;
}

double BenchRandom::Gamma(double shape, double scale) {
  if (shape < 1.0) {
    // Gamma(k) = Gamma(k + 1) * U^(1/k) (Marsaglia and Tsang, section 6).
    const double boosted = Gamma(shape + 1.0, 1.0);
    double u;
    do {
      u = Uniform();
    } while (u == 0.0);
    return boosted * std::pow(u, 1.0 / shape) * scale;
  }
  const double d = shape - 1.0 / 3.0;
  const double c = 1.0 / std::sqrt(9.0 * d);
  while (true) {
    double x, v;
    do {
      x = Normal();
      v = 1.0 + c * x;
    } while (v <= 0.0);
    v = v * v * v;
    const double u = Uniform();
    if (u < 1.0 - 0.0331 * x * x * x * x) return d * v * scale;
    if (u > 0.0 && std::log(u) < 0.5 * x * x + d * (1.0 - v + std::log(v))) return d * v * scale;
  }
}

}  // namespace moeserve::bench
