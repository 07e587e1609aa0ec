// Radix selection: where, scanning values from the largest down, a running mass reaches a target.
//
// Top-k asks for the k-th largest logit (mass 1 per token, target k); top-p asks for the
// probability at which the most likely tokens reach top_p of the mass (mass = probability).
// Sorting the vocabulary answers both in O(V log V); this answers them in two passes over the
// items, by histogramming the bits of an order-preserving key 11 bits at a time (as radix-select
// top-k kernels do), so its cost does not depend on k or on how many tokens the nucleus holds.
//
// Stateless; a RadixScratch must not be shared between threads.
#pragma once

#include <array>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <vector>

namespace moeserve::engine {

// Maps floats to uint32 so that a < b ⇔ OrderedKey(a) < OrderedKey(b) for non-NaN values
// (-0 sorts just below +0). Positive floats keep their bits with the top bit set; negative ones
// are complemented.
inline uint32_t OrderedKey(float x) {
  const uint32_t bits = std::bit_cast<uint32_t>(x);
  return (bits & 0x80000000u) != 0 ? ~bits : bits | 0x80000000u;
}

inline float FromOrderedKey(uint32_t key) {
  return std::bit_cast<float>((key & 0x80000000u) != 0 ? key & 0x7fffffffu : ~key);
}

struct RadixCutoff {
  bool found = false;       // false: the whole mass is below target
  uint32_t key = 0;         // K: mass(keys > K) < target <= mass(keys >= K)
  double mass_above = 0.0;  // mass(keys > K)
};

// Items of the bucket where the target falls, kept between passes.
struct RadixScratch {
  struct Member {
    uint32_t key;
    double mass;
  };
  std::vector<Member> members;
};

namespace radix_internal {

inline constexpr int kLevelBits[3] = {11, 11, 10};  // 32 bits, most significant first
inline constexpr int kLevelShift[3] = {21, 10, 0};
inline constexpr size_t kMaxBuckets = 2048;

// Scans buckets from the top; returns the one where acc + its mass reaches target and leaves
// the mass above it in acc. If the target is not reached (the whole mass is short, or summing
// in another order rounded below it) returns -1 with acc the whole mass, or with
// lowest_if_short the lowest bucket holding mass.
inline int ScanDown(const std::array<double, kMaxBuckets>& hist, int buckets, double target,
                    double& acc, bool lowest_if_short) {
  double above = acc;
  int lowest = -1;
  for (int b = buckets - 1; b >= 0; --b) {
    if (hist[b] <= 0.0) continue;
    if (above + hist[b] >= target) {
      acc = above;
      return b;
    }
    lowest = b;
    above += hist[b];
  }
  if (!lowest_if_short || lowest < 0) {
    acc = above;
    return -1;
  }
  // Mass above `lowest` is everything except it.
  acc = above - hist[lowest];
  return lowest;
}

}  // namespace radix_internal

// key(i) -> uint32 (e.g. OrderedKey of a value), mass(i) -> double >= 0, for i in [0, n);
// target > 0. Items with mass 0 do not count. Calls key and mass about twice per item.
template <typename KeyFn, typename MassFn>
RadixCutoff FindRadixCutoff(size_t n, KeyFn key, MassFn mass, double target,
                            RadixScratch& scratch) {
  using namespace radix_internal;
  std::array<double, kMaxBuckets> hist;
  RadixCutoff out;
  double acc = 0.0;

  // Level 1: every item.
  hist.fill(0.0);
  for (size_t i = 0; i < n; ++i) {
    const double m = mass(i);
    if (m > 0.0) hist[key(i) >> kLevelShift[0]] += m;  // zeros would only lengthen add chains
  }
  const int b1 = ScanDown(hist, 1 << kLevelBits[0], target, acc, /*lowest_if_short=*/false);
  if (b1 < 0) return out;
  uint32_t prefix = static_cast<uint32_t>(b1);

  // Level 2: the items of bucket b1, which are kept for level 3.
  std::vector<RadixScratch::Member>& members = scratch.members;
  members.clear();
  hist.fill(0.0);
  constexpr uint32_t kMask2 = (1u << kLevelBits[1]) - 1;
  for (size_t i = 0; i < n; ++i) {
    const uint32_t k = key(i);
    if ((k >> kLevelShift[0]) != prefix) continue;
    const double m = mass(i);
    if (m <= 0.0) continue;
    members.push_back({k, m});
    hist[(k >> kLevelShift[1]) & kMask2] += m;
  }
  const int b2 = ScanDown(hist, 1 << kLevelBits[1], target, acc, /*lowest_if_short=*/true);
  prefix = prefix << kLevelBits[1] | static_cast<uint32_t>(b2);

  // Level 3: the items of bucket (b1, b2).
  hist.fill(0.0);
  constexpr uint32_t kMask3 = (1u << kLevelBits[2]) - 1;
  for (const RadixScratch::Member& m : members) {
    if ((m.key >> kLevelShift[1]) == prefix) hist[m.key & kMask3] += m.mass;
  }
  const int b3 = ScanDown(hist, 1 << kLevelBits[2], target, acc, /*lowest_if_short=*/true);
  out.found = true;
  out.key = prefix << kLevelBits[2] | static_cast<uint32_t>(b3);
  out.mass_above = acc;
  return out;
}

}  // namespace moeserve::engine
