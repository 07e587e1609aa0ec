#include "engine/sampling/sequence_rng.h"

#include <array>
#include <cstdint>
#include <vector>

#include "gtest/gtest.h"

namespace moeserve::engine {
namespace {

// Random123 tests/kat_vectors, the three "philox4x32 10" lines: counter[4] key[2] → result[4].
TEST(Philox4x32x10Test, MatchesRandom123KnownAnswers) {
  EXPECT_EQ(Philox4x32x10({0, 0, 0, 0}, {0, 0}),
            (std::array<uint32_t, 4>{0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8}));
  EXPECT_EQ(
      Philox4x32x10({0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff}, {0xffffffff, 0xffffffff}),
      (std::array<uint32_t, 4>{0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd}));
  EXPECT_EQ(
      Philox4x32x10({0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344}, {0xa4093822, 0x299f31d0}),
      (std::array<uint32_t, 4>{0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1}));
}

// Pins the layout a CUDA sampler must reproduce: draw n of seed s is Philox(counter = n as
// (lo, hi, 0, 0), key = s as (lo, hi)), top 53 bits of words 0 and 1.
TEST(SequenceRngTest, DrawIsPhiloxOfCounterAndSeed) {
  const uint64_t seed = 0x0123456789abcdefull;
  SequenceRng rng(seed, 0x1'0000'0005ull);
  const std::array<uint32_t, 4> block =
      Philox4x32x10({0x00000005, 0x00000001, 0, 0}, {0x89abcdef, 0x01234567});
  const uint64_t bits = ((static_cast<uint64_t>(block[0]) << 32) | block[1]) >> 11;
  EXPECT_EQ(rng.NextUniform(), static_cast<double>(bits) / 9007199254740992.0);
  EXPECT_EQ(rng.counter(), 0x1'0000'0006ull);
  EXPECT_EQ(rng.seed(), seed);
}

TEST(SequenceRngTest, ResumingFromACounterContinuesTheSequence) {
  SequenceRng a(42);
  std::vector<double> first;
  for (int i = 0; i < 10; ++i) first.push_back(a.NextUniform());
  SequenceRng b(42, 6);
  for (int i = 6; i < 10; ++i) EXPECT_EQ(b.NextUniform(), first[i]) << i;
}

TEST(SequenceRngTest, DifferentSeedsGiveDifferentStreams) {
  SequenceRng a(1);
  SequenceRng b(2);
  int equal = 0;
  for (int i = 0; i < 100; ++i) equal += a.NextUniform() == b.NextUniform() ? 1 : 0;
  EXPECT_EQ(equal, 0);
}

// 16 equal bins over 160,000 draws: chi-square with 15 degrees of freedom stays below its 0.999
// quantile, 37.697; and every draw lies in [0, 1).
TEST(SequenceRngTest, UniformsAreInUnitIntervalAndUniform) {
  constexpr int kBins = 16;
  constexpr int kDraws = 160000;
  std::array<int, kBins> counts{};
  SequenceRng rng(7);
  double sum = 0.0;
  for (int i = 0; i < kDraws; ++i) {
    const double u = rng.NextUniform();
    ASSERT_GE(u, 0.0);
    ASSERT_LT(u, 1.0);
    sum += u;
    ++counts[static_cast<int>(u * kBins)];
  }
  const double expected = static_cast<double>(kDraws) / kBins;
  double chi2 = 0.0;
  for (int c : counts) chi2 += (c - expected) * (c - expected) / expected;
  EXPECT_LT(chi2, 37.697);
  EXPECT_NEAR(sum / kDraws, 0.5, 0.005);  // sd of the mean is 0.00072
}

}  // namespace
}  // namespace moeserve::engine
