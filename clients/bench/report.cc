#include "clients/bench/report.h"

#include <cmath>
#include <filesystem>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace moeserve::bench {
namespace {

constexpr double kMs = 1000.0;

const MetricSummary& SummaryOf(const BenchmarkMetrics& m, const std::string& metric) {
  if (metric == "ttft") return m.ttft_ms;
  if (metric == "tpot") return m.tpot_ms;
  if (metric == "itl") return m.itl_ms;
  return m.e2el_ms;
}

struct MetricTitle {
  const char* key;
  const char* name;
  const char* header;
};
constexpr MetricTitle kMetricTitles[] = {
    {"ttft", "TTFT", "Time to First Token"},
    {"tpot", "TPOT", "Time per Output Token (excl. 1st token)"},
    {"itl", "ITL", "Inter-token Latency"},
    {"e2el", "E2EL", "End-to-end Latency"},
};

nlohmann::ordered_json RateJson(double rate) {
  return std::isinf(rate) ? nlohmann::ordered_json("inf") : nlohmann::ordered_json(rate);
}

void Line(std::FILE* out, const std::string& name, const std::string& value) {
  std::fprintf(out, "%-40s %-10s\n", name.c_str(), value.c_str());
}
std::string Fixed(double value) { return absl::StrFormat("%.2f", value); }

void Rule(std::FILE* out, const std::string& title, char fill) {
  const int width = 50;
  const std::string text = title.empty() ? "" : " " + title + " ";
  const int left = std::max(0, (width - static_cast<int>(text.size())) / 2);
  const int right = std::max(0, width - left - static_cast<int>(text.size()));
  std::fprintf(out, "%s%s%s\n", std::string(left, fill).c_str(), text.c_str(),
               std::string(right, fill).c_str());
}

}  // namespace

std::string PercentileName(double p) {
  if (p == std::floor(p)) return absl::StrCat(static_cast<int64_t>(p));
  return absl::StrCat(p);
}

nlohmann::ordered_json ResultJson(const RunInfo& info, const BenchmarkMetrics& m,
                                  const ReportSelection& selection,
                                  const std::optional<ServerMetricsReport>& server,
                                  const std::vector<RequestRecord>* records) {
  nlohmann::ordered_json j;  // keys in the order vLLM writes them
  j["date"] = info.date;
  j["endpoint_type"] = info.backend;
  j["backend"] = info.backend;
  j["label"] = info.label;
  j["model_id"] = info.model_id;
  j["tokenizer_id"] = info.model_id;
  j["num_prompts"] = info.num_prompts;
  for (const auto& [key, value] : info.metadata) j[key] = value;
  j["request_rate"] = RateJson(info.request_rate);
  j["burstiness"] = info.burstiness;
  j["max_concurrency"] =
      info.max_concurrency ? nlohmann::ordered_json(*info.max_concurrency) : nullptr;
  if (!info.ramp_up_strategy.empty()) {
    j["ramp_up_strategy"] = info.ramp_up_strategy;
    j["ramp_up_start_rps"] = info.ramp_up_start_rps;
    j["ramp_up_end_rps"] = info.ramp_up_end_rps;
  }
  j["duration"] = m.duration_s;
  j["completed"] = m.completed;
  j["failed"] = m.failed;
  j["total_input_tokens"] = m.total_input;
  j["total_output_tokens"] = m.total_output;
  j["request_throughput"] = m.request_throughput;
  j["request_goodput"] = m.request_goodput ? nlohmann::ordered_json(*m.request_goodput) : nullptr;
  j["output_throughput"] = m.output_throughput;
  j["total_token_throughput"] = m.total_token_throughput;
  if (records != nullptr) {
    using Json = nlohmann::ordered_json;
    Json input_lens = Json::array(), ttfts = Json::array(), itls = Json::array(),
         latencies = Json::array(), start_times = Json::array(), errors = Json::array();
    for (const RequestRecord& r : *records) {
      input_lens.push_back(r.prompt_len);
      ttfts.push_back(r.ttft);
      itls.push_back(r.itl);
      latencies.push_back(r.latency);
      start_times.push_back(r.start_time);
      errors.push_back(r.success ? "" : absl::StrCat(r.status_code, ": ", r.error));
    }
    j["input_lens"] = input_lens;
    j["output_lens"] = m.output_lens;
    j["ttfts"] = ttfts;
    j["itls"] = itls;
    j["latencies"] = latencies;
    j["start_times"] = start_times;
    j["errors"] = errors;
  }
  j["max_output_tokens_per_s"] = m.max_output_tokens_per_s;
  j["max_concurrent_requests"] = m.max_concurrent_requests;
  for (const std::string& metric : selection.metrics) {
    const MetricSummary& s = SummaryOf(m, metric);
    j[absl::StrCat("mean_", metric, "_ms")] = s.mean;
    j[absl::StrCat("median_", metric, "_ms")] = s.median;
    j[absl::StrCat("std_", metric, "_ms")] = s.std;
    for (const auto& [p, value] : s.percentiles) {
      j[absl::StrCat("p", PercentileName(p), "_", metric, "_ms")] = value;
    }
  }
  // Ours, beyond vLLM's keys.
  j["target"] = info.target;
  j["dataset_name"] = info.dataset;
  if (info.duration_limit_s) j["duration_limit_s"] = *info.duration_limit_s;
  if (m.num_server_timed > 0) {
    for (const auto& [name, summary] :
         {std::pair{"ttft_gap", &m.ttft_gap_ms}, std::pair{"e2el_gap", &m.e2el_gap_ms}}) {
      j[absl::StrCat("mean_", name, "_ms")] = summary->mean;
      j[absl::StrCat("median_", name, "_ms")] = summary->median;
      for (const auto& [p, value] : summary->percentiles) {
        j[absl::StrCat("p", PercentileName(p), "_", name, "_ms")] = value;
      }
    }
  }
  j["errors_by_code"] = m.errors_by_code;
  j["usage_mismatches"] = m.usage_mismatches;
  if (server) j["server_metrics"] = nlohmann::ordered_json(ServerMetricsJson(*server));
  j["client_context"] = nlohmann::ordered_json(info.context);
  return j;
}

void PrintSummary(std::FILE* out, const RunInfo& info, const BenchmarkMetrics& m,
                  const ReportSelection& selection,
                  const std::optional<ServerMetricsReport>& server) {
  Rule(out, "Serving Benchmark Result", '=');
  Line(out, "Successful requests:", absl::StrCat(m.completed));
  Line(out, "Failed requests:", absl::StrCat(m.failed));
  if (info.max_concurrency)
    Line(out, "Maximum request concurrency:", absl::StrCat(*info.max_concurrency));
  if (!std::isinf(info.request_rate))
    Line(out, "Request rate configured (RPS):", Fixed(info.request_rate));
  Line(out, "Benchmark duration (s):", Fixed(m.duration_s));
  Line(out, "Total input tokens:", absl::StrCat(m.total_input));
  Line(out, "Total generated tokens:", absl::StrCat(m.total_output));
  Line(out, "Request throughput (req/s):", Fixed(m.request_throughput));
  if (m.request_goodput) Line(out, "Request goodput (req/s):", Fixed(*m.request_goodput));
  Line(out, "Output token throughput (tok/s):", Fixed(m.output_throughput));
  Line(out, "Peak output token throughput (tok/s):", Fixed(m.max_output_tokens_per_s));
  Line(out, "Peak concurrent requests:", Fixed(static_cast<double>(m.max_concurrent_requests)));
  Line(out, "Total token throughput (tok/s):", Fixed(m.total_token_throughput));
  for (const MetricTitle& title : kMetricTitles) {
    if (std::find(selection.metrics.begin(), selection.metrics.end(), title.key) ==
        selection.metrics.end()) {
      continue;
    }
    const MetricSummary& s = SummaryOf(m, title.key);
    Rule(out, title.header, '-');
    Line(out, absl::StrCat("Mean ", title.name, " (ms):"), Fixed(s.mean));
    Line(out, absl::StrCat("Median ", title.name, " (ms):"), Fixed(s.median));
    Line(out, absl::StrCat("Std ", title.name, " (ms):"), Fixed(s.std));
    for (const auto& [p, value] : s.percentiles) {
      Line(out, absl::StrCat("P", PercentileName(p), " ", title.name, " (ms):"), Fixed(value));
    }
  }
  if (m.num_server_timed > 0) {
    Rule(out, "Client minus server timing", '-');
    Line(out, "Mean TTFT gap (ms):", Fixed(m.ttft_gap_ms.mean));
    Line(out, "Median TTFT gap (ms):", Fixed(m.ttft_gap_ms.median));
    Line(out, "Mean E2EL gap (ms):", Fixed(m.e2el_gap_ms.mean));
    Line(out, "Median E2EL gap (ms):", Fixed(m.e2el_gap_ms.median));
  }
  if (!m.errors_by_code.empty()) {
    Rule(out, "Errors by status code", '-');
    for (const auto& [code, count] : m.errors_by_code) Line(out, code + ":", absl::StrCat(count));
  }
  if (m.usage_mismatches > 0) {
    Line(out, "Streamed ids != server usage (requests):", absl::StrCat(m.usage_mismatches));
  }
  if (server) {
    const ServerMetricsReport& s = *server;
    Rule(out, "Server side (/metrics deltas)", '-');
    const auto mean_ms = [&](const char* name, const std::optional<HistogramGrowth>& h) {
      Line(out, name, h && h->count > 0 ? Fixed(h->Mean() * kMs) : "n/a");
    };
    mean_ms("Server mean TTFT (ms):", s.ttft);
    mean_ms("Server mean ITL (ms):", s.itl);
    mean_ms("Server mean E2E (ms):", s.e2e);
    mean_ms("Server mean queue time (ms):", s.queue);
    mean_ms("Engine mean step time (ms):", s.step);
    if (s.iteration_tokens && s.iteration_tokens->count > 0) {
      Line(out, "Engine steps:", absl::StrCat(static_cast<int64_t>(s.iteration_tokens->count)));
      Line(out, "Mean tokens per step:", Fixed(s.iteration_tokens->Mean()));
    }
    if (s.itl && s.itl->count > 0 && s.step && s.step->count > 0) {
      Line(out, "Server ITL - engine step (ms):", Fixed((s.itl->Mean() - s.step->Mean()) * kMs));
    }
    if (s.ttft && s.ttft->count > 0) {
      Line(out, "Client - server mean TTFT (ms):", Fixed(m.ttft_ms.mean - s.ttft->Mean() * kMs));
    }
    if (s.itl && s.itl->count > 0) {
      Line(out, "Client - server mean ITL (ms):", Fixed(m.itl_ms.mean - s.itl->Mean() * kMs));
    }
    Line(out, "Server generated tokens:", absl::StrCat(static_cast<int64_t>(s.generation_tokens)));
    if (s.kv_usage_peak) Line(out, "KV cache usage peak (%):", Fixed(*s.kv_usage_peak * 100.0));
    if (s.kv_usage_mean) Line(out, "KV cache usage mean (%):", Fixed(*s.kv_usage_mean * 100.0));
    if (s.kv_usage_after) Line(out, "KV cache usage after (%):", Fixed(*s.kv_usage_after * 100.0));
    if (s.preemptions > 0)
      Line(out, "Preemptions:", absl::StrCat(static_cast<int64_t>(s.preemptions)));
    if (s.prefix_cache_queries > 0) {
      Line(out, "Prefix cache hit rate (%):",
           Fixed(100.0 * s.prefix_cache_hits / s.prefix_cache_queries));
    }
    if (const std::optional<double> length = s.MeanAcceptanceLength()) {
      Line(out, "Spec decode mean acceptance length:", Fixed(*length));
      if (s.spec_draft_tokens.value_or(0.0) > 0.0) {
        Line(out, "Spec decode acceptance rate (%):",
             Fixed(100.0 * s.spec_accepted_tokens.value_or(0.0) / *s.spec_draft_tokens));
      }
    }
    for (const std::string& name : s.missing) Line(out, "Not exported by the server:", name);
  }
  Rule(out, "", '=');
}

absl::Status WriteJson(const std::string& path, const nlohmann::ordered_json& json, bool compact) {
  const std::filesystem::path parent = std::filesystem::path(path).parent_path();
  std::error_code ec;
  if (!parent.empty()) std::filesystem::create_directories(parent, ec);
  std::ofstream out(path);
  if (!out) return absl::UnavailableError(absl::StrCat("cannot write ", path));
  out << (compact ? json.dump() : json.dump(2)) << "\n";
  return out ? absl::OkStatus() : absl::DataLossError(absl::StrCat("error writing ", path));
}

absl::Status WriteDetailedJsonl(const std::string& path,
                                const std::vector<RequestRecord>& records) {
  const std::filesystem::path parent = std::filesystem::path(path).parent_path();
  std::error_code ec;
  if (!parent.empty()) std::filesystem::create_directories(parent, ec);
  std::ofstream out(path);
  if (!out) return absl::UnavailableError(absl::StrCat("cannot write ", path));
  for (const RequestRecord& r : records) {
    nlohmann::json line = {
        {"index", r.index},
        {"request_id", r.request_id},
        {"success", r.success},
        {"status_code", r.status_code},
        {"error", r.error},
        {"scheduled_time", r.scheduled_time},
        {"start_time", r.start_time},
        {"prompt_len", r.prompt_len},
        {"max_tokens", r.max_tokens},
        {"output_tokens", r.output_tokens},
        {"ttft", r.ttft},
        {"tpot", RequestTpot(r)},
        {"latency", r.latency},
        {"itl", r.itl},
        {"finish_reason", r.finish_reason},
        {"server_prompt_tokens", r.server_prompt_tokens},
        {"server_completion_tokens", r.server_completion_tokens},
        {"server_cached_tokens", r.server_cached_tokens},
        {"server_queue_s", r.server_queue},
        {"server_ttft_s", r.server_ttft},
        {"server_e2e_s", r.server_e2e},
    };
    out << line.dump() << "\n";
  }
  return out ? absl::OkStatus() : absl::DataLossError(absl::StrCat("error writing ", path));
}

std::string SweepHeader(const std::string& parameter) {
  return absl::StrFormat("%-16s %5s %5s %8s %10s %10s %10s %10s %10s %10s %10s %9s %9s", parameter,
                         "done", "fail", "req/s", "out tok/s", "TTFT mean", "TTFT p99", "TPOT mean",
                         "ITL mean", "ITL p99", "E2EL mean", "srv ITL", "KV peak");
}

std::string SweepRow(const std::string& value, const BenchmarkMetrics& m,
                     const std::optional<ServerMetricsReport>& server) {
  const auto p99 = [](const MetricSummary& s) {
    for (const auto& [p, v] : s.percentiles) {
      if (p == 99.0) return absl::StrFormat("%.2f", v);
    }
    return std::string("-");
  };
  std::string server_itl = "-";
  std::string kv_peak = "-";
  if (server && server->itl && server->itl->count > 0) {
    server_itl = absl::StrFormat("%.2f", server->itl->Mean() * kMs);
  }
  if (server && server->kv_usage_peak)
    kv_peak = absl::StrFormat("%.1f%%", *server->kv_usage_peak * 100.0);
  return absl::StrFormat("%-16s %5d %5d %8.2f %10.1f %10.2f %10s %10.2f %10.2f %10s %10.2f %9s %9s",
                         value, m.completed, m.failed, m.request_throughput, m.output_throughput,
                         m.ttft_ms.mean, p99(m.ttft_ms), m.tpot_ms.mean, m.itl_ms.mean,
                         p99(m.itl_ms), m.e2el_ms.mean, server_itl, kv_peak);
}

std::string WithSuffix(const std::string& path, const std::string& suffix) {
  const std::filesystem::path p(path);
  const std::string stem = p.stem().string();
  const std::string extension = p.extension().string();
  return (p.parent_path() / (stem + "-" + suffix + extension)).string();
}

}  // namespace moeserve::bench
