// The arrival processes with fixed seeds: gamma variates have the textbook moments, Poisson and
// gamma schedules have inter-arrival mean 1/rate and variance 1/(rate^2 * burstiness), and the
// schedule follows vLLM's rules (first gap included, rescaled to end at n / rate, inf = at once).
#include "clients/bench/arrival_process.h"

#include <cmath>
#include <limits>

#include "clients/bench/bench_random.h"
#include "clients/bench/statistics.h"
#include "gtest/gtest.h"

namespace moeserve::bench {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

std::vector<double> Gaps(const std::vector<double>& offsets) {
  std::vector<double> gaps;
  double previous = 0.0;
  for (double t : offsets) {
    gaps.push_back(t - previous);
    previous = t;
  }
  return gaps;
}

double Variance(const std::vector<double>& v) { return StdDev(v) * StdDev(v); }

TEST(BenchRandomTest, GammaVariatesHaveMeanKThetaAndVarianceKThetaSquared) {
  for (const double shape : {0.3, 1.0, 2.5, 9.0}) {
    BenchRandom random(42);
    const double scale = 0.2;
    std::vector<double> samples(200000);
    for (double& s : samples) s = random.Gamma(shape, scale);
    EXPECT_NEAR(Mean(samples) / (shape * scale), 1.0, 0.02) << "shape " << shape;
    EXPECT_NEAR(Variance(samples) / (shape * scale * scale), 1.0, 0.05) << "shape " << shape;
  }
}

TEST(BenchRandomTest, UniformIntCoversTheClosedRangeAndNothingElse) {
  BenchRandom random(7);
  std::vector<int> seen(5, 0);
  for (int i = 0; i < 5000; ++i) {
    const int64_t v = random.UniformInt(3, 7);
    ASSERT_GE(v, 3);
    ASSERT_LE(v, 7);
    ++seen[v - 3];
  }
  for (int count : seen) EXPECT_NEAR(count, 1000, 150);
}

TEST(ArrivalProcessTest, PoissonGapsHaveMeanOneOverRateAndVarianceOneOverRateSquared) {
  const double rate = 8.0;
  const int n = 20000;
  const std::vector<double> gaps =
      Gaps(ArrivalOffsets(ArrivalOptions{.request_rate = rate, .burstiness = 1.0, .seed = 1}, n));
  ASSERT_EQ(gaps.size(), static_cast<size_t>(n));
  // Rescaling makes the mean exact; the variance of an exponential is 1 / rate^2.
  EXPECT_NEAR(Mean(gaps), 1.0 / rate, 1e-12);
  EXPECT_NEAR(Variance(gaps) * rate * rate, 1.0, 0.08);
}

TEST(ArrivalProcessTest, GammaBurstinessScalesTheVarianceByOneOverBurstiness) {
  const double rate = 4.0;
  const int n = 20000;
  for (const double burstiness : {0.25, 0.5, 2.0, 4.0}) {
    const std::vector<double> gaps = Gaps(ArrivalOffsets(
        ArrivalOptions{.request_rate = rate, .burstiness = burstiness, .seed = 3}, n));
    EXPECT_NEAR(Mean(gaps), 1.0 / rate, 1e-12) << "burstiness " << burstiness;
    // Gamma(k, 1 / (rate k)): variance k / (rate k)^2 = 1 / (rate^2 k).
    EXPECT_NEAR(Variance(gaps) * rate * rate * burstiness, 1.0, 0.12)
        << "burstiness " << burstiness;
  }
}

TEST(ArrivalProcessTest, ScheduleEndsAtNOverRateAndIncludesTheFirstGap) {
  const std::vector<double> offsets =
      ArrivalOffsets(ArrivalOptions{.request_rate = 5.0, .seed = 9}, 50);
  ASSERT_EQ(offsets.size(), 50u);
  EXPECT_NEAR(offsets.back(), 50 / 5.0, 1e-9);
  EXPECT_GT(offsets.front(), 0.0);  // vLLM also waits one gap before the first request
  for (size_t i = 1; i < offsets.size(); ++i) EXPECT_GE(offsets[i], offsets[i - 1]);
}

TEST(ArrivalProcessTest, InfiniteRateSendsEverythingAtTimeZero) {
  for (double t : ArrivalOffsets(ArrivalOptions{.request_rate = kInf}, 10)) EXPECT_EQ(t, 0.0);
}

TEST(ArrivalProcessTest, InfiniteBurstinessGivesEvenlySpacedArrivals) {
  const std::vector<double> offsets =
      ArrivalOffsets(ArrivalOptions{.request_rate = 2.0, .burstiness = kInf}, 4);
  EXPECT_NEAR(offsets[0], 0.5, 1e-12);
  EXPECT_NEAR(offsets[1], 1.0, 1e-12);
  EXPECT_NEAR(offsets[3], 2.0, 1e-12);
}

TEST(ArrivalProcessTest, SameSeedSameScheduleOtherSeedOtherSchedule) {
  const ArrivalOptions a{.request_rate = 3.0, .burstiness = 0.7, .seed = 11};
  ArrivalOptions b = a;
  b.seed = 12;
  EXPECT_EQ(ArrivalOffsets(a, 100), ArrivalOffsets(a, 100));
  EXPECT_NE(ArrivalOffsets(a, 100), ArrivalOffsets(b, 100));
}

TEST(ArrivalProcessTest, LinearRampUpMovesTheRateFromStartToEnd) {
  const ArrivalOptions options{.request_rate = kInf,
                               .burstiness = kInf,  // fixed gaps: the rate is visible exactly
                               .ramp_up = RampUp::kLinear,
                               .ramp_up_start_rps = 1.0,
                               .ramp_up_end_rps = 9.0};
  ASSERT_TRUE(ValidateArrivalOptions(options).ok());
  EXPECT_DOUBLE_EQ(RateAt(options, 0.0), 1.0);
  EXPECT_DOUBLE_EQ(RateAt(options, 0.5), 5.0);
  EXPECT_DOUBLE_EQ(RateAt(options, 1.0), 9.0);
  const std::vector<double> gaps = Gaps(ArrivalOffsets(options, 5));
  // Request i of 5 is sent at rate 1 + 8 * i / 4, and no rescaling happens under ramp-up.
  EXPECT_NEAR(gaps[0], 1.0, 1e-12);
  EXPECT_NEAR(gaps[2], 1.0 / 5.0, 1e-12);
  EXPECT_NEAR(gaps[4], 1.0 / 9.0, 1e-12);
}

TEST(ArrivalProcessTest, ExponentialRampUpMultipliesTheRateGeometrically) {
  const ArrivalOptions options{.request_rate = kInf,
                               .ramp_up = RampUp::kExponential,
                               .ramp_up_start_rps = 1.0,
                               .ramp_up_end_rps = 16.0};
  EXPECT_DOUBLE_EQ(RateAt(options, 0.5), 4.0);
}

TEST(ArrivalProcessTest, DurationScheduleStaysInsideTheWindowWithTheExpectedCount) {
  const std::vector<double> offsets =
      ArrivalOffsetsWithin(ArrivalOptions{.request_rate = 50.0, .seed = 5}, 20.0, 1 << 20);
  ASSERT_FALSE(offsets.empty());
  EXPECT_LT(offsets.back(), 20.0);
  // Poisson count in 20 s at 50/s: mean 1000, sd ~32.
  EXPECT_NEAR(static_cast<double>(offsets.size()), 1000.0, 130.0);
  EXPECT_EQ(ArrivalOffsetsWithin(ArrivalOptions{.request_rate = 50.0}, 20.0, 7).size(), 7u);
}

TEST(ArrivalProcessTest, InvalidOptionsAreRejectedWithTheFlagNamed) {
  EXPECT_NE(ValidateArrivalOptions({.request_rate = 0.0}).message().find("--request-rate"),
            std::string::npos);
  EXPECT_NE(ValidateArrivalOptions({.burstiness = 0.0}).message().find("--burstiness"),
            std::string::npos);
  EXPECT_FALSE(ValidateArrivalOptions({.request_rate = 5.0,
                                       .ramp_up = RampUp::kLinear,
                                       .ramp_up_start_rps = 1,
                                       .ramp_up_end_rps = 2})
                   .ok());  // ramp-up owns the rate
  EXPECT_FALSE(ValidateArrivalOptions({.request_rate = kInf,
                                       .ramp_up = RampUp::kLinear,
                                       .ramp_up_start_rps = 4,
                                       .ramp_up_end_rps = 2})
                   .ok());
}

}  // namespace
}  // namespace moeserve::bench
