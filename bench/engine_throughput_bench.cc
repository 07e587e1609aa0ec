// Offline throughput of the engine on the CPU backend: N requests with random prompt and
// output lengths submitted at once (continuous batching) versus the same requests one at a
// time, plus the KV cache bytes per token. Prints a table and writes JSON.
//   moeserve-bench-engine [--model DIR] [--num-requests 64] [--output FILE]
#include <omp.h>

#include <chrono>
#include <cstdio>
#include <deque>
#include <optional>
#include <random>

#include "CLI/CLI.hpp"
#include "absl/strings/str_cat.h"
#include "bench/bench_model.h"
#include "bench/bench_report.h"
#include "bench/counting_sink.h"
#include "engine/cli/command_line.h"
#include "engine/engine.h"
#include "engine/kv_cache/kv_cache_spec.h"

namespace {

using namespace moeserve::engine;
using moeserve::bench::CountingSink;

std::vector<GenerateRequest> MakeRequests(int64_t count, int64_t vocab, uint64_t seed) {
  std::mt19937 rng(seed);
  std::vector<GenerateRequest> requests;
  for (int64_t i = 0; i < count; ++i) {
    GenerateRequest r;
    r.request_id = absl::StrCat("bench-", i);
    const int64_t prompt_len = 16 + rng() % 240;
    for (int64_t k = 0; k < prompt_len; ++k) {
      r.prompt_token_ids.push_back(static_cast<int32_t>(3 + rng() % (vocab - 3)));
    }
    r.stop.max_new_tokens = 16 + static_cast<int64_t>(rng() % 112);
    r.stop.ignore_eos = true;
    r.sampling.temperature = 0.0f;
    requests.push_back(std::move(r));
  }
  return requests;
}

struct RunResult {
  double seconds;
  int64_t output_tokens;
};

// Submits `requests` (all at once when batched, else one after another) and times them.
RunResult Run(const DeepseekModel& model, const EngineOptions& options,
              const std::vector<GenerateRequest>& requests, bool batched) {
  auto engine = Engine::Create(model, nullptr, options);
  if (!engine.ok()) {
    std::fprintf(stderr, "%s\n", engine.status().ToString().c_str());
    std::exit(1);
  }
  CountingSink sink;
  std::vector<RequestHandle> handles;
  const auto begin = std::chrono::steady_clock::now();
  int64_t submitted = 0;
  for (const GenerateRequest& r : requests) {
    auto handle = (*engine)->Submit(r, &sink);
    if (!handle.ok()) {
      std::fprintf(stderr, "%s\n", handle.status().ToString().c_str());
      std::exit(1);
    }
    handles.push_back(*std::move(handle));
    ++submitted;
    if (!batched) sink.WaitFor(submitted);
  }
  sink.WaitFor(submitted);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - begin).count();
  return {seconds, sink.tokens()};
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Engine throughput: continuous batching vs one request at a time (CPU)."};
  std::string model_dir, output = "bench_results/engine_throughput.json";
  int64_t num_requests = 64;
  app.add_option("--model", model_dir, "checkpoint dir (default: generate tiny-v3)");
  app.add_option("--num-requests", num_requests);
  app.add_option("--output", output, "JSON report path");
  if (std::optional<int> exit_status = moeserve::engine::ParseCommandLine(app, argc, argv)) {
    return *exit_status;
  }

  auto bench_model = moeserve::bench::ResolveBenchModel(model_dir);
  if (!bench_model.ok()) {
    std::fprintf(stderr, "%s\n", bench_model.status().ToString().c_str());
    return 1;
  }
  const std::string model_name = bench_model->name;
  auto model = DeepseekModel::Load(bench_model->dir);
  if (!model.ok()) {
    std::fprintf(stderr, "%s\n", model.status().ToString().c_str());
    return 1;
  }
  const ModelConfig& config = (*model)->config();
  const auto requests = MakeRequests(num_requests, config.vocab_size, 42);
  EngineOptions options{.num_kv_blocks = 512,
                        .max_num_seqs = 64,
                        .max_num_batched_tokens = 512,
                        .max_model_len = 512};

  const RunResult batched = Run(**model, options, requests, /*batched=*/true);
  const RunResult serial = Run(**model, options, requests, /*batched=*/false);
  const double speedup = serial.seconds / batched.seconds;

  auto engine = Engine::Create(**model, nullptr, options);
  const int64_t kv_bytes_cpu = (*engine)->Stats().kv_bytes_per_token;
  const int64_t kv_bytes_bf16 = KvCacheSpecFor(config, DType::kBF16).BytesPerToken();

  std::printf("engine throughput, %s, %d threads, %lld requests (prompts 16-255, outputs 16-127)\n",
              model_name.c_str(), omp_get_max_threads(), static_cast<long long>(num_requests));
  std::printf("%-22s | %9s | %14s | %16s\n", "mode", "seconds", "output tokens", "output tokens/s");
  std::printf("%-22s | %9.2f | %14lld | %16.1f\n", "continuous batching", batched.seconds,
              static_cast<long long>(batched.output_tokens),
              batched.output_tokens / batched.seconds);
  std::printf("%-22s | %9.2f | %14lld | %16.1f\n", "one at a time", serial.seconds,
              static_cast<long long>(serial.output_tokens), serial.output_tokens / serial.seconds);
  std::printf("batching speed-up: %.2fx\n", speedup);
  std::printf(
      "KV bytes per token: %lld on the CPU backend (fp32), %lld in BF16 "
      "(576 x dtype bytes x %lld layers)\n",
      static_cast<long long>(kv_bytes_cpu), static_cast<long long>(kv_bytes_bf16),
      static_cast<long long>(config.num_hidden_layers));

  nlohmann::json report = moeserve::bench::MeasurementContext();
  report["benchmark"] = "engine_throughput";
  report["model"] = model_name;
  report["threads"] = omp_get_max_threads();
  report["num_requests"] = num_requests;
  report["batched"] = {{"seconds", batched.seconds}, {"output_tokens", batched.output_tokens}};
  report["one_at_a_time"] = {{"seconds", serial.seconds}, {"output_tokens", serial.output_tokens}};
  report["speedup"] = speedup;
  report["kv_bytes_per_token_cpu_fp32"] = kv_bytes_cpu;
  report["kv_bytes_per_token_bf16"] = kv_bytes_bf16;
  return moeserve::bench::WriteReport(output, report) ? 0 : 1;
}
