// The cost of one prefill chunk of n new tokens after a cached context of c tokens, in MLA's
// naive form (expand all c + n cached latents through kv_b_proj, then MHA) and its absorbed
// form (attend in the 576-wide latent space), on the CPU, for a grid of (c, n). The crossover
// calibrates the CPU's automatic choice (engine/model/mla_form_choice.h). Prints a table and
// writes JSON with device, date, commit.
//   moeserve-bench-mla-forms [--model DIR] [--contexts 0,512,2048] [--new-tokens 1,4,16,64,256]
//                            [--repeats 3] [--output FILE]
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <optional>
#include <random>

#include "CLI/CLI.hpp"
#include "bench/bench_model.h"
#include "bench/bench_report.h"
#include "engine/cli/command_line.h"
#include "engine/model/deepseek_model.h"
#include "engine/model/mla_form_choice.h"
#include "engine/ops/cpu/cpu_features.h"
#include "engine/runner/offline_runner.h"

namespace {

using moeserve::engine::DeepseekModel;
using moeserve::engine::ForwardOptions;
using moeserve::engine::MlaForm;
using moeserve::engine::OfflineRunner;
using Clock = std::chrono::steady_clock;

// Milliseconds of the chunk step alone (the context is prefilled first, untimed), best of
// `repeats` fresh runs.
double ChunkMs(const DeepseekModel& model, const std::vector<int32_t>& tokens, int64_t context,
               int64_t chunk, MlaForm form, int repeats) {
  double best = 1e30;
  for (int r = 0; r < repeats; ++r) {
    OfflineRunner runner(model, 1, context + chunk);
    if (context > 0) {
      auto prefix = runner.Step({{tokens.begin(), tokens.begin() + context}}, ForwardOptions{});
      if (!prefix.ok()) return -1.0;
    }
    const ForwardOptions options{.mla_form = form};
    const auto begin = Clock::now();
    auto step =
        runner.Step({{tokens.begin() + context, tokens.begin() + context + chunk}}, options);
    const double ms = std::chrono::duration<double, std::milli>(Clock::now() - begin).count();
    if (!step.ok()) return -1.0;
    best = std::min(best, ms);
  }
  return best;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"MLA naive vs absorbed form: one prefill chunk after a cached context."};
  std::string model_dir, output = "bench_results/mla_forms.json";
  std::vector<int64_t> contexts = {0, 512, 2048}, chunks = {1, 4, 16, 64, 256};
  int repeats = 3;
  app.add_option("--model", model_dir, "checkpoint dir (default: generate tiny-v3)");
  app.add_option("--contexts", contexts, "cached tokens before the chunk")->delimiter(',');
  app.add_option("--new-tokens", chunks, "tokens in the chunk")->delimiter(',');
  app.add_option("--repeats", repeats, "runs per cell; the best is kept");
  app.add_option("--output", output, "JSON report path");
  if (std::optional<int> exit_status = moeserve::engine::ParseCommandLine(app, argc, argv)) {
    return *exit_status;
  }

  auto bench_model = moeserve::bench::ResolveBenchModel(model_dir);
  if (!bench_model.ok()) {
    std::fprintf(stderr, "%s\n", bench_model.status().ToString().c_str());
    return 1;
  }
  auto model = DeepseekModel::Load(bench_model->dir);
  if (!model.ok()) {
    std::fprintf(stderr, "%s\n", model.status().ToString().c_str());
    return 1;
  }
  const moeserve::engine::ModelConfig& config = (*model)->config();
  const int64_t longest = *std::max_element(contexts.begin(), contexts.end()) +
                          *std::max_element(chunks.begin(), chunks.end());
  std::mt19937 rng(7);
  std::uniform_int_distribution<int32_t> token(0, static_cast<int32_t>(config.vocab_size - 1));
  std::vector<int32_t> tokens(static_cast<size_t>(longest));
  for (int32_t& t : tokens) t = token(rng);

  nlohmann::json report = moeserve::bench::MeasurementContext();
  report["benchmark"] = "mla_forms";
  report["model"] = bench_model->name;
  report["threads"] = omp_get_max_threads();
  report["cpu"] = moeserve::engine::CpuFeaturesString();
  std::printf("MLA forms, %s, %d threads, CPU %s\n", bench_model->name.c_str(),
              omp_get_max_threads(), moeserve::engine::CpuFeaturesString().c_str());
  std::printf("%8s | %6s | %10s | %12s | %7s | %s\n", "context", "new", "naive ms", "absorbed ms",
              "faster", "auto picks");
  for (int64_t context : contexts) {
    for (int64_t chunk : chunks) {
      const double naive = ChunkMs(**model, tokens, context, chunk, MlaForm::kNaive, repeats);
      const double absorbed = ChunkMs(**model, tokens, context, chunk, MlaForm::kAbsorbed, repeats);
      const bool picks_absorbed = moeserve::engine::CpuPrefersAbsorbedMla(
          config, config.num_attention_heads, chunk, context + chunk);
      std::printf("%8lld | %6lld | %10.2f | %12.2f | %7s | %s\n", static_cast<long long>(context),
                  static_cast<long long>(chunk), naive, absorbed,
                  absorbed < naive ? "absorbed" : "naive", picks_absorbed ? "absorbed" : "naive");
      report["results"].push_back({{"context", context},
                                   {"new_tokens", chunk},
                                   {"naive_ms", naive},
                                   {"absorbed_ms", absorbed},
                                   {"auto_picks", picks_absorbed ? "absorbed" : "naive"}});
    }
  }
  return moeserve::bench::WriteReport(output, report) ? 0 : 1;
}
