// When each request of a run is sent: the open-loop arrival schedule of `vllm bench serve`.
//
// Inter-arrival gaps are gamma distributed with shape = burstiness and mean 1 / rate
// (burstiness 1 is a Poisson process; < 1 burstier, > 1 more regular; inf = a fixed gap).
// A rate of inf sends every request at t = 0, which together with --max-concurrency gives the
// closed-loop mode. As in vLLM (vllm/benchmarks/serve.py, get_request), the first request also
// waits for one gap, and without ramp-up the cumulative schedule is rescaled so that the last
// request leaves at exactly n / rate, which removes the 1-2 % spread of throughput between
// seeds. A linear or exponential ramp-up moves the rate from start to end over the run instead.
//
// The runner (runner.cc) asks for the whole schedule up front so that sending never waits on
// random-number generation. Pure functions of the options and seed.
#pragma once

#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "absl/status/status.h"

namespace moeserve::bench {

enum class RampUp { kNone, kLinear, kExponential };

struct ArrivalOptions {
  double request_rate = std::numeric_limits<double>::infinity();  // requests/s; inf = all at once
  double burstiness = 1.0;                                        // gamma shape; > 0, may be inf
  RampUp ramp_up = RampUp::kNone;
  double ramp_up_start_rps = 0.0;  // with ramp_up: rates move from start to end
  double ramp_up_end_rps = 0.0;
  uint64_t seed = 0;
};

absl::Status ValidateArrivalOptions(const ArrivalOptions& options);

// The rate at `progress` in [0, 1] through the run (vLLM's _get_current_request_rate, where
// progress = index / (total - 1)): the configured rate, or the ramp-up rate there.
double RateAt(const ArrivalOptions& options, double progress);

// Send times in seconds from the start of the run, non-decreasing, one per request.
std::vector<double> ArrivalOffsets(const ArrivalOptions& options, int64_t num_requests);

// For a --duration run: send times up to `duration_s` (ramp-up progress is elapsed / duration).
// Not rescaled, since the number of requests is itself the outcome. Needs a finite rate (or a
// ramp-up); stops after `max_requests`.
std::vector<double> ArrivalOffsetsWithin(const ArrivalOptions& options, double duration_s,
                                         int64_t max_requests);

const char* RampUpName(RampUp ramp_up);

}  // namespace moeserve::bench
