#include "clients/bench/bench_metrics.h"

#include <algorithm>
#include <cmath>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace moeserve::bench {
namespace {

constexpr double kMsPerSecond = 1000.0;

// vLLM's max_output_tokens_per_s: tokens bucketed by whole seconds since the earliest start.
double PeakOutputTokensPerSecond(const std::vector<const RequestRecord*>& successes) {
  if (successes.empty()) return 0.0;
  double min_start = successes.front()->start_time;
  double max_end = successes.front()->start_time + successes.front()->latency;
  for (const RequestRecord* r : successes) {
    min_start = std::min(min_start, r->start_time);
    max_end = std::max(max_end, r->start_time + r->latency);
  }
  const auto num_buckets = static_cast<size_t>(std::ceil(max_end - min_start)) + 1;
  std::vector<double> tokens_per_second(num_buckets, 0.0);
  for (const RequestRecord* r : successes) {
    for (size_t i = 0; i < r->token_message_times.size(); ++i) {
      const double t = r->token_message_times[i] - min_start;
      if (t < 0.0) continue;
      const auto bucket = static_cast<size_t>(t);
      if (bucket < num_buckets) tokens_per_second[bucket] += r->token_message_counts[i];
    }
  }
  return *std::max_element(tokens_per_second.begin(), tokens_per_second.end());
}

// Peak of overlapping [start, end) intervals; an end at the same instant as a start comes first.
int64_t PeakConcurrency(const std::vector<const RequestRecord*>& successes) {
  std::vector<std::pair<double, int>> events;
  events.reserve(successes.size() * 2);
  for (const RequestRecord* r : successes) {
    events.emplace_back(r->start_time, +1);
    events.emplace_back(r->start_time + r->latency, -1);
  }
  std::sort(events.begin(), events.end());
  int64_t current = 0;
  int64_t peak = 0;
  for (const auto& [time, delta] : events) {
    current += delta;
    peak = std::max(peak, current);
  }
  return peak;
}

}  // namespace

absl::StatusOr<GoodputSlo> ParseGoodput(const std::vector<std::string>& pairs) {
  GoodputSlo slo;
  for (const std::string& pair : pairs) {
    const std::vector<std::string> parts = absl::StrSplit(pair, ':');
    double value = 0.0;
    if (parts.size() != 2 || !absl::SimpleAtod(parts[1], &value)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--goodput takes KEY:VALUE pairs with the value in milliseconds, got '", pair, "'"));
    }
    if (!(value >= 0.0)) {
      return absl::InvalidArgumentError(
          absl::StrCat("--goodput ", parts[0], " must be >= 0 ms, got ", parts[1]));
    }
    if (parts[0] == "ttft") {
      slo.ttft_ms = value;
    } else if (parts[0] == "tpot") {
      slo.tpot_ms = value;
    } else if (parts[0] == "e2el") {
      slo.e2el_ms = value;
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat("--goodput metric must be one of ttft, tpot, e2el, got '", parts[0], "'"));
    }
  }
  return slo;
}

double RequestTpot(const RequestRecord& record) {
  if (record.output_tokens <= 1) return 0.0;
  return (record.latency - record.ttft) / static_cast<double>(record.output_tokens - 1);
}

BenchmarkMetrics ComputeMetrics(const std::vector<RequestRecord>& records, double duration_s,
                                const std::vector<double>& percentiles, const GoodputSlo& slo) {
  BenchmarkMetrics m;
  m.duration_s = duration_s;
  std::vector<double> ttfts, tpots, itls, e2els, ttft_gaps, e2el_gaps;
  std::vector<const RequestRecord*> successes;
  int64_t good = 0;
  for (const RequestRecord& r : records) {
    if (!r.success) {
      ++m.failed;
      ++m.errors_by_code[r.status_code];
      m.output_lens.push_back(0);
      continue;
    }
    successes.push_back(&r);
    ++m.completed;
    m.total_input += r.prompt_len;
    m.total_output += r.output_tokens;
    m.output_lens.push_back(r.output_tokens);
    if (r.output_tokens != r.server_completion_tokens) ++m.usage_mismatches;
    const double tpot = RequestTpot(r);
    if (r.output_tokens > 1) tpots.push_back(tpot);
    itls.insert(itls.end(), r.itl.begin(), r.itl.end());
    ttfts.push_back(r.ttft);
    e2els.push_back(r.latency);
    if (r.server_e2e > 0.0) {
      ttft_gaps.push_back(r.ttft - r.server_ttft);
      e2el_gaps.push_back(r.latency - r.server_e2e);
    }
    // An SLO is met when the value does not exceed it (vLLM: s >= r).
    const bool is_good = (!slo.ttft_ms || r.ttft * kMsPerSecond <= *slo.ttft_ms) &&
                         (!slo.tpot_ms || tpot * kMsPerSecond <= *slo.tpot_ms) &&
                         (!slo.e2el_ms || r.latency * kMsPerSecond <= *slo.e2el_ms);
    if (is_good) ++good;
  }
  const double duration = duration_s > 0.0 ? duration_s : 1.0;
  m.request_throughput = static_cast<double>(m.completed) / duration;
  if (!slo.empty()) m.request_goodput = static_cast<double>(good) / duration;
  m.output_throughput = static_cast<double>(m.total_output) / duration;
  m.total_token_throughput = static_cast<double>(m.total_input + m.total_output) / duration;
  m.ttft_ms = Summarize(ttfts, percentiles, kMsPerSecond);
  m.tpot_ms = Summarize(tpots, percentiles, kMsPerSecond);
  m.itl_ms = Summarize(itls, percentiles, kMsPerSecond);
  m.e2el_ms = Summarize(e2els, percentiles, kMsPerSecond);
  m.ttft_gap_ms = Summarize(ttft_gaps, percentiles, kMsPerSecond);
  m.e2el_gap_ms = Summarize(e2el_gaps, percentiles, kMsPerSecond);
  m.num_server_timed = static_cast<int64_t>(ttft_gaps.size());
  m.max_output_tokens_per_s = PeakOutputTokensPerSecond(successes);
  m.max_concurrent_requests = PeakConcurrency(successes);
  return m;
}

}  // namespace moeserve::bench
