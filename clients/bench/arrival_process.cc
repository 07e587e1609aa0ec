#include "clients/bench/arrival_process.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "clients/bench/bench_random.h"

namespace moeserve::bench {
namespace {

// One inter-arrival gap at `rate` (vLLM: np.random.gamma(shape=burstiness,
// scale=1 / (rate * burstiness))).
double NextGap(BenchRandom& random, double rate, double burstiness) {
  if (std::isinf(rate)) return 0.0;
  if (std::isinf(burstiness)) return 1.0 / rate;
  return random.Gamma(burstiness, 1.0 / (rate * burstiness));
}

}  // namespace

absl::Status ValidateArrivalOptions(const ArrivalOptions& options) {
  if (!(options.burstiness > 0.0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("--burstiness must be > 0, got ", options.burstiness));
  }
  if (options.ramp_up == RampUp::kNone) {
    if (!(options.request_rate > 0.0)) {
      return absl::InvalidArgumentError(
          absl::StrCat("--request-rate must be > 0 (or inf), got ", options.request_rate));
    }
    return absl::OkStatus();
  }
  if (!std::isinf(options.request_rate)) {
    return absl::InvalidArgumentError(
        "--ramp-up-strategy sets the rate itself: leave --request-rate at inf");
  }
  if (!(options.ramp_up_start_rps > 0.0) || !(options.ramp_up_end_rps > 0.0) ||
      std::isinf(options.ramp_up_start_rps) || std::isinf(options.ramp_up_end_rps)) {
    return absl::InvalidArgumentError(
        absl::StrCat("--ramp-up-start-rps and --ramp-up-end-rps must be finite and > 0, got ",
                     options.ramp_up_start_rps, " and ", options.ramp_up_end_rps));
  }
  if (options.ramp_up_start_rps > options.ramp_up_end_rps) {
    return absl::InvalidArgumentError("--ramp-up-start-rps must not exceed --ramp-up-end-rps");
  }
  return absl::OkStatus();
}

double RateAt(const ArrivalOptions& options, double progress) {
  switch (options.ramp_up) {
    case RampUp::kNone:
      return options.request_rate;
    case RampUp::kLinear:
      return options.ramp_up_start_rps +
             (options.ramp_up_end_rps - options.ramp_up_start_rps) * progress;
    case RampUp::kExponential:
      return options.ramp_up_start_rps *
             std::pow(options.ramp_up_end_rps / options.ramp_up_start_rps, progress);
  }
  return options.request_rate;
}

std::vector<double> ArrivalOffsets(const ArrivalOptions& options, int64_t num_requests) {
  std::vector<double> offsets;
  if (num_requests <= 0) return offsets;
  offsets.reserve(num_requests);
  BenchRandom random(options.seed);
  const double last_index = static_cast<double>(std::max<int64_t>(num_requests - 1, 1));
  double t = 0.0;
  for (int64_t i = 0; i < num_requests; ++i) {
    t += NextGap(random, RateAt(options, static_cast<double>(i) / last_index), options.burstiness);
    offsets.push_back(t);
  }
  if (options.ramp_up == RampUp::kNone && t > 0.0) {
    const double scale = static_cast<double>(num_requests) / options.request_rate / t;
    for (double& offset : offsets) offset *= scale;
  }
  return offsets;
}

std::vector<double> ArrivalOffsetsWithin(const ArrivalOptions& options, double duration_s,
                                         int64_t max_requests) {
  std::vector<double> offsets;
  BenchRandom random(options.seed);
  double t = 0.0;
  while (static_cast<int64_t>(offsets.size()) < max_requests) {
    const double rate = RateAt(options, std::min(t / duration_s, 1.0));
    const double gap = NextGap(random, rate, options.burstiness);
    if (gap <= 0.0 && std::isinf(rate)) break;  // an infinite rate has no schedule in time
    t += gap;
    if (t >= duration_s) break;
    offsets.push_back(t);
  }
  return offsets;
}

const char* RampUpName(RampUp ramp_up) {
  switch (ramp_up) {
    case RampUp::kNone:
      return "none";
    case RampUp::kLinear:
      return "linear";
    case RampUp::kExponential:
      return "exponential";
  }
  return "none";
}

}  // namespace moeserve::bench
