// Summary statistics against hand-computed values and numpy's definitions
// (np.mean, np.median, np.std with ddof=0, np.percentile with the default "linear" method).
#include "clients/bench/statistics.h"

#include <cmath>

#include "gtest/gtest.h"

namespace moeserve::bench {
namespace {

TEST(StatisticsTest, MeanMedianStdOfFourValuesMatchHandComputation) {
  const std::vector<double> v = {4.0, 1.0, 3.0, 2.0};
  EXPECT_DOUBLE_EQ(Mean(v), 2.5);
  EXPECT_DOUBLE_EQ(Median(v), 2.5);  // even count: midpoint of 2 and 3
  // Population std: sqrt(((1.5)^2 + (0.5)^2 + (0.5)^2 + (1.5)^2) / 4) = sqrt(1.25).
  EXPECT_DOUBLE_EQ(StdDev(v), std::sqrt(1.25));
}

TEST(StatisticsTest, PercentileInterpolatesLinearlyLikeNumpy) {
  // np.percentile([15, 20, 35, 40, 50], q): rank q/100 * 4 between neighbours.
  const std::vector<double> v = {50.0, 15.0, 40.0, 20.0, 35.0};
  EXPECT_DOUBLE_EQ(Percentile(v, 0), 15.0);
  EXPECT_DOUBLE_EQ(Percentile(v, 40), 29.0);  // rank 1.6: 20 + 0.6 * 15
  EXPECT_DOUBLE_EQ(Percentile(v, 50), 35.0);
  EXPECT_DOUBLE_EQ(Percentile(v, 90), 46.0);    // rank 3.6: 40 + 0.6 * 10
  EXPECT_NEAR(Percentile(v, 99), 49.6, 1e-12);  // rank 3.96
  EXPECT_DOUBLE_EQ(Percentile(v, 100), 50.0);
  // np.percentile([1, 2, 3, 4], 90) = 3.7, 99 = 3.97.
  EXPECT_NEAR(Percentile({1, 2, 3, 4}, 90), 3.7, 1e-12);
  EXPECT_NEAR(Percentile({1, 2, 3, 4}, 99), 3.97, 1e-12);
}

TEST(StatisticsTest, MedianOfOddCountIsTheMiddleValue) {
  EXPECT_DOUBLE_EQ(Median({9.0, 1.0, 5.0}), 5.0);
}

TEST(StatisticsTest, EmptySamplesGiveZeroLikeVllmsOrZeroIdiom) {
  const std::vector<double> empty;
  EXPECT_EQ(Mean(empty), 0.0);
  EXPECT_EQ(Median(empty), 0.0);
  EXPECT_EQ(StdDev(empty), 0.0);
  EXPECT_EQ(Percentile(empty, 99), 0.0);
}

TEST(StatisticsTest, SingleSampleHasZeroSpreadAndEveryPercentileEqual) {
  EXPECT_EQ(StdDev({7.0}), 0.0);
  EXPECT_EQ(Percentile({7.0}, 1), 7.0);
  EXPECT_EQ(Percentile({7.0}, 99), 7.0);
}

TEST(StatisticsTest, SummarizeScalesSecondsToMillisecondsAndKeepsPercentileOrder) {
  const MetricSummary s = Summarize({0.001, 0.002, 0.003, 0.004}, {99, 90}, 1000.0);
  EXPECT_NEAR(s.mean, 2.5, 1e-12);
  EXPECT_NEAR(s.median, 2.5, 1e-12);
  EXPECT_NEAR(s.std, std::sqrt(1.25), 1e-12);
  ASSERT_EQ(s.percentiles.size(), 2u);
  EXPECT_EQ(s.percentiles[0].first, 99);
  EXPECT_NEAR(s.percentiles[0].second, 3.97, 1e-9);
  EXPECT_EQ(s.percentiles[1].first, 90);
  EXPECT_NEAR(s.percentiles[1].second, 3.7, 1e-9);
}

}  // namespace
}  // namespace moeserve::bench
