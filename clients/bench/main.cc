// moeserve-bench: the load-test client of moeserve, with `vllm bench serve`'s definitions
// (docs/benchmarking.md). Connects (gRPC, or with --backend openai|openai-chat any
// OpenAI-compatible HTTP server), waits until the server answers, builds the dataset, warms
// up, runs one load point or a --sweep, and reports client-side (and with --scrape-metrics
// server-side) latency percentiles, throughput and goodput.
#include <csignal>
#include <cstdio>
#include <ctime>
#include <optional>
#include <random>
#include <thread>

#include "CLI/CLI.hpp"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "bench/bench_report.h"
#include "clients/bench/arrival_process.h"
#include "clients/bench/bench_connection.h"
#include "clients/bench/bench_metrics.h"
#include "clients/bench/bench_options.h"
#include "clients/bench/dataset.h"
#include "clients/bench/grpc_backend.h"
#include "clients/bench/openai_backend.h"
#include "clients/bench/openai_http.h"
#include "clients/bench/progress_bar.h"
#include "clients/bench/report.h"
#include "clients/bench/runner.h"
#include "clients/bench/server_metrics.h"
#include "clients/bench/sweep_plot.h"
#include "engine/cli/command_line.h"

namespace moeserve::bench {
namespace {

// Set by SIGINT; a watcher thread turns it into LoadRunner::Interrupt (not async-signal-safe).
volatile std::sig_atomic_t g_interrupted = 0;
void OnSigint(int) { g_interrupted = 1; }

// A --duration closed-loop run sends until the clock says stop; this only bounds the count.
constexpr int64_t kUnboundedRequests = int64_t{1} << 40;
// A timed --duration schedule is computed up front: at most this many sends (80 MB of times).
constexpr int64_t kMaxScheduledRequests = 10'000'000;

std::string LocalDate() {
  const std::time_t now = std::time(nullptr);
  std::tm local{};
  localtime_r(&now, &local);
  char text[32];
  std::strftime(text, sizeof text, "%Y%m%d-%H%M%S", &local);
  return text;
}

std::string RandomHex() {
  std::random_device device;
  return absl::StrFormat("%08x", device());
}

std::string RateText(double rate) { return std::isinf(rate) ? "inf" : absl::StrCat(rate); }

RandomDatasetOptions RandomOptions(const BenchOptions& o) {
  return RandomDatasetOptions{.num_prompts = o.num_prompts,
                              .input_len = o.input_len,
                              .output_len = o.output_len,
                              .range_ratio = o.range_ratio,
                              .prefix_len = o.prefix_len,
                              .seed = o.seed};
}

absl::StatusOr<std::vector<BenchPrompt>> LoadFileDataset(const BenchOptions& o,
                                                         int64_t max_model_len,
                                                         const TokenizeFn& tokenize) {
  FileDatasetOptions file{.path = o.dataset_path,
                          .num_prompts = o.num_prompts,
                          .max_model_len = max_model_len,
                          .seed = o.seed};
  if (o.output_len_set) file.output_len = o.output_len;
  if (o.dataset_name == "jsonl") return LoadJsonlDataset(file, tokenize);
  return LoadShareGptDataset(file, tokenize);
}

absl::StatusOr<std::vector<BenchPrompt>> LoadGrpcDataset(const BenchOptions& o,
                                                         const v1::GetModelInfoResponse& info,
                                                         BenchConnection& connection) {
  if (o.dataset_name == "random") {
    VocabInfo vocab{.vocab_size = info.vocab_size()};
    vocab.excluded_ids.assign(info.eos_token_ids().begin(), info.eos_token_ids().end());
    if (info.has_bos_token_id()) vocab.excluded_ids.push_back(info.bos_token_id());
    return MakeRandomDataset(RandomOptions(o), vocab);
  }
  const TokenizeFn tokenize = [&connection](const std::string& text, bool add_special_tokens) {
    return connection.Tokenize(text, add_special_tokens);
  };
  return LoadFileDataset(o, info.max_context_length(), tokenize);
}

// Random prompts need exact lengths, as vLLM forces ignore_eos for its random dataset.
bool IgnoreEos(const BenchOptions& o) { return o.ignore_eos || o.dataset_name == "random"; }

RequestTemplate MakeTemplate(const BenchOptions& o) {
  RequestTemplate t;
  const SamplingFlags& f = o.sampling;
  v1::SamplingParams& s = t.sampling;
  if (f.temperature) s.set_temperature(static_cast<float>(*f.temperature));
  if (f.top_p) s.set_top_p(static_cast<float>(*f.top_p));
  if (f.top_k) s.set_top_k(*f.top_k);
  if (f.min_p) s.set_min_p(static_cast<float>(*f.min_p));
  if (f.frequency_penalty) s.set_frequency_penalty(static_cast<float>(*f.frequency_penalty));
  if (f.presence_penalty) s.set_presence_penalty(static_cast<float>(*f.presence_penalty));
  if (f.repetition_penalty) s.set_repetition_penalty(static_cast<float>(*f.repetition_penalty));
  if (f.seed) s.set_seed(*f.seed);
  t.ignore_eos = IgnoreEos(o);
  t.timeout_s = o.request_timeout_s;
  t.api_key = o.api_key;
  return t;
}

// The server a run talks to, whichever backend reaches it, and the prompts made for it.
struct Target {
  std::string backend_name;  // the result's "backend": moeserve-grpc | openai | openai-chat
  std::string address;       // --target or --base-url
  std::string model_name;
  std::vector<BenchPrompt> prompts;
  std::unique_ptr<BenchConnection> connection;  // grpc: outlives the backend's stubs
  std::unique_ptr<BenchBackend> backend;
};

absl::StatusOr<Target> ConnectGrpc(const BenchOptions& o) {
  Target target{.backend_name = "moeserve-grpc", .address = o.target};
  target.connection = std::make_unique<BenchConnection>(o.target, o.num_channels, o.api_key);
  if (absl::Status s = target.connection->WaitUntilServing(o.ready_timeout_s); !s.ok()) return s;
  absl::StatusOr<v1::GetModelInfoResponse> model = target.connection->GetModelInfo();
  if (!model.ok()) return model.status();
  std::printf("Target %s: model %s (%s, vocab %u, context %u, %s on %s)\n", o.target.c_str(),
              model->served_model_name().c_str(), model->architecture().c_str(),
              model->vocab_size(), model->max_context_length(), model->dtype().c_str(),
              model->device().c_str());
  target.model_name = model->served_model_name();
  absl::StatusOr<std::vector<BenchPrompt>> prompts = LoadGrpcDataset(o, *model, *target.connection);
  if (!prompts.ok()) return prompts.status();
  target.prompts = *std::move(prompts);
  target.backend = std::make_unique<GrpcBackend>(target.connection->stubs(), MakeTemplate(o));
  return target;
}

absl::StatusOr<Target> ConnectOpenAi(const BenchOptions& o) {
  const bool chat = o.backend == "openai-chat";
  Target target{.backend_name = o.backend, .address = o.base_url};
  absl::StatusOr<OpenAiModelInfo> model =
      WaitForOpenAiModel(o.base_url, o.api_key, o.model, o.ready_timeout_s);
  if (!model.ok()) return model.status();
  const OpenAiEndpoint endpoint =
      chat ? OpenAiEndpoint::kChatCompletions : OpenAiEndpoint::kCompletions;
  std::printf("Target %s: model %s (POST %s%s)\n", o.base_url.c_str(), model->id.c_str(),
              o.base_url.c_str(), OpenAiPath(endpoint));
  target.model_name = model->id;
  absl::StatusOr<std::vector<BenchPrompt>> prompts;
  if (o.dataset_name == "random") {
    // The client knows no vocabulary of an arbitrary server: random words, counted by the
    // server's usage.
    prompts = MakeRandomTextDataset(RandomOptions(o));
  } else {
    OpenAiTokenizer tokenizer(o.base_url, o.api_key, model->id);
    prompts = LoadFileDataset(o, model->max_model_len,
                              [&tokenizer](const std::string& text, bool add_special_tokens) {
                                return tokenizer.Tokenize(text, add_special_tokens);
                              });
  }
  if (!prompts.ok()) return prompts.status();
  target.prompts = *std::move(prompts);
  if (chat) {
    for (const BenchPrompt& prompt : target.prompts) {
      if (!prompt.token_ids.empty()) {
        return absl::InvalidArgumentError(
            "--backend openai-chat sends text: the dataset has token-id prompts (use --backend "
            "openai)");
      }
    }
  }
  target.backend = std::make_unique<OpenAiBackend>(
      OpenAiBackendOptions{.base_url = o.base_url,
                           .api_key = o.api_key,
                           .request = OpenAiRequestOptions{.endpoint = endpoint,
                                                           .model = model->id,
                                                           .sampling = o.sampling,
                                                           .ignore_eos = IgnoreEos(o)},
                           .timeout_s = o.request_timeout_s});
  return target;
}

RunPlan MakePlan(const BenchOptions& o, const ArrivalOptions& arrival,
                 std::optional<int64_t> max_concurrency) {
  RunPlan plan;
  plan.max_concurrency = max_concurrency.value_or(0);
  const bool timed = !std::isinf(arrival.request_rate) || arrival.ramp_up != RampUp::kNone;
  if (o.duration_s) {
    plan.duration_s = o.duration_s;
    if (timed) {
      plan.send_offsets = ArrivalOffsetsWithin(arrival, *o.duration_s, kMaxScheduledRequests);
      plan.num_requests = static_cast<int64_t>(plan.send_offsets.size());
    } else {
      plan.num_requests = kUnboundedRequests;  // closed loop until the clock runs out
    }
  } else {
    plan.num_requests = o.num_prompts;
    if (timed) plan.send_offsets = ArrivalOffsets(arrival, o.num_prompts);
  }
  return plan;
}

void PrintTraffic(const ArrivalOptions& arrival, std::optional<int64_t> max_concurrency) {
  if (arrival.ramp_up != RampUp::kNone) {
    std::printf("Traffic ramp-up strategy: %s, from %g to %g RPS\n", RampUpName(arrival.ramp_up),
                arrival.ramp_up_start_rps, arrival.ramp_up_end_rps);
  } else {
    std::printf("Traffic request rate: %s\n", RateText(arrival.request_rate).c_str());
  }
  std::printf("Burstiness factor: %g (%s)\n", arrival.burstiness,
              arrival.burstiness == 1.0 ? "Poisson process" : "Gamma distribution");
  std::printf("Maximum request concurrency: %s\n",
              max_concurrency ? absl::StrCat(*max_concurrency).c_str() : "None");
  std::fflush(stdout);
}

struct PointResult {
  BenchmarkMetrics metrics;
  std::optional<ServerMetricsReport> server;
  bool interrupted = false;
};

PointResult RunPoint(const BenchOptions& o, const ArrivalOptions& arrival,
                     std::optional<int64_t> max_concurrency, LoadRunner& runner,
                     const RunInfo& info, const std::string& file_suffix, bool print_summary) {
  std::optional<MetricsText> before;
  std::optional<MetricsWatcher> watcher;
  if (!o.scrape_metrics.empty()) {
    absl::StatusOr<MetricsText> page = ScrapeMetrics(o.scrape_metrics);
    if (page.ok()) {
      before = *std::move(page);
      watcher.emplace(o.scrape_metrics, o.scrape_interval_s);
      watcher->Start();
    } else {
      std::fprintf(stderr, "moeserve-bench: cannot read %s (%s): no server-side numbers\n",
                   o.scrape_metrics.c_str(), std::string(page.status().message()).c_str());
    }
  }

  const bool draw = !o.disable_progress && ProgressBar::IsTerminal(stderr);
  ProgressBar progress(draw ? stderr : nullptr, "");
  RunResult run = runner.Run(MakePlan(o, arrival, max_concurrency), &progress);

  PointResult point;
  point.interrupted = run.interrupted;
  if (before) {
    const std::vector<GaugePoll> polls = watcher->Stop();
    absl::StatusOr<MetricsText> after = ScrapeMetrics(o.scrape_metrics);
    if (after.ok()) {
      point.server = CompareMetrics(*before, *after, polls);
    } else {
      std::fprintf(stderr, "moeserve-bench: cannot read %s after the run (%s)\n",
                   o.scrape_metrics.c_str(), std::string(after.status().message()).c_str());
    }
  }
  point.metrics = ComputeMetrics(run.records, run.duration_s, o.selection.percentiles, o.slo);
  if (run.interrupted) std::printf("Interrupted: the numbers below cover the partial run.\n");
  if (print_summary) PrintSummary(stdout, info, point.metrics, o.selection, point.server);

  const auto suffixed = [&](const std::string& path) {
    return file_suffix.empty() ? path : WithSuffix(path, file_suffix);
  };
  if (!o.save_result.empty()) {
    const std::vector<RequestRecord>* detail = o.save_detailed.empty() ? nullptr : &run.records;
    nlohmann::ordered_json json =
        ResultJson(info, point.metrics, o.selection, point.server, detail);
    json["interrupted"] = run.interrupted;
    if (absl::Status s = WriteJson(suffixed(o.save_result), json, detail != nullptr); !s.ok()) {
      std::fprintf(stderr, "moeserve-bench: %s\n", std::string(s.message()).c_str());
    }
  }
  if (!o.save_detailed.empty()) {
    if (absl::Status s = WriteDetailedJsonl(suffixed(o.save_detailed), run.records); !s.ok()) {
      std::fprintf(stderr, "moeserve-bench: %s\n", std::string(s.message()).c_str());
    }
  }
  int printed = 0;  // the first few failures, as vLLM prints them
  for (const RequestRecord& r : run.records) {
    if (!r.success && printed++ < 10) {
      std::fprintf(stderr, "request %s failed: %s %s\n", r.request_id.c_str(),
                   r.status_code.c_str(), r.error.c_str());
    }
  }
  return point;
}

int RunBench(const BenchOptions& o) {
  absl::StatusOr<Target> target = o.backend == "grpc" ? ConnectGrpc(o) : ConnectOpenAi(o);
  if (!target.ok()) {
    std::fprintf(stderr, "moeserve-bench: %s\n", std::string(target.status().message()).c_str());
    return 1;
  }
  const std::vector<BenchPrompt>& prompts = target->prompts;
  const std::string run_id = RandomHex();
  LoadRunner runner(*target->backend, prompts, absl::StrCat("bench-", run_id, "-"));

  std::signal(SIGINT, OnSigint);
  std::atomic<bool> done{false};
  std::thread interrupt_watcher([&] {
    while (!done) {
      if (g_interrupted) {
        std::fprintf(stderr, "\nmoeserve-bench: interrupted, cancelling requests in flight\n");
        runner.Interrupt();
        std::signal(SIGINT, SIG_DFL);  // a second Ctrl-C ends the process
        return;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  });
  const auto finish = [&](int code) {
    done = true;
    interrupt_watcher.join();
    return code;
  };

  if (o.num_warmups > 0) {
    std::printf("Warming up with %lld requests...\n", static_cast<long long>(o.num_warmups));
    std::fflush(stdout);
    const std::vector<BenchPrompt> first = {prompts.front()};
    LoadRunner warmup(*target->backend, first, absl::StrCat("warmup-", run_id, "-"));
    RunResult warm = warmup.Run(
        RunPlan{.num_requests = o.num_warmups, .max_concurrency = o.max_concurrency.value_or(0)},
        nullptr);
    const auto failed = std::count_if(warm.records.begin(), warm.records.end(),
                                      [](const RequestRecord& r) { return !r.success; });
    std::printf("Warmup run completed (%lld failed).\n", static_cast<long long>(failed));
  }

  RunInfo info{.date = LocalDate(),
               .label = o.label,
               .backend = target->backend_name,
               .model_id = target->model_name,
               .target = target->address,
               .dataset = o.dataset_name,
               .num_prompts = o.num_prompts,
               .request_rate = o.request_rate,
               .burstiness = o.burstiness,
               .max_concurrency = o.max_concurrency,
               .ramp_up_strategy = o.ramp_up_strategy,
               .ramp_up_start_rps = o.ramp_up_start_rps,
               .ramp_up_end_rps = o.ramp_up_end_rps,
               .duration_limit_s = o.duration_s,
               .metadata = o.metadata_map,
               .context = MeasurementContext()};

  int64_t total_completed = 0;
  if (!o.sweep_spec) {
    std::printf("Starting main benchmark run...\n");
    PrintTraffic(o.arrival, o.max_concurrency);
    const PointResult point = RunPoint(o, o.arrival, o.max_concurrency, runner, info, "", true);
    total_completed = point.metrics.completed;
  } else {
    const SweepSpec& sweep = *o.sweep_spec;
    std::vector<SweepPoint> plot_points;
    std::printf("Sweep over %s (%zu points, %lld prompts each)\n", sweep.parameter.c_str(),
                sweep.values.size(), static_cast<long long>(o.num_prompts));
    std::printf("%s\n", SweepHeader(sweep.parameter).c_str());
    std::fflush(stdout);
    for (double value : sweep.values) {
      ArrivalOptions arrival = o.arrival;
      std::optional<int64_t> max_concurrency = o.max_concurrency;
      RunInfo point_info = info;
      std::string label;
      if (sweep.parameter == "request-rate") {
        arrival.request_rate = value;
        point_info.request_rate = value;
        label = RateText(value);
      } else {
        max_concurrency = static_cast<int64_t>(value);
        point_info.max_concurrency = max_concurrency;
        label = absl::StrCat(*max_concurrency);
      }
      point_info.date = LocalDate();
      const std::string suffix = sweep.parameter == "request-rate"
                                     ? absl::StrCat("rate", label)
                                     : absl::StrCat("concurrency", label);
      const PointResult point =
          RunPoint(o, arrival, max_concurrency, runner, point_info, suffix, false);
      std::printf("%s\n", SweepRow(label, point.metrics, point.server).c_str());
      std::fflush(stdout);
      total_completed += point.metrics.completed;
      const auto p99 = [](const MetricSummary& s) {
        for (const auto& [p, v] : s.percentiles) {
          if (p == 99.0) return v;
        }
        return s.mean;
      };
      plot_points.push_back(SweepPoint{.label = label,
                                       .output_throughput = point.metrics.output_throughput,
                                       .mean_ttft_ms = point.metrics.ttft_ms.mean,
                                       .p99_ttft_ms = p99(point.metrics.ttft_ms),
                                       .mean_tpot_ms = point.metrics.tpot_ms.mean,
                                       .mean_itl_ms = point.metrics.itl_ms.mean,
                                       .mean_e2el_ms = point.metrics.e2el_ms.mean});
      if (point.interrupted) break;
    }
    if (!o.plot.empty()) {
      const std::string title =
          absl::StrCat(target->model_name, ": latency vs throughput (", sweep.parameter, " sweep)");
      if (absl::Status s = PlotSweep(plot_points, o.plot, title); s.ok()) {
        std::printf("Plot written to %s\n", o.plot.c_str());
      } else {
        std::printf("Skipping --plot: %s\n", std::string(s.message()).c_str());
      }
    }
  }
  // Every request failing is a broken setup, not a measurement: say so in the exit status.
  return finish(total_completed > 0 ? 0 : 1);
}

}  // namespace
}  // namespace moeserve::bench

int main(int argc, char** argv) {
  CLI::App app{
      "moeserve-bench: load test of a moeserve server (gRPC) or any OpenAI-compatible server "
      "with vllm bench serve's metrics (TTFT, TPOT, ITL, E2EL, throughput, goodput)"};
  moeserve::bench::BenchOptions options;
  moeserve::bench::AddBenchFlags(app, options);
  if (std::optional<int> exit_status = moeserve::engine::ParseCommandLine(app, argc, argv)) {
    return *exit_status;
  }
  if (absl::Status s = moeserve::bench::FinishBenchOptions(options); !s.ok()) {
    std::fprintf(stderr, "moeserve-bench: %s\n", std::string(s.message()).c_str());
    return 2;
  }
  return moeserve::bench::RunBench(options);
}
