// Pearson's chi-square goodness of fit, for the sampler's statistical tests (sampler_test,
// speculative_verify_test).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <utility>
#include <vector>

namespace moeserve::engine::testing {

// The 0.999 quantile of chi-square: a table for small dof (Abramowitz & Stegun, Table 26.8),
// then the Wilson-Hilferty approximation k (1 - 2/(9k) + z sqrt(2/(9k)))^3, z = Φ^-1(0.999).
inline double ChiSquareCritical999(int dof) {
  static constexpr double kTable[] = {10.828, 13.816, 16.266, 18.467, 20.515,
                                      22.458, 24.322, 26.124, 27.877, 29.588};
  if (dof >= 1 && dof <= 10) return kTable[dof - 1];
  const double k = dof;
  const double z = 3.090232;
  const double h = 2.0 / (9.0 * k);
  return k * std::pow(1.0 - h + z * std::sqrt(h), 3.0);
}

struct Fit {
  double statistic = 0.0;
  int dof = 0;
  int64_t impossible_draws = 0;  // draws of tokens with analytic probability 0
};

// Bins with an expected count below 5 are pooled, so the chi-square approximation holds.
inline Fit GoodnessOfFit(const std::vector<int64_t>& counts, const std::vector<double>& probs,
                         int64_t draws) {
  Fit fit;
  std::vector<std::pair<double, double>> bins;  // (observed, expected)
  double pooled_observed = 0.0;
  double pooled_expected = 0.0;
  for (size_t i = 0; i < probs.size(); ++i) {
    if (probs[i] == 0.0) {
      fit.impossible_draws += counts[i];
      continue;
    }
    const double expected = probs[i] * static_cast<double>(draws);
    if (expected >= 5.0) {
      bins.push_back({static_cast<double>(counts[i]), expected});
    } else {
      pooled_observed += static_cast<double>(counts[i]);
      pooled_expected += expected;
    }
  }
  if (pooled_expected >= 5.0 || (bins.empty() && pooled_expected > 0.0)) {
    bins.push_back({pooled_observed, pooled_expected});
  } else if (pooled_expected > 0.0) {
    auto smallest = std::min_element(bins.begin(), bins.end(),
                                     [](auto& a, auto& b) { return a.second < b.second; });
    smallest->first += pooled_observed;
    smallest->second += pooled_expected;
  }
  for (const auto& [observed, expected] : bins) {
    fit.statistic += (observed - expected) * (observed - expected) / expected;
  }
  fit.dof = static_cast<int>(bins.size()) - 1;
  return fit;
}

}  // namespace moeserve::engine::testing
