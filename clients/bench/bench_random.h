// The load client's seeded random numbers: uniform, normal, exponential and gamma variates
// computed from the raw output of std::mt19937_64.
//
// std::*_distribution results differ between standard libraries; mt19937_64's raw sequence is
// fixed by the C++ standard. Writing the transforms here means a --seed gives the same prompts
// and the same arrival schedule on every toolchain, so two runs are comparable. Used by
// arrival_process.cc and dataset.cc; not thread-safe (one owner each).
#pragma once

#include <cstdint>
#include <random>

namespace moeserve::bench {

class BenchRandom {
 public:
  explicit BenchRandom(uint64_t seed) : engine_(seed) {}

  uint64_t NextBits() { return engine_(); }
  // Uniform in [0, 1) with 53 random bits.
  double Uniform();
  // Uniform integer in [lo, hi] (inclusive); lo <= hi.
  int64_t UniformInt(int64_t lo, int64_t hi);
  // Standard normal (Marsaglia's polar method).
  double Normal();
  // Gamma(shape k > 0, scale theta > 0): mean k*theta, variance k*theta^2.
  // Marsaglia and Tsang (2000) for k >= 1; k < 1 boosts to k + 1 and scales by U^(1/k).
  double Gamma(double shape, double scale);

 private:
  std::mt19937_64 engine_;
  bool has_spare_normal_ = false;
  double spare_normal_ = 0.0;
};

}  // namespace moeserve::bench
