// The loops the CPU kernels split over the calling thread's OpenMP team.
//
// `#pragma omp parallel for if (cond)` enters the OpenMP runtime even when cond is false: the
// region then runs on a team of one, at ~0.4 us a region on this project's 2-core VM, and a
// kjv-v3-tiny decode step entered ~160 regions, most of them too small to split. A kernel called
// inside another parallel region (a whole expert per thread in MoeForward, a block of keys per
// thread in MLA decode) must not fork a nested team either. ParallelFor runs such loops inline
// and enters a parallel region only when it splits the work. Iterations must be independent;
// each one computes the same values however the loop is split (batch invariance).
#pragma once

#include <omp.h>

#include <cstdint>

namespace moeserve::engine {

// The contiguous [begin, end) share of `total` that part `index` of `parts` gets (the first
// total % parts parts one more): a thread's run of a kernel's items, a rank's tokens.
struct IndexRange {
  int64_t begin = 0;
  int64_t end = 0;
  int64_t size() const { return end - begin; }
};
inline IndexRange EvenShare(int64_t total, int parts, int index) {
  const int64_t base = total / parts, extra = total % parts;
  const int64_t begin = index * base + (index < extra ? index : extra);
  return {begin, begin + base + (index < extra ? 1 : 0)};
}

// body(i) for i in [0, n): over the team (static schedule) when `split` and the caller is not
// already inside a parallel region, else in order on the calling thread.
template <typename Body>
void ParallelFor(int64_t n, bool split, const Body& body) {
  if (!split || n < 2 || omp_in_parallel()) {
    for (int64_t i = 0; i < n; ++i) body(i);
    return;
  }
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) body(i);
}

}  // namespace moeserve::engine
