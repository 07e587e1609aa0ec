#include "engine/sampling/radix_select.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <random>
#include <vector>

#include "gtest/gtest.h"

namespace moeserve::engine {
namespace {

TEST(OrderedKeyTest, PreservesOrderAndRoundTrips) {
  constexpr float kInf = std::numeric_limits<float>::infinity();
  const std::vector<float> ascending = {-kInf,
                                        -3.0e38f,
                                        -2.5f,
                                        -1.0f,
                                        -std::numeric_limits<float>::denorm_min(),
                                        -0.0f,
                                        0.0f,
                                        std::numeric_limits<float>::denorm_min(),
                                        std::numeric_limits<float>::min(),
                                        1.0f,
                                        1.0000001f,
                                        3.0e38f,
                                        kInf};
  for (size_t i = 0; i < ascending.size(); ++i) {
    EXPECT_EQ(std::bit_cast<uint32_t>(FromOrderedKey(OrderedKey(ascending[i]))),
              std::bit_cast<uint32_t>(ascending[i]));
    if (i > 0) {
      EXPECT_LT(OrderedKey(ascending[i - 1]), OrderedKey(ascending[i])) << ascending[i];
    }
  }
}

// The definition: sort descending, walk until the running mass reaches target.
RadixCutoff SortedCutoff(const std::vector<float>& values, const std::vector<double>& mass,
                         double target) {
  std::vector<size_t> order(values.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return values[a] > values[b]; });
  RadixCutoff out;
  double acc = 0.0;
  for (size_t j = 0; j < order.size();) {
    // A group of equal values moves the mass at once.
    size_t end = j;
    double group = 0.0;
    while (end < order.size() && values[order[end]] == values[order[j]])
      group += mass[order[end++]];
    if (group > 0.0 && acc + group >= target) {
      out.found = true;
      out.key = OrderedKey(values[order[j]]);
      out.mass_above = acc;
      return out;
    }
    acc += group;
    j = end;
  }
  return out;
}

RadixCutoff Radix(const std::vector<float>& values, const std::vector<double>& mass,
                  double target) {
  RadixScratch scratch;
  return FindRadixCutoff(
      values.size(), [&](size_t i) { return OrderedKey(values[i]); },
      [&](size_t i) { return mass[i]; }, target, scratch);
}

TEST(FindRadixCutoffTest, KthLargestWithUnitMassMatchesSorting) {
  std::mt19937 gen(1);
  std::normal_distribution<float> normal(0.0f, 3.0f);
  std::vector<float> values(50000);
  for (float& v : values) v = normal(gen);
  for (int i = 0; i < 500; ++i) values[i * 7] = values[i];  // ties
  const std::vector<double> ones(values.size(), 1.0);
  for (int k : {1, 2, 50, 1000, 25000, 49999, 50000}) {
    const RadixCutoff radix = Radix(values, ones, k);
    const RadixCutoff sorted = SortedCutoff(values, ones, k);
    ASSERT_TRUE(radix.found) << k;
    EXPECT_EQ(radix.key, sorted.key) << k;
    EXPECT_EQ(radix.mass_above, sorted.mass_above) << k;
    std::vector<float> copy = values;
    std::nth_element(copy.begin(), copy.begin() + (k - 1), copy.end(), std::greater<float>());
    EXPECT_EQ(FromOrderedKey(radix.key), copy[k - 1]) << k;
  }
  EXPECT_FALSE(Radix(values, ones, 50001).found);
}

TEST(FindRadixCutoffTest, WeightedMassMatchesSorting) {
  std::mt19937 gen(2);
  std::uniform_real_distribution<float> uniform(-12.0f, 0.0f);
  std::vector<float> values(20000);
  std::vector<double> mass(values.size());
  for (size_t i = 0; i < values.size(); ++i) {
    values[i] = std::exp(uniform(gen));  // probabilities over many binades
    mass[i] = values[i];
  }
  double total = 0.0;
  for (double m : mass) total += m;
  for (double p : {1e-6, 0.1, 0.5, 0.9, 0.95, 0.999}) {
    const RadixCutoff radix = Radix(values, mass, p * total);
    const RadixCutoff sorted = SortedCutoff(values, mass, p * total);
    ASSERT_TRUE(radix.found) << p;
    EXPECT_EQ(radix.key, sorted.key) << p;
    EXPECT_NEAR(radix.mass_above, sorted.mass_above, 1e-9 * total) << p;
  }
}

TEST(FindRadixCutoffTest, ZeroMassItemsDoNotCount) {
  const std::vector<float> values = {5.0f, 4.0f, 3.0f, 2.0f, 1.0f};
  const std::vector<double> mass = {0.0, 1.0, 0.0, 1.0, 1.0};
  const RadixCutoff cut = Radix(values, mass, 2.0);
  ASSERT_TRUE(cut.found);
  EXPECT_EQ(FromOrderedKey(cut.key), 2.0f);
  EXPECT_EQ(cut.mass_above, 1.0);
  EXPECT_FALSE(Radix(values, std::vector<double>(5, 0.0), 0.5).found);
}

TEST(FindRadixCutoffTest, NearlyEqualValuesAreSeparated) {
  // Differ only in the last mantissa bits: resolved by the third level.
  const std::vector<float> values = {1.0f, std::nextafter(1.0f, 2.0f),
                                     std::nextafter(std::nextafter(1.0f, 2.0f), 2.0f)};
  const std::vector<double> ones(3, 1.0);
  EXPECT_EQ(FromOrderedKey(Radix(values, ones, 1.0).key), values[2]);
  EXPECT_EQ(FromOrderedKey(Radix(values, ones, 2.0).key), values[1]);
  EXPECT_EQ(FromOrderedKey(Radix(values, ones, 3.0).key), values[0]);
}

}  // namespace
}  // namespace moeserve::engine
