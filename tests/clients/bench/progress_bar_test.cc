// The progress line's text (the drawing itself only happens on a terminal).
#include "clients/bench/progress_bar.h"

#include "gtest/gtest.h"

namespace moeserve::bench {
namespace {

TEST(ProgressBarTest, CountModeShowsDoneOverTotalRateAndEta) {
  // 25 of 100 in 10 s: 2.5 req/s, 75 left → 30 s.
  const std::string line = ProgressBar::Render("", 25, 0, 100, std::nullopt, 10.0, 20);
  EXPECT_NE(line.find("[#####...............]"), std::string::npos) << line;
  EXPECT_NE(line.find(" 25%"), std::string::npos) << line;
  EXPECT_NE(line.find("25/100"), std::string::npos) << line;
  EXPECT_NE(line.find("2.50 req/s"), std::string::npos) << line;
  EXPECT_NE(line.find("elapsed 00:10"), std::string::npos) << line;
  EXPECT_NE(line.find("ETA 00:30"), std::string::npos) << line;
  EXPECT_EQ(line.find("failed"), std::string::npos) << line;
}

TEST(ProgressBarTest, FailuresAndUnknownEtaAreShown) {
  const std::string line = ProgressBar::Render("rate 4", 0, 0, 10, std::nullopt, 0.0, 10);
  EXPECT_NE(line.find("rate 4 ["), std::string::npos) << line;
  EXPECT_NE(line.find("ETA --:--"), std::string::npos) << line;
  EXPECT_NE(ProgressBar::Render("", 5, 2, 10, std::nullopt, 1.0).find("(2 failed)"),
            std::string::npos);
}

TEST(ProgressBarTest, DurationModeFillsByTimeAndCountsDone) {
  const std::string line = ProgressBar::Render("", 40, 0, -1, 60.0, 30.0, 10);
  EXPECT_NE(line.find("[#####.....]"), std::string::npos) << line;
  EXPECT_NE(line.find("40 done"), std::string::npos) << line;
  EXPECT_NE(line.find("ETA 00:30"), std::string::npos) << line;
}

TEST(ProgressBarTest, CountersWorkWithoutAnOutput) {
  ProgressBar bar(nullptr, "");
  bar.Start(3, std::nullopt);
  bar.OnRequestDone(true);
  bar.OnRequestDone(false);
  bar.Finish();  // no ticker thread without an output: returns at once
}

}  // namespace
}  // namespace moeserve::bench
