// Per-sequence random numbers for sampling: a counter-based generator.
//
// Draw i of a sequence is Philox-4x32-10(counter = i, key = seed), a pure function of the
// sequence's seed and how many draws it has made. Nothing is shared between sequences, so a
// sequence's tokens never depend on the batch it runs in, on thread scheduling, or on other
// requests; and the whole state is two integers, so a preempted sequence can be resumed (or a
// CUDA sampler can reproduce a draw) from (seed, counter). Philox is the generator behind cuRAND
// and PyTorch's CUDA RNG (Salmon et al., "Parallel Random Numbers: As Easy as 1, 2, 3", SC'11).
//
// Not thread-safe; each sequence owns one.
#pragma once

#include <array>
#include <cstdint>

namespace moeserve::engine {

// One Philox-4x32-10 block: 10 rounds of the bijection keyed by `key` applied to `counter`.
// Matches Random123's philox4x32 (its tests/kat_vectors pin the output).
std::array<uint32_t, 4> Philox4x32x10(std::array<uint32_t, 4> counter, std::array<uint32_t, 2> key);

class SequenceRng {
 public:
  // `counter` is the number of draws already made: SequenceRng(s, n) continues where a
  // generator with seed s stopped after n draws.
  explicit SequenceRng(uint64_t seed, uint64_t counter = 0) : seed_(seed), counter_(counter) {}

  // A uniform double in [0, 1) with 53 random bits; advances the counter by one.
  double NextUniform();

  uint64_t seed() const { return seed_; }
  uint64_t counter() const { return counter_; }

 private:
  uint64_t seed_;
  uint64_t counter_;
};

}  // namespace moeserve::engine
