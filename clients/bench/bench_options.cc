#include "clients/bench/bench_options.h"

#include <cmath>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "clients/bench/openai_http.h"

namespace moeserve::bench {
namespace {

// A double that may be "inf" (absl::SimpleAtod accepts inf/infinity).
absl::StatusOr<double> ParseRate(const std::string& flag, const std::string& text) {
  double value = 0.0;
  if (!absl::SimpleAtod(text, &value) || std::isnan(value)) {
    return absl::InvalidArgumentError(
        absl::StrCat(flag, " must be a number or inf, got '", text, "'"));
  }
  return value;
}

absl::StatusOr<std::vector<double>> ParseList(const std::string& flag, const std::string& text) {
  std::vector<double> values;
  for (const absl::string_view part : absl::StrSplit(text, ',', absl::SkipWhitespace())) {
    absl::StatusOr<double> value = ParseRate(flag, std::string(absl::StripAsciiWhitespace(part)));
    if (!value.ok()) return value.status();
    values.push_back(*value);
  }
  if (values.empty()) return absl::InvalidArgumentError(absl::StrCat(flag, " lists no values"));
  return values;
}

}  // namespace

void AddBenchFlags(CLI::App& app, BenchOptions& o) {
  app.add_option("--backend", o.backend,
                 "grpc: moeserve's Generate stream at --target; openai: POST "
                 "{base-url}/v1/completions; openai-chat: POST {base-url}/v1/chat/completions "
                 "(any OpenAI-compatible server: moeserve's HTTP port, vLLM, llama-server)")
      ->check(CLI::IsMember({"grpc", "openai", "openai-chat"}))
      ->capture_default_str();
  app.add_option("--target", o.target, "grpc: server address HOST:PORT")->capture_default_str();
  app.add_option("--num-channels", o.num_channels,
                 "grpc: channels (TCP connections) to spread requests over")
      ->check(CLI::Range(1, 64))
      ->capture_default_str();
  app.add_option("--base-url", o.base_url,
                 "openai backends: the server's base URL (a trailing /v1 is accepted)")
      ->capture_default_str();
  app.add_option(
      "--model", o.model,
      "openai backends: the model to request [the first id of GET {base-url}/v1/models]");
  app.add_option("--api-key", o.api_key, "Sent as 'Authorization: Bearer KEY' (both backends)")
      ->envname("MOESERVE_API_KEY");
  app.add_option("--ready-timeout", o.ready_timeout_s,
                 "Seconds to wait for the server: grpc health SERVING, or GET /v1/models answering")
      ->capture_default_str();

  auto* data = "Dataset";
  app.add_option("--dataset-name", o.dataset_name, "random | jsonl | sharegpt")
      ->check(CLI::IsMember({"random", "jsonl", "custom", "sharegpt"}))
      ->capture_default_str()
      ->group(data);
  app.add_option("--dataset-path", o.dataset_path,
                 "JSONL prompt file (jsonl) or ShareGPT JSON export (sharegpt)")
      ->group(data);
  app.add_option("--num-prompts", o.num_prompts,
                 "Requests to send (the dataset size with --duration)")
      ->capture_default_str()
      ->group(data);
  app.add_option_function<double>(
         "--duration", [&o](double s) { o.duration_s = s; },
         "Send for this many seconds instead of --num-prompts requests")
      ->group(data);
  app.add_option("--input-len,--random-input-len", o.input_len,
                 "random: prompt tokens after the shared prefix")
      ->capture_default_str()
      ->group(data);
  app.add_option_function<int64_t>(
         "--output-len,--random-output-len",
         [&o](int64_t n) {
           o.output_len = n;
           o.output_len_set = true;
         },
         "Output tokens per request (random: mean; files: override) [128]")
      ->group(data);
  app.add_option("--range-ratio,--random-range-ratio", o.range_ratio,
                 "random: lengths uniform in [len*(1-r), len*(1+r)], r in [0, 1)")
      ->capture_default_str()
      ->group(data);
  app.add_option("--prefix-len,--random-prefix-len", o.prefix_len,
                 "random: tokens of a prefix shared by every prompt")
      ->capture_default_str()
      ->group(data);

  auto* load = "Load";
  app.add_option_function<std::string>(
         "--request-rate",
         [&o](const std::string& s) {
           absl::StatusOr<double> rate = ParseRate("--request-rate", s);
           if (!rate.ok()) throw CLI::ValidationError(std::string(rate.status().message()));
           o.request_rate = *rate;
         },
         "Requests/s of the open-loop arrival process; inf sends all at once [inf]")
      ->group(load);
  app.add_option_function<std::string>(
         "--burstiness",
         [&o](const std::string& s) {
           absl::StatusOr<double> value = ParseRate("--burstiness", s);
           if (!value.ok()) throw CLI::ValidationError(std::string(value.status().message()));
           o.burstiness = *value;
         },
         "Gamma shape of inter-arrival gaps: 1 = Poisson, < 1 burstier, > 1 more regular [1]")
      ->group(load);
  app.add_option_function<int64_t>(
         "--max-concurrency", [&o](int64_t n) { o.max_concurrency = n; },
         "Most requests in flight (closed loop with rate inf)")
      ->group(load);
  app.add_option("--ramp-up-strategy", o.ramp_up_strategy,
                 "Move the rate from --ramp-up-start-rps to --ramp-up-end-rps over the run")
      ->check(CLI::IsMember({"linear", "exponential"}))
      ->group(load);
  app.add_option("--ramp-up-start-rps", o.ramp_up_start_rps, "Rate at the start of a ramp-up")
      ->group(load);
  app.add_option("--ramp-up-end-rps", o.ramp_up_end_rps, "Rate at the end of a ramp-up")
      ->group(load);
  app.add_option("--num-warmups", o.num_warmups, "Unmeasured requests sent before the run")
      ->capture_default_str()
      ->group(load);
  app.add_option("--seed", o.seed, "Seed of prompts and arrival times")
      ->capture_default_str()
      ->group(load);
  app.add_option_function<double>(
         "--request-timeout", [&o](double s) { o.request_timeout_s = s; },
         "Per-request deadline in seconds (gRPC deadline; HTTP transfer timeout)")
      ->group(load);
  app.add_option("--sweep", o.sweep,
                 "Run once per value: request-rate=1,2,4,inf or max-concurrency=1,4,16")
      ->group(load);

  auto* sampling = "Sampling (server defaults when unset)";
  app.add_option_function<double>("--temperature", [&o](double v) { o.sampling.temperature = v; })
      ->group(sampling);
  app.add_option_function<double>("--top-p", [&o](double v) { o.sampling.top_p = v; })
      ->group(sampling);
  app.add_option_function<int>("--top-k", [&o](int v) { o.sampling.top_k = v; })->group(sampling);
  app.add_option_function<double>("--min-p", [&o](double v) { o.sampling.min_p = v; })
      ->group(sampling);
  app.add_option_function<double>("--frequency-penalty",
                                  [&o](double v) { o.sampling.frequency_penalty = v; })
      ->group(sampling);
  app.add_option_function<double>("--presence-penalty",
                                  [&o](double v) { o.sampling.presence_penalty = v; })
      ->group(sampling);
  app.add_option_function<double>("--repetition-penalty",
                                  [&o](double v) { o.sampling.repetition_penalty = v; })
      ->group(sampling);
  app.add_option_function<uint64_t>(
         "--sampling-seed", [&o](uint64_t v) { o.sampling.seed = v; }, "Per-request sampling seed")
      ->group(sampling);
  app.add_flag("--ignore-eos", o.ignore_eos,
               "Generate exactly the output length (always on for random)")
      ->group(sampling);

  auto* report = "Report";
  app.add_option("--percentile-metrics", o.percentile_metrics,
                 "Metrics with statistics: ttft,tpot,itl,e2el")
      ->capture_default_str()
      ->group(report);
  app.add_option("--metric-percentiles", o.metric_percentiles, "Percentiles to report")
      ->capture_default_str()
      ->group(report);
  app.add_option("--goodput", o.goodput, "SLOs for goodput: ttft:MS tpot:MS e2el:MS")
      ->group(report);
  app.add_option("--save-result", o.save_result, "Write the result JSON (vLLM's keys) to FILE")
      ->group(report);
  app.add_option("--save-detailed", o.save_detailed, "Write one JSON line per request to FILE")
      ->group(report);
  app.add_option("--label", o.label, "Label stored in the result")
      ->capture_default_str()
      ->group(report);
  app.add_option("--metadata", o.metadata, "KEY=VALUE pairs stored in the result")->group(report);
  app.add_option("--plot", o.plot, "With --sweep: latency-vs-throughput chart (PNG, needs gnuplot)")
      ->group(report);
  app.add_option(
         "--scrape-metrics", o.scrape_metrics,
         "The server's metrics URL (e.g. http://127.0.0.1:9400/metrics): report its view too")
      ->group(report);
  app.add_option("--scrape-interval", o.scrape_interval_s,
                 "Seconds between gauge polls during a run")
      ->capture_default_str()
      ->group(report);
  app.add_flag("--disable-progress,--disable-tqdm", o.disable_progress,
               "No progress bar even on a terminal")
      ->group(report);
}

absl::StatusOr<SweepSpec> ParseSweep(const std::string& text) {
  const size_t equals = text.find('=');
  if (equals == std::string::npos) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--sweep takes request-rate=V1,V2,.. or max-concurrency=V1,V2,.., got '", text, "'"));
  }
  SweepSpec spec;
  spec.parameter = text.substr(0, equals);
  if (spec.parameter != "request-rate" && spec.parameter != "max-concurrency") {
    return absl::InvalidArgumentError(absl::StrCat(
        "--sweep parameter must be request-rate or max-concurrency, got '", spec.parameter, "'"));
  }
  absl::StatusOr<std::vector<double>> values = ParseList("--sweep", text.substr(equals + 1));
  if (!values.ok()) return values.status();
  for (double v : *values) {
    const bool integral = std::isfinite(v) && v == std::floor(v);
    if (!(v > 0.0) || (spec.parameter == "max-concurrency" && !integral)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--sweep ", spec.parameter, " values must be > 0",
          spec.parameter == "max-concurrency" ? " integers" : " (or inf)", ", got ", v));
    }
  }
  spec.values = *std::move(values);
  return spec;
}

absl::Status FinishBenchOptions(BenchOptions& o) {
  if (o.backend != "grpc") {
    absl::StatusOr<std::string> base_url = NormalizeBaseUrl(o.base_url);
    if (!base_url.ok()) return base_url.status();
    o.base_url = *std::move(base_url);
  }
  if (o.dataset_name == "custom") o.dataset_name = "jsonl";
  if (o.dataset_name != "random" && o.dataset_path.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--dataset-name ", o.dataset_name, " needs --dataset-path"));
  }
  if (o.dataset_name == "random" && !o.dataset_path.empty()) {
    return absl::InvalidArgumentError("--dataset-path is for jsonl and sharegpt datasets");
  }
  if (o.num_prompts <= 0) return absl::InvalidArgumentError("--num-prompts must be > 0");
  if (o.max_concurrency && *o.max_concurrency <= 0) {
    return absl::InvalidArgumentError("--max-concurrency must be > 0");
  }
  if (o.num_warmups < 0) return absl::InvalidArgumentError("--num-warmups must be >= 0");
  if (o.request_timeout_s && !(*o.request_timeout_s > 0.0)) {
    return absl::InvalidArgumentError("--request-timeout must be > 0");
  }
  if (!(o.scrape_interval_s > 0.0))
    return absl::InvalidArgumentError("--scrape-interval must be > 0");

  o.arrival = ArrivalOptions{.request_rate = o.request_rate,
                             .burstiness = o.burstiness,
                             .ramp_up_start_rps = o.ramp_up_start_rps,
                             .ramp_up_end_rps = o.ramp_up_end_rps,
                             // Its own stream: prompt lengths and gaps must not share draws.
                             .seed = o.seed ^ 0x9e3779b97f4a7c15};
  if (o.ramp_up_strategy == "linear") o.arrival.ramp_up = RampUp::kLinear;
  if (o.ramp_up_strategy == "exponential") o.arrival.ramp_up = RampUp::kExponential;
  if (absl::Status s = ValidateArrivalOptions(o.arrival); !s.ok()) return s;

  if (o.duration_s) {
    if (!(*o.duration_s > 0.0)) return absl::InvalidArgumentError("--duration must be > 0");
    if (std::isinf(o.request_rate) && o.arrival.ramp_up == RampUp::kNone && !o.max_concurrency) {
      return absl::InvalidArgumentError(
          "--duration needs a finite --request-rate, a ramp-up or --max-concurrency: at rate inf "
          "without a concurrency limit every request would leave at once");
    }
  }

  absl::StatusOr<GoodputSlo> slo = ParseGoodput(o.goodput);
  if (!slo.ok()) return slo.status();
  o.slo = *slo;

  o.selection.metrics.clear();
  for (const absl::string_view m :
       absl::StrSplit(o.percentile_metrics, ',', absl::SkipWhitespace())) {
    const std::string metric(absl::StripAsciiWhitespace(m));
    if (metric != "ttft" && metric != "tpot" && metric != "itl" && metric != "e2el") {
      return absl::InvalidArgumentError(
          absl::StrCat("--percentile-metrics takes ttft, tpot, itl, e2el; got '", metric, "'"));
    }
    o.selection.metrics.push_back(metric);
  }
  absl::StatusOr<std::vector<double>> percentiles =
      ParseList("--metric-percentiles", o.metric_percentiles);
  if (!percentiles.ok()) return percentiles.status();
  for (double p : *percentiles) {
    if (!(p >= 0.0 && p <= 100.0)) {
      return absl::InvalidArgumentError(
          absl::StrCat("--metric-percentiles must be in [0, 100], got ", p));
    }
  }
  o.selection.percentiles = *std::move(percentiles);

  for (const std::string& pair : o.metadata) {
    const size_t equals = pair.find('=');
    if (equals == std::string::npos || equals == 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("--metadata takes KEY=VALUE, got '", pair, "'"));
    }
    o.metadata_map[pair.substr(0, equals)] = pair.substr(equals + 1);
  }

  if (!o.sweep.empty()) {
    absl::StatusOr<SweepSpec> spec = ParseSweep(o.sweep);
    if (!spec.ok()) return spec.status();
    if (spec->parameter == "request-rate" && o.arrival.ramp_up != RampUp::kNone) {
      return absl::InvalidArgumentError(
          "--sweep request-rate and --ramp-up-strategy exclude each other");
    }
    o.sweep_spec = *std::move(spec);
  } else if (!o.plot.empty()) {
    return absl::InvalidArgumentError("--plot draws a --sweep: add --sweep");
  }
  return absl::OkStatus();
}

}  // namespace moeserve::bench
