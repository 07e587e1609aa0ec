// CPU prefill and decode throughput of a DeepSeek checkpoint (default: a freshly generated
// tiny-v3) at several batch sizes. Prints a table and writes JSON with device, date, commit.
//   moeserve-bench-cpu-forward [--model DIR] [--batch-sizes 1,8,32] [--prompt-len 128]
//                              [--decode-steps 32] [--output FILE]
#include <omp.h>

#include <chrono>
#include <cstdio>
#include <random>

#include "CLI/CLI.hpp"
#include "bench/bench_model.h"
#include "bench/bench_report.h"
#include "engine/model/deepseek_model.h"
#include "engine/runner/offline_runner.h"

namespace {

using moeserve::engine::DeepseekModel;
using moeserve::engine::ForwardOptions;
using moeserve::engine::OfflineRunner;
using Clock = std::chrono::steady_clock;

double Seconds(Clock::time_point begin) {
  return std::chrono::duration<double>(Clock::now() - begin).count();
}

struct Row {
  int64_t batch;
  double prefill_tokens_per_s;
  double decode_tokens_per_s;
  double decode_step_ms;
};

Row Measure(const DeepseekModel& model, int64_t batch, int64_t prompt_len, int64_t decode_steps) {
  std::mt19937 rng(42);
  std::uniform_int_distribution<int32_t> token(0,
                                               static_cast<int32_t>(model.config().vocab_size - 1));
  std::vector<std::vector<int32_t>> prompts(static_cast<size_t>(batch));
  for (auto& p : prompts) {
    p.resize(static_cast<size_t>(prompt_len));
    for (auto& id : p) id = token(rng);
  }
  OfflineRunner runner(model, batch, prompt_len + decode_steps);
  ForwardOptions options;  // as served: auto MLA form, activation quantization on

  const auto prefill_begin = Clock::now();
  auto logits = runner.Step(prompts, options);
  const double prefill_s = Seconds(prefill_begin);
  if (!logits.ok()) {
    std::fprintf(stderr, "prefill failed: %s\n", logits.status().ToString().c_str());
    std::exit(1);
  }
  std::vector<std::vector<int32_t>> next(static_cast<size_t>(batch));
  const auto decode_begin = Clock::now();
  for (int64_t step = 0; step < decode_steps; ++step) {
    for (auto& n : next) n = {token(rng)};
    if (!runner.Step(next, options).ok()) std::exit(1);
  }
  const double decode_s = Seconds(decode_begin);
  return Row{batch, batch * prompt_len / prefill_s, batch * decode_steps / decode_s,
             1e3 * decode_s / decode_steps};
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"CPU forward-pass throughput (prefill and decode tokens/s)."};
  std::string model_dir, output = "bench_results/cpu_forward.json";
  std::vector<int64_t> batch_sizes = {1, 8, 32};
  int64_t prompt_len = 128, decode_steps = 32;
  app.add_option("--model", model_dir, "checkpoint dir (default: generate tiny-v3)");
  app.add_option("--batch-sizes", batch_sizes)->delimiter(',');
  app.add_option("--prompt-len", prompt_len);
  app.add_option("--decode-steps", decode_steps);
  app.add_option("--output", output, "JSON report path");
  CLI11_PARSE(app, argc, argv);

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

  nlohmann::json report = moeserve::bench::MeasurementContext();
  report["benchmark"] = "cpu_forward";
  report["model"] = model_name;
  report["threads"] = omp_get_max_threads();
  report["prompt_len"] = prompt_len;
  report["decode_steps"] = decode_steps;
  std::printf("CPU forward, %s, %d threads, prompt %lld tokens, %lld decode steps\n",
              model_name.c_str(), omp_get_max_threads(), static_cast<long long>(prompt_len),
              static_cast<long long>(decode_steps));
  std::printf("%6s | %18s | %17s | %15s\n", "batch", "prefill tokens/s", "decode tokens/s",
              "decode step ms");
  for (int64_t batch : batch_sizes) {
    const Row row = Measure(**model, batch, prompt_len, decode_steps);
    std::printf("%6lld | %18.1f | %17.1f | %15.2f\n", static_cast<long long>(row.batch),
                row.prefill_tokens_per_s, row.decode_tokens_per_s, row.decode_step_ms);
    report["results"].push_back({{"batch", row.batch},
                                 {"prefill_tokens_per_s", row.prefill_tokens_per_s},
                                 {"decode_tokens_per_s", row.decode_tokens_per_s},
                                 {"decode_step_ms", row.decode_step_ms}});
  }
  return moeserve::bench::WriteReport(output, report) ? 0 : 1;
}
