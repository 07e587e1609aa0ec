// Seeded random inputs for op tests (ARCHITECTURE.md §5 rule 8: random inputs, never zeros).
//
// A TestRng owns a std::mt19937 seeded explicitly, and while it is alive every gtest failure
// message carries "random seed <seed>", so any failure can be replayed. The distributions are
// written here from the raw 32-bit engine output (not std::*_distribution, whose results differ
// between standard libraries), so a seed means the same inputs everywhere.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numbers>
#include <numeric>
#include <random>
#include <source_location>
#include <string>
#include <vector>

#include "engine/ops/dtype.h"

namespace moeserve::engine::testing {

// The seed most tests start from; a test that wants independent streams adds to it.
inline constexpr uint32_t kDefaultTestSeed = 20250611;

class TestRng {
 public:
  explicit TestRng(uint32_t seed = kDefaultTestSeed,
                   std::source_location where = std::source_location::current())
      : seed_(seed),
        engine_(seed),
        trace_(where.file_name(), static_cast<int>(where.line()),
               "random seed " + std::to_string(seed)) {}
  TestRng(const TestRng&) = delete;
  TestRng& operator=(const TestRng&) = delete;

  uint32_t seed() const { return seed_; }
  std::mt19937& engine() { return engine_; }
  uint32_t Bits() { return static_cast<uint32_t>(engine_()); }

  // Uniform in [0, 1) on a 2^-24 grid (exactly representable as float).
  double Unit() { return static_cast<double>(Bits() >> 8) * 0x1p-24; }
  // Uniform in [lo, hi).
  double Uniform(double lo, double hi) { return lo + (hi - lo) * Unit(); }
  // Uniform integer in [lo, hi] (modulo bias is irrelevant at test sizes).
  int64_t Int(int64_t lo, int64_t hi) {
    const uint64_t span = static_cast<uint64_t>(hi - lo) + 1;
    const uint64_t bits = (static_cast<uint64_t>(Bits()) << 32) | Bits();
    return lo + static_cast<int64_t>(bits % span);
  }
  // Standard normal by Box-Muller.
  double Normal(double mean = 0.0, double stddev = 1.0) {
    const double u1 = 1.0 - Unit();  // (0, 1]
    const double u2 = Unit();
    return mean + stddev * std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * std::numbers::pi * u2);
  }

  std::vector<float> UniformFloats(size_t n, double lo, double hi) {
    std::vector<float> v(n);
    for (float& x : v) x = static_cast<float>(Uniform(lo, hi));
    return v;
  }
  std::vector<float> NormalFloats(size_t n, double stddev = 1.0) {
    std::vector<float> v(n);
    for (float& x : v) x = static_cast<float>(Normal(0.0, stddev));
    return v;
  }
  // Normal values rounded to bf16, returned as the raw bf16 bits.
  std::vector<uint16_t> NormalBf16(size_t n, double stddev = 1.0) {
    std::vector<uint16_t> v(n);
    for (uint16_t& x : v) x = FloatToBf16(static_cast<float>(Normal(0.0, stddev)));
    return v;
  }
  // n token ids uniform in [lo, hi].
  std::vector<int32_t> TokenIds(int64_t n, int32_t lo, int32_t hi) {
    std::vector<int32_t> ids(static_cast<size_t>(n));
    for (int32_t& id : ids) id = static_cast<int32_t>(Int(lo, hi));
    return ids;
  }
  // A random permutation of 0 .. n-1 (Fisher-Yates on our own integers).
  std::vector<int32_t> Permutation(int64_t n) {
    std::vector<int32_t> p(static_cast<size_t>(n));
    std::iota(p.begin(), p.end(), 0);
    for (int64_t i = n - 1; i > 0; --i) std::swap(p[i], p[Int(0, i)]);
    return p;
  }

 private:
  uint32_t seed_;
  std::mt19937 engine_;
  ::testing::ScopedTrace trace_;
};

}  // namespace moeserve::engine::testing
