#include "clients/bench/server_metrics.h"

#include <algorithm>
#include <chrono>
#include <cstdlib>

#include "absl/strings/match.h"
#include "clients/bench/http_get.h"

namespace moeserve::bench {
namespace {

constexpr double kMsPerSecond = 1000.0;

// Parses `{name="value",...}` starting at text[pos] == '{'; returns the position after '}',
// or npos when malformed.
size_t ParseLabels(const std::string& text, size_t pos,
                   std::map<std::string, std::string>& labels) {
  ++pos;  // '{'
  while (pos < text.size()) {
    while (pos < text.size() && (text[pos] == ' ' || text[pos] == ',')) ++pos;
    if (pos < text.size() && text[pos] == '}') return pos + 1;
    const size_t equals = text.find('=', pos);
    if (equals == std::string::npos || equals + 1 >= text.size() || text[equals + 1] != '"') {
      return std::string::npos;
    }
    const std::string key = text.substr(pos, equals - pos);
    std::string value;
    pos = equals + 2;
    while (pos < text.size() && text[pos] != '"') {
      if (text[pos] == '\\' && pos + 1 < text.size()) {
        const char escaped = text[++pos];
        value.push_back(escaped == 'n' ? '\n' : escaped);
      } else {
        value.push_back(text[pos]);
      }
      ++pos;
    }
    if (pos >= text.size()) return std::string::npos;
    labels[key] = value;
    ++pos;  // closing quote
  }
  return std::string::npos;
}

std::optional<HistogramGrowth> Growth(const MetricsText& before, const MetricsText& after,
                                      const std::string& base) {
  if (!after.Has(base + "_count")) return std::nullopt;
  return HistogramGrowth{.sum = after.Sum(base + "_sum") - before.Sum(base + "_sum"),
                         .count = after.Sum(base + "_count") - before.Sum(base + "_count")};
}

nlohmann::json HistogramJson(const std::optional<HistogramGrowth>& growth, double scale) {
  if (!growth) return nullptr;
  return {{"mean", growth->Mean() * scale}, {"count", growth->count}};
}

}  // namespace

MetricsText MetricsText::Parse(const std::string& text) {
  MetricsText page;
  size_t begin = 0;
  while (begin < text.size()) {
    size_t end = text.find('\n', begin);
    if (end == std::string::npos) end = text.size();
    const std::string line = text.substr(begin, end - begin);
    begin = end + 1;
    if (line.empty() || line[0] == '#') continue;
    Sample sample;
    size_t pos = line.find_first_of("{ ");
    if (pos == std::string::npos) continue;
    sample.name = line.substr(0, pos);
    if (line[pos] == '{') {
      pos = ParseLabels(line, pos, sample.labels);
      if (pos == std::string::npos) continue;
    }
    const char* value_text = line.c_str() + pos;
    char* value_end = nullptr;
    sample.value = std::strtod(value_text, &value_end);  // also reads NaN, +Inf, -Inf
    if (value_end == value_text) continue;
    page.samples_.push_back(std::move(sample));
  }
  return page;
}

bool MetricsText::Has(const std::string& name) const {
  return std::any_of(samples_.begin(), samples_.end(),
                     [&](const Sample& s) { return s.name == name; });
}

double MetricsText::Sum(const std::string& name) const {
  double sum = 0.0;
  for (const Sample& s : samples_) {
    if (s.name == name) sum += s.value;
  }
  return sum;
}

std::map<std::string, double> MetricsText::SumBy(const std::string& name,
                                                 const std::string& label) const {
  std::map<std::string, double> sums;
  for (const Sample& s : samples_) {
    if (s.name != name) continue;
    const auto it = s.labels.find(label);
    sums[it == s.labels.end() ? "" : it->second] += s.value;
  }
  return sums;
}

std::vector<std::string> MetricsText::HistogramsMatching(const std::string& prefix,
                                                         const std::string& part) const {
  std::vector<std::string> names;
  for (const Sample& s : samples_) {
    if (!absl::StartsWith(s.name, prefix) || !absl::EndsWith(s.name, "_count")) continue;
    const std::string base = s.name.substr(0, s.name.size() - 6);
    if (!absl::StrContains(base, part) || !Has(base + "_sum")) continue;
    if (std::find(names.begin(), names.end(), base) == names.end()) names.push_back(base);
  }
  return names;
}

GaugePoll ReadGauges(const MetricsText& page) {
  GaugePoll poll;
  if (page.Has(kKvUsageSeries)) poll.kv_usage = page.Sum(kKvUsageSeries);
  if (page.Has(kRunningSeries)) poll.num_running = page.Sum(kRunningSeries);
  return poll;
}

ServerMetricsReport CompareMetrics(const MetricsText& before, const MetricsText& after,
                                   const std::vector<GaugePoll>& polls) {
  ServerMetricsReport r;
  const auto histogram = [&](const char* base, std::optional<HistogramGrowth>& out) {
    out = Growth(before, after, base);
    if (!out) r.missing.push_back(base);
  };
  histogram(kTtftSeries, r.ttft);
  histogram(kItlSeries, r.itl);
  histogram(kE2eSeries, r.e2e);
  histogram(kQueueSeries, r.queue);
  histogram(kPrefillSeries, r.prefill);
  histogram(kDecodeSeries, r.decode);
  // The step time has no vLLM name; take whichever moeserve_*step*_seconds histogram exists.
  for (const std::string& base : after.HistogramsMatching("moeserve_", "step")) {
    if (absl::EndsWith(base, "_seconds")) {
      r.step_series = base;
      r.step = Growth(before, after, base);
      break;
    }
  }
  if (!r.step) r.missing.push_back("moeserve_*step*_seconds (engine step time)");
  for (const char* base : {"moeserve_iteration_tokens", "moeserve_iteration_tokens_total"}) {
    if (!r.iteration_tokens) r.iteration_tokens = Growth(before, after, base);
  }
  if (!r.iteration_tokens) r.missing.push_back("moeserve_iteration_tokens");

  const auto counter = [&](const char* name) { return after.Sum(name) - before.Sum(name); };
  r.generation_tokens = counter("moeserve_generation_tokens_total");
  r.prompt_tokens = counter("moeserve_prompt_tokens_total");
  r.preemptions = counter("moeserve_num_preemptions_total");
  r.prefix_cache_queries = counter("moeserve_prefix_cache_queries_total");
  r.prefix_cache_hits = counter("moeserve_prefix_cache_hits_total");
  if (after.Has("moeserve_spec_decode_num_drafts_total")) {
    r.spec_drafts = counter("moeserve_spec_decode_num_drafts_total");
    r.spec_draft_tokens = counter("moeserve_spec_decode_num_draft_tokens_total");
    r.spec_accepted_tokens = counter("moeserve_spec_decode_num_accepted_tokens_total");
    const std::map<std::string, double> per_position_before =
        before.SumBy("moeserve_spec_decode_num_accepted_tokens_per_pos_total", "position");
    for (const auto& [position, value] :
         after.SumBy("moeserve_spec_decode_num_accepted_tokens_per_pos_total", "position")) {
      const auto it = per_position_before.find(position);
      r.spec_accepted_per_position[position] =
          value - (it == per_position_before.end() ? 0.0 : it->second);
    }
  }
  const std::map<std::string, double> reasons_before =
      before.SumBy("moeserve_request_success_total", "finished_reason");
  for (const auto& [reason, value] :
       after.SumBy("moeserve_request_success_total", "finished_reason")) {
    const auto it = reasons_before.find(reason);
    r.finished_by_reason[reason] = value - (it == reasons_before.end() ? 0.0 : it->second);
  }

  if (after.Has(kKvUsageSeries)) {
    r.kv_usage_after = after.Sum(kKvUsageSeries);
  } else {
    r.missing.push_back(kKvUsageSeries);
  }
  double kv_total = 0.0;
  int kv_samples = 0;
  for (const GaugePoll& poll : polls) {
    if (poll.kv_usage) {
      r.kv_usage_peak = std::max(r.kv_usage_peak.value_or(0.0), *poll.kv_usage);
      kv_total += *poll.kv_usage;
      ++kv_samples;
    }
    if (poll.num_running) {
      r.running_peak = std::max(r.running_peak.value_or(0.0), *poll.num_running);
    }
  }
  if (kv_samples > 0) r.kv_usage_mean = kv_total / kv_samples;
  return r;
}

nlohmann::json ServerMetricsJson(const ServerMetricsReport& r) {
  nlohmann::json j = {
      {"ttft_ms", HistogramJson(r.ttft, kMsPerSecond)},
      {"itl_ms", HistogramJson(r.itl, kMsPerSecond)},
      {"e2e_ms", HistogramJson(r.e2e, kMsPerSecond)},
      {"queue_ms", HistogramJson(r.queue, kMsPerSecond)},
      {"prefill_ms", HistogramJson(r.prefill, kMsPerSecond)},
      {"decode_ms", HistogramJson(r.decode, kMsPerSecond)},
      {"step_ms", HistogramJson(r.step, kMsPerSecond)},
      {"step_series", r.step_series},
      {"iteration_tokens", HistogramJson(r.iteration_tokens, 1.0)},
      {"generation_tokens", r.generation_tokens},
      {"prompt_tokens", r.prompt_tokens},
      {"preemptions", r.preemptions},
      {"prefix_cache_queries", r.prefix_cache_queries},
      {"prefix_cache_hits", r.prefix_cache_hits},
      {"finished_by_reason", r.finished_by_reason},
      {"kv_cache_usage_after", r.kv_usage_after ? nlohmann::json(*r.kv_usage_after) : nullptr},
      {"kv_cache_usage_peak", r.kv_usage_peak ? nlohmann::json(*r.kv_usage_peak) : nullptr},
      {"kv_cache_usage_mean", r.kv_usage_mean ? nlohmann::json(*r.kv_usage_mean) : nullptr},
      {"num_requests_running_peak", r.running_peak ? nlohmann::json(*r.running_peak) : nullptr},
      {"missing", r.missing},
  };
  if (r.spec_drafts) {
    const std::optional<double> length = r.MeanAcceptanceLength();
    j["speculative_decoding"] = {
        {"drafts", *r.spec_drafts},
        {"draft_tokens", r.spec_draft_tokens.value_or(0.0)},
        {"accepted_tokens", r.spec_accepted_tokens.value_or(0.0)},
        {"accepted_per_position", r.spec_accepted_per_position},
        {"mean_acceptance_length", length ? nlohmann::json(*length) : nullptr},
        {"acceptance_rate",
         r.spec_draft_tokens.value_or(0.0) > 0.0
             ? nlohmann::json(r.spec_accepted_tokens.value_or(0.0) / *r.spec_draft_tokens)
             : nullptr}};
  }
  return j;
}

absl::StatusOr<MetricsText> ScrapeMetrics(const std::string& url) {
  absl::StatusOr<std::string> body = HttpGet(url);
  if (!body.ok()) return body.status();
  return MetricsText::Parse(*body);
}

MetricsWatcher::MetricsWatcher(std::string url, double period_s)
    : url_(std::move(url)), period_s_(period_s) {}

MetricsWatcher::~MetricsWatcher() { Stop(); }

void MetricsWatcher::Start() {
  stop_ = false;
  thread_ = std::thread([this] {
    const auto period = std::chrono::duration<double>(period_s_);
    while (!stop_) {
      const auto next = std::chrono::steady_clock::now() + period;
      if (absl::StatusOr<MetricsText> page = ScrapeMetrics(url_); page.ok()) {
        std::lock_guard<std::mutex> lock(mu_);
        polls_.push_back(ReadGauges(*page));
      }
      // Sleep in short slices so Stop() returns promptly.
      while (!stop_ && std::chrono::steady_clock::now() < next) {
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
      }
    }
  });
}

std::vector<GaugePoll> MetricsWatcher::Stop() {
  stop_ = true;
  if (thread_.joinable()) thread_.join();
  std::lock_guard<std::mutex> lock(mu_);
  return std::move(polls_);
}

}  // namespace moeserve::bench
