// Error measures between an op's output and a reference (ARCHITECTURE.md §5 rule 8).
//
// max_abs: largest |actual - reference|. max_rel: max_abs / max |reference|, i.e. the error
// normalised by the tensor's scale rather than element by element (so tiny reference values do
// not dominate). nmse: Σ(actual - reference)² / Σ reference² (llama.cpp test-backend-ops).
// A non-finite actual where the reference is finite counts as an infinite error.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <iterator>
#include <limits>
#include <sstream>
#include <string>

namespace moeserve::engine::testing {

struct TensorError {
  int64_t size = 0;
  double max_abs = 0.0;
  double max_rel = 0.0;
  double nmse = 0.0;
  double ref_max_abs = 0.0;
  int64_t worst_index = -1;  // element with the largest |actual - reference|
  double worst_actual = 0.0;
  double worst_reference = 0.0;
};

inline std::string ToString(const TensorError& e) {
  std::ostringstream s;
  s << "size=" << e.size << " max_abs=" << e.max_abs << " max_rel=" << e.max_rel
    << " nmse=" << e.nmse << " max|ref|=" << e.ref_max_abs << " worst[" << e.worst_index
    << "]: actual=" << e.worst_actual << " reference=" << e.worst_reference;
  return s.str();
}

inline std::ostream& operator<<(std::ostream& os, const TensorError& e) {
  return os << ToString(e);
}

// `actual` and `reference`: any contiguous ranges of arithmetic values of the same length.
template <typename A, typename R>
TensorError CompareTensors(const A& actual, const R& reference) {
  TensorError e;
  const int64_t n = static_cast<int64_t>(std::size(actual));
  e.size = n;
  double sum_sq_err = 0.0;
  double sum_sq_ref = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    const double a = static_cast<double>(std::data(actual)[i]);
    const double r = static_cast<double>(std::data(reference)[i]);
    double err = std::fabs(a - r);
    if (!std::isfinite(a) && !(a == r)) err = std::numeric_limits<double>::infinity();
    if (err > e.max_abs || e.worst_index < 0) {
      e.max_abs = err;
      e.worst_index = i;
      e.worst_actual = a;
      e.worst_reference = r;
    }
    e.ref_max_abs = std::max(e.ref_max_abs, std::fabs(r));
    sum_sq_err += err * err;
    sum_sq_ref += r * r;
  }
  e.max_rel = e.ref_max_abs > 0.0
                  ? e.max_abs / e.ref_max_abs
                  : (e.max_abs > 0.0 ? std::numeric_limits<double>::infinity() : 0.0);
  e.nmse = sum_sq_ref > 0.0 ? sum_sq_err / sum_sq_ref
                            : (sum_sq_err > 0.0 ? std::numeric_limits<double>::infinity() : 0.0);
  return e;
}

// For EXPECT_TRUE: success iff the sizes match and max_rel <= tolerance.
template <typename A, typename R>
::testing::AssertionResult MaxRelErrorAtMost(const A& actual, const R& reference,
                                             double tolerance) {
  if (std::size(actual) != std::size(reference)) {
    return ::testing::AssertionFailure() << "size mismatch: actual " << std::size(actual)
                                         << " vs reference " << std::size(reference);
  }
  const TensorError e = CompareTensors(actual, reference);
  if (e.size > 0 && !(e.max_rel <= tolerance)) {
    return ::testing::AssertionFailure()
           << "max_rel " << e.max_rel << " > " << tolerance << " (" << e << ")";
  }
  return ::testing::AssertionSuccess() << e;
}

// max |actual - reference| / max |reference|: one number for "equal up to rounding" checks of
// whole logit tensors.
template <typename A, typename R>
double MaxRelativeError(const A& actual, const R& reference) {
  return CompareTensors(actual, reference).max_rel;
}

}  // namespace moeserve::engine::testing
