// CPU prefill and decode throughput of a DeepSeek checkpoint (default: a freshly generated
// tiny-v3) at several batch sizes, for each CPU kernel set side by side (fast: checkpoint
// precision on the best instruction set; reference: fp32 on the portable kernel), with the
// bytes of linear weights each holds, and for each latent cache element type asked for (auto:
// the kernel set's default). Prints a table and writes JSON with device, date, commit.
//   moeserve-bench-cpu-forward [--model DIR] [--batch-sizes 1,8,32] [--prompt-len 128]
//                              [--decode-steps 32] [--cpu-kernels fast,reference]
//                              [--kv-cache-dtypes auto,fp32,bf16]
//                              [--quantization fp8] [--output FILE]
#include <omp.h>

#include <chrono>
#include <cstdio>
#include <optional>
#include <random>

#include "CLI/CLI.hpp"
#include "bench/bench_model.h"
#include "bench/bench_report.h"
#include "engine/cli/command_line.h"
#include "engine/model/deepseek_model.h"
#include "engine/model/weight_loader.h"
#include "engine/ops/cpu/cpu_features.h"
#include "engine/runner/offline_runner.h"

namespace {

using moeserve::engine::CpuKernels;
using moeserve::engine::DeepseekModel;
using moeserve::engine::ForwardOptions;
using moeserve::engine::OfflineRunner;
using Clock = std::chrono::steady_clock;

// Every (kernel set, cache dtype) combination, kernel sets outermost.
std::vector<std::pair<std::string, std::string>> Pairs(const std::vector<std::string>& kernel_sets,
                                                       const std::vector<std::string>& kv_dtypes) {
  std::vector<std::pair<std::string, std::string>> pairs;
  for (const std::string& k : kernel_sets) {
    for (const std::string& d : kv_dtypes) pairs.emplace_back(k, d);
  }
  return pairs;
}

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

// Bytes of every linear and expert weight as held (scales included).
size_t LinearBytes(const moeserve::engine::ModelWeights& w) {
  size_t bytes = w.lm_head.size_bytes();
  auto mlp = [&](const moeserve::engine::MlpWeights& m) {
    bytes += m.gate_up.size_bytes() + m.down.size_bytes();
  };
  for (const auto& layer : w.layers) {
    const auto& a = layer.attention;
    for (const auto* linear :
         {a.q_proj ? &*a.q_proj : nullptr, a.q_a_proj ? &*a.q_a_proj : nullptr,
          a.q_b_proj ? &*a.q_b_proj : nullptr, &a.kv_a_proj, &a.kv_b_proj, &a.o_proj}) {
      if (linear != nullptr) bytes += linear->size_bytes();
    }
    if (layer.dense_mlp) mlp(*layer.dense_mlp);
    if (layer.moe) {
      for (const auto& expert : layer.moe->experts) mlp(expert);
      if (layer.moe->shared) mlp(*layer.moe->shared);
    }
  }
  return bytes;
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
  std::vector<std::string> kernel_sets = {"fast", "reference"};
  std::string quantization;
  app.add_option("--cpu-kernels", kernel_sets,
                 "kernel sets to compare; NAME-deterministic loads NAME with --deterministic "
                 "(e.g. bf16-deterministic: no oneDNN GEMMs)")
      ->delimiter(',')
      ->check(CLI::IsMember({"fast", "bf16", "reference", "bf16-deterministic"}));
  std::vector<std::string> kv_dtypes = {"auto"};
  app.add_option("--kv-cache-dtypes", kv_dtypes, "latent cache element types to compare")
      ->delimiter(',')
      ->check(CLI::IsMember({"auto", "fp32", "bf16"}));
  app.add_option("--quantization", quantization, "fp8: quantize linears at load")
      ->check(CLI::IsMember({"", "fp8"}));
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
  nlohmann::json report = moeserve::bench::MeasurementContext();
  report["benchmark"] = "cpu_forward";
  report["model"] = model_name;
  report["threads"] = omp_get_max_threads();
  report["prompt_len"] = prompt_len;
  report["decode_steps"] = decode_steps;
  report["cpu"] = moeserve::engine::CpuFeaturesString();
  report["quantization"] = quantization.empty() ? "none" : quantization;
  std::printf("CPU forward, %s, %d threads, prompt %lld tokens, %lld decode steps, CPU %s\n",
              model_name.c_str(), omp_get_max_threads(), static_cast<long long>(prompt_len),
              static_cast<long long>(decode_steps), moeserve::engine::CpuFeaturesString().c_str());
  std::printf("%18s | %4s | %10s | %6s | %18s | %17s | %15s\n", "kernels", "KV", "linear MiB",
              "batch", "prefill tokens/s", "decode tokens/s", "decode step ms");
  for (const auto& [kernels, kv_dtype] : Pairs(kernel_sets, kv_dtypes)) {
    const size_t suffix = kernels.find("-deterministic");
    const moeserve::engine::LoadOptions load{
        .quantize_fp8 = quantization == "fp8",
        .cpu_kernels = *moeserve::engine::ParseCpuKernels(kernels.substr(0, suffix)),
        .kv_cache_dtype = moeserve::engine::ParseKvCacheDtype(kv_dtype),
        .deterministic = suffix != std::string::npos};
    const char* kv_name =
        moeserve::engine::CpuKvCacheDtype(load) == moeserve::engine::DType::kBF16 ? "bf16" : "fp32";
    auto model = DeepseekModel::Load(bench_model->dir, load);
    if (!model.ok()) {
      std::fprintf(stderr, "%s\n", model.status().ToString().c_str());
      return 1;
    }
    const double linear_mib = LinearBytes((*model)->weights()) / 1048576.0;
    for (int64_t batch : batch_sizes) {
      const Row row = Measure(**model, batch, prompt_len, decode_steps);
      std::printf("%18s | %4s | %10.1f | %6lld | %18.1f | %17.1f | %15.2f\n", kernels.c_str(),
                  kv_name, linear_mib, static_cast<long long>(row.batch), row.prefill_tokens_per_s,
                  row.decode_tokens_per_s, row.decode_step_ms);
      report["results"].push_back({{"cpu_kernels", kernels},
                                   {"kv_cache_dtype", kv_name},
                                   {"linear_weight_mib", linear_mib},
                                   {"batch", row.batch},
                                   {"prefill_tokens_per_s", row.prefill_tokens_per_s},
                                   {"decode_tokens_per_s", row.decode_tokens_per_s},
                                   {"decode_step_ms", row.decode_step_ms}});
    }
  }
  return moeserve::bench::WriteReport(output, report) ? 0 : 1;
}
