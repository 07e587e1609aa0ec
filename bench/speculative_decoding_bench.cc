// Speculative decoding with the MTP module (issue 23):
//  1. Engine decode throughput on a trained model with an MTP module (default: the bundled
//     models/kjv-v3-tiny): B greedy requests at once (B = 1, 8, 32), k = 0 (off), 1, 2, 3
//     draft tokens; output tokens per second, acceptance rate, mean acceptance length. On the
//     CPU backend, or with --device cuda on the GPU one (bench/gpu/run_all.sh runs that).
//  2. CPU only: the price of a step on a larger model (default: a V2-Lite-shaped checkpoint,
//     3 layers plus an MTP module, generated into the temp directory): one decode forward, one
//     k+1-token verification forward, one MTP draft step, and a k = 1 step's MTP pass (two
//     positions, the first writing only its latents), batch 1 at a given context, interleaved;
//     and the speed-up that implies at the acceptance measured in (1): (1 + E[accepted]) /
//     ((verify + MTP pass + (k - 1) draft steps) / decode), the pass taken at two positions.
// Prints tables and writes JSON with machine and date.
//   moeserve-bench-speculative [--model DIR] [--cost-model DIR] [--device cpu|cuda]
//                              [--cpu-kernels fast|bf16] [--enforce-eager]
//                              [--disable-by-batch-size N] [--output FILE]

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "bench/bench_report.h"
#include "bench/counting_sink.h"
#include "engine/cli/command_line.h"
#include "engine/engine.h"
#include "engine/ops/cpu/cpu_threads.h"
#include "engine/runner/cuda_runner.h"
#include "engine/runner/device.h"
#include "tools/make_model/checkpoint_maker.h"
#include "tools/make_model/model_presets.h"

namespace {

using namespace moeserve::engine;
using moeserve::bench::CountingSink;
using Clock = std::chrono::steady_clock;

// Openings of verses, as a user of the bundled model would prompt it.
const std::vector<std::string>& PromptTexts() {
  static const std::vector<std::string> texts = {"In the beginning God created",
                                                 "And it came to pass, when the judges ruled,",
                                                 "The LORD is my shepherd;",
                                                 "And Naomi said unto her two daughters in law,",
                                                 "Then answered Jesus and said unto them,",
                                                 "And the children of Israel",
                                                 "Let not your heart be troubled:",
                                                 "And David said to Saul,",
                                                 "Now the serpent was more subtil",
                                                 "Blessed are the poor in spirit:",
                                                 "And God said, Let there be",
                                                 "Hear, O Israel:",
                                                 "And Moses went up unto God,",
                                                 "Whither thou goest, I will go;",
                                                 "For unto us a child is born,",
                                                 "And the word of the LORD came unto"};
  return texts;
}

struct ThroughputRow {
  int64_t batch = 0;
  int64_t k = 0;
  double seconds = 0.0;
  int64_t output_tokens = 0;
  SpeculativeStats speculation;
  // --device cuda: the run's forward passes that replayed a CUDA graph, and those run eagerly.
  int64_t graphed_forwards = 0;
  int64_t eager_forwards = 0;
  double tokens_per_second() const { return static_cast<double>(output_tokens) / seconds; }
  double acceptance() const {
    return speculation.num_draft_tokens > 0 ? static_cast<double>(speculation.num_accepted_tokens) /
                                                  static_cast<double>(speculation.num_draft_tokens)
                                            : 0.0;
  }
  double mean_acceptance_length() const {
    return speculation.num_drafts > 0 ? 1.0 + static_cast<double>(speculation.num_accepted_tokens) /
                                                  static_cast<double>(speculation.num_drafts)
                                      : 1.0;
  }
};

// The shape of every throughput engine (and of the CUDA runner's plan).
constexpr int64_t kMaxNumSeqs = 64;
constexpr int64_t kMaxBatchedTokens = 1024;
constexpr int64_t kMaxModelLen = 1024;
constexpr int64_t kKvBlocks = 256;

// What the throughput engines run on: the CPU model (each engine makes its own step model and
// KV pages), or one CUDA runner, loaded once, whose step model and KV pool every row's engine
// uses in turn.
struct Backend {
  const DeepseekModel* cpu = nullptr;
  StepModel* cuda = nullptr;
  int64_t cuda_kv_blocks = 0;
  std::string name = "cpu";
};

// pause_above: EngineOptions::speculative_disable_by_batch_size of the k > 0 rows.
ThroughputRow RunThroughput(const Backend& backend, const Tokenizer& tokenizer, int64_t batch,
                            int64_t k, int64_t output_len, int threads, int64_t pause_above) {
  EngineOptions options{.num_kv_blocks = kKvBlocks,
                        .max_num_seqs = kMaxNumSeqs,
                        .max_num_batched_tokens = kMaxBatchedTokens,
                        .max_model_len = kMaxModelLen,
                        .cpu_threads = threads};
  options.speculative_tokens = k;
  options.speculative_disable_by_batch_size = k > 0 ? pause_above : 0;
  absl::StatusOr<std::unique_ptr<Engine>> engine;
  if (backend.cuda != nullptr) {
    options.num_kv_blocks = backend.cuda_kv_blocks;
    engine = Engine::Create(*backend.cuda, &tokenizer, options);
  } else {
    engine = Engine::Create(*backend.cpu, &tokenizer, options);
  }
  if (!engine.ok()) {
    std::fprintf(stderr, "%s\n", engine.status().ToString().c_str());
    std::exit(1);
  }
  std::vector<GenerateRequest> requests;
  for (int64_t i = 0; i < batch; ++i) {
    GenerateRequest r;
    r.request_id = absl::StrCat("spec-", i);
    r.prompt_token_ids =
        *tokenizer.Encode(PromptTexts()[static_cast<size_t>(i) % PromptTexts().size()]);
    r.sampling.temperature = 0.0f;
    r.stop.max_new_tokens = output_len;
    r.stop.ignore_eos = true;
    requests.push_back(std::move(r));
  }
  CountingSink sink;
  std::vector<RequestHandle> handles;
  const CudaExecutionCounts before =
      backend.cuda != nullptr ? CudaExecutionCountsOf(*backend.cuda) : CudaExecutionCounts{};
  const Clock::time_point begin = Clock::now();
  for (const GenerateRequest& r : requests) handles.push_back(*(*engine)->Submit(r, &sink));
  sink.WaitFor(batch);
  ThroughputRow row{.batch = batch, .k = k};
  row.seconds = std::chrono::duration<double>(Clock::now() - begin).count();
  row.output_tokens = sink.tokens();
  (*engine)->Shutdown(ShutdownMode::kDrain);
  row.speculation = (*engine)->Stats().speculation;
  if (backend.cuda != nullptr) {
    const CudaExecutionCounts after = CudaExecutionCountsOf(*backend.cuda);
    row.graphed_forwards = after.graphed_forwards - before.graphed_forwards;
    row.eager_forwards = after.eager_forwards - before.eager_forwards;
  }
  // A step that failed ends its requests with an error: that is not a measurement.
  if (sink.errors() > 0 || row.output_tokens != batch * output_len) {
    std::fprintf(stderr,
                 "batch %lld, k %lld: %lld of %lld requests failed (%s), %lld of %lld tokens\n",
                 static_cast<long long>(batch), static_cast<long long>(k),
                 static_cast<long long>(sink.errors()), static_cast<long long>(batch),
                 sink.first_error().c_str(), static_cast<long long>(row.output_tokens),
                 static_cast<long long>(batch * output_len));
    std::exit(1);
  }
  return row;
}

// A forward to time, and the one that precedes it in the loop it belongs to (run untimed just
// before it), so the caches hold what they would: a decode follows a decode when k = 0, a
// verification follows the MTP pass of the step before.
struct TimedStep {
  std::function<void()> before;
  std::function<void()> step;
};

// Median wall time of each step over `reps` rounds after one warm-up round. Each round runs
// every step once, in turn, so all of them see the same state of this (noisy, shared) VM: run
// one after the other, two steps measured seconds apart differed by up to 1.6x here.
std::vector<double> InterleavedMedianMs(int reps, const std::vector<TimedStep>& steps) {
  std::vector<std::vector<double>> times(steps.size());
  for (int r = -1; r < reps; ++r) {
    for (size_t i = 0; i < steps.size(); ++i) {
      steps[i].before();
      const Clock::time_point t0 = Clock::now();
      steps[i].step();
      const double ms = 1e3 * std::chrono::duration<double>(Clock::now() - t0).count();
      if (r >= 0) times[i].push_back(ms);
    }
  }
  std::vector<double> medians;
  for (std::vector<double>& t : times) {
    std::sort(t.begin(), t.end());
    medians.push_back(t[t.size() / 2]);
  }
  return medians;
}

struct StepCosts {
  double decode_ms = 0.0;
  std::vector<double> verify_ms;  // [k - 1]: k + 1 tokens
  double draft_ms = 0.0;          // one MTP step, one token
  // The MTP pass of a k = 1 step that accepted its draft: two positions, logits for the last;
  // the first writes only its latents (as served), or (for comparison) runs the whole block.
  double pass_ms = 0.0;
  double pass_full_block_ms = 0.0;
};

// Batch-1 step times at `context` tokens of cached context, in the absorbed form the engine
// uses. The KV contents do not change the cost; they are whatever the prefill wrote.
StepCosts MeasureStepCosts(const DeepseekModel& model, int64_t context, int64_t max_k, int reps) {
  const int64_t blocks = (context + max_k + 2 + kKvBlockSize - 1) / kKvBlockSize;
  KvPages pages = model.MakeKvPages(blocks);
  std::vector<int32_t> table(static_cast<size_t>(blocks));
  for (int64_t b = 0; b < blocks; ++b) table[b] = static_cast<int32_t>(b);
  ForwardOptions options;
  options.mla_form = MlaForm::kAbsorbed;
  std::vector<int32_t> prompt(static_cast<size_t>(context));
  for (int64_t i = 0; i < context; ++i) prompt[i] = static_cast<int32_t>(3 + (i * 7919) % 1000);
  const auto batch_of = [&](int64_t computed, int64_t n) {
    ForwardBatchBuilder builder;
    builder.AddSequence(table, computed, std::vector<int32_t>(prompt.begin(), prompt.begin() + n));
    return std::move(builder).Build();
  };
  (void)model.ForwardWithHidden(batch_of(0, context), pages, options);  // fill the cache
  const int64_t hidden = model.config().hidden_size;
  const std::vector<float> state(static_cast<size_t>(hidden), 0.5f);
  const std::vector<float> two_states(static_cast<size_t>(2 * hidden), 0.5f);
  ForwardOptions full_block = options;
  full_block.logits_for = LogitsFor::kAllTokens;  // every position through the block

  const auto decode = [&] { (void)model.ForwardWithHidden(batch_of(context, 1), pages, options); };
  const auto verify = [&](int64_t k) {
    ForwardOptions verify_options = options;
    verify_options.logits_per_sequence = {static_cast<int32_t>(k + 1)};
    (void)model.ForwardWithHidden(batch_of(context, k + 1), pages, verify_options);
  };
  const auto draft = [&] {
    (void)model.ForwardMtp(0, batch_of(context, 1), state, pages, options);
  };
  const auto pass = [&] {
    (void)model.ForwardMtp(0, batch_of(context, 2), two_states, pages, options);
  };
  std::vector<TimedStep> steps;
  steps.push_back({decode, decode});
  for (int64_t k = 1; k <= max_k; ++k) steps.push_back({pass, [&, k] { verify(k); }});
  steps.push_back({pass, draft});
  steps.push_back({[&] { verify(1); }, pass});
  steps.push_back(
      {[&] { verify(1); },
       [&] { (void)model.ForwardMtp(0, batch_of(context, 2), two_states, pages, full_block); }});
  const std::vector<double> ms = InterleavedMedianMs(reps, steps);
  StepCosts costs;
  costs.decode_ms = ms[0];
  costs.verify_ms.assign(ms.begin() + 1, ms.begin() + 1 + max_k);
  costs.draft_ms = ms[1 + max_k];
  costs.pass_ms = ms[2 + max_k];
  costs.pass_full_block_ms = ms[3 + max_k];
  return costs;
}

std::unique_ptr<DeepseekModel> LoadOrDie(const std::string& dir, CpuKernels kernels) {
  LoadOptions options{.load_mtp = true};
  options.cpu_kernels = kernels;
  auto model = DeepseekModel::Load(dir, options);
  if (!model.ok()) {
    std::fprintf(stderr, "%s: %s\n", dir.c_str(), model.status().ToString().c_str());
    std::exit(1);
  }
  if ((*model)->num_mtp_modules() == 0) {
    std::fprintf(stderr, "%s has no MTP module (num_nextn_predict_layers 0)\n", dir.c_str());
    std::exit(1);
  }
  return *std::move(model);
}

// 2. The step costs on the larger model, and the batch-1 speed-up they imply at the acceptance
// measured in `rows`: the report's "step_costs" and "implied_batch1_speedup"; nullopt when the
// model cannot be made.
std::optional<nlohmann::json> RunStepCosts(std::string cost_model_dir, int64_t cost_layers,
                                           CpuKernels kernels, int64_t context, int64_t max_k,
                                           int reps, const std::vector<ThroughputRow>& rows) {
  std::string cost_name = cost_model_dir;
  if (cost_model_dir.empty()) {
    cost_model_dir = (std::filesystem::temp_directory_path() /
                      absl::StrCat("moeserve-bench-v2-lite-", cost_layers, "l-mtp-fp8"))
                         .string();
    cost_name =
        absl::StrCat("v2-lite preset, ", cost_layers, " layers + 1 MTP module, FP8 (random)");
    if (!std::filesystem::exists(cost_model_dir + "/config.json")) {
      std::fprintf(stderr, "generating %s ...\n", cost_model_dir.c_str());
      auto config = moeserve::tools::PresetConfig("v2-lite");
      if (!config.ok()) return std::nullopt;
      config->num_hidden_layers = cost_layers;
      config->num_nextn_predict_layers = 1;
      const moeserve::tools::MakeCheckpointOptions make{
          .out_dir = cost_model_dir, .fp8 = true, .seed = 1};
      if (absl::Status s = moeserve::tools::MakeRandomCheckpoint(*config, make); !s.ok()) {
        std::fprintf(stderr, "%s\n", s.ToString().c_str());
        return std::nullopt;
      }
    }
  }
  const std::unique_ptr<DeepseekModel> cost_model = LoadOrDie(cost_model_dir, kernels);
  const StepCosts costs = MeasureStepCosts(*cost_model, context, max_k, reps);
  std::printf("\nstep costs, %s, batch 1, context %lld (median of %d)\n", cost_name.c_str(),
              static_cast<long long>(context), reps);
  std::printf("%-28s | %9s | %9s\n", "step", "ms", "vs decode");
  std::printf("%-28s | %9.2f | %8.2fx\n", "decode (1 token)", costs.decode_ms, 1.0);
  for (int64_t k = 1; k <= max_k; ++k) {
    std::printf("%-28s | %9.2f | %8.2fx\n",
                absl::StrCat("verify k=", k, " (", k + 1, " tokens)").c_str(),
                costs.verify_ms[k - 1], costs.verify_ms[k - 1] / costs.decode_ms);
  }
  std::printf("%-28s | %9.2f | %8.2fx\n", "MTP draft step (1 token)", costs.draft_ms,
              costs.draft_ms / costs.decode_ms);
  std::printf("%-28s | %9.2f | %8.2fx\n", "MTP pass, k=1 step (2 pos.)", costs.pass_ms,
              costs.pass_ms / costs.decode_ms);
  std::printf("%-28s | %9.2f | %8.2fx\n", "  same, both through block", costs.pass_full_block_ms,
              costs.pass_full_block_ms / costs.decode_ms);
  std::printf(
      "\nimplied batch-1 speed-up = (1 + accepted per step) / ((verify + MTP pass + (k - 1) "
      "drafts) / decode)\n");
  std::printf("%2s | %14s | %14s | %9s\n", "k", "mean accepted", "step vs decode", "speed-up");
  nlohmann::json implied = nlohmann::json::array();
  for (int64_t k = 1; k <= max_k; ++k) {
    const auto it = std::find_if(rows.begin(), rows.end(),
                                 [&](const ThroughputRow& r) { return r.batch == 1 && r.k == k; });
    const double length = it != rows.end() ? it->mean_acceptance_length() : 1.0;
    const double cost =
        (costs.verify_ms[k - 1] + costs.pass_ms + static_cast<double>(k - 1) * costs.draft_ms) /
        costs.decode_ms;
    std::printf("%2lld | %14.2f | %13.2fx | %8.2fx\n", static_cast<long long>(k), length, cost,
                length / cost);
    implied.push_back({{"k", k},
                       {"mean_acceptance_length", length},
                       {"step_cost", cost},
                       {"speedup", length / cost}});
  }

  return nlohmann::json{{"step_costs",
                         {{"model", cost_name},
                          {"context", context},
                          {"decode_ms", costs.decode_ms},
                          {"verify_ms", costs.verify_ms},
                          {"draft_ms", costs.draft_ms},
                          {"mtp_pass_ms", costs.pass_ms},
                          {"mtp_pass_full_block_ms", costs.pass_full_block_ms}}},
                        {"implied_batch1_speedup", implied}};
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Speculative decoding with the MTP module: throughput and step costs (CPU)."};
  std::string model_dir = std::string(MOESERVE_SOURCE_DIR) + "/models/kjv-v3-tiny";
  std::string cost_model_dir;
  std::string output = "bench_results/speculative_decoding.json";
  std::vector<int64_t> batches = {1, 8, 32};
  int64_t max_k = 3;
  int64_t output_len = 64;
  int64_t context = 512;
  int64_t cost_layers = 3;
  int reps = 5;
  int throughput_reps = 3;
  int threads = 0;
  std::string device = "cpu";
  std::string cpu_kernels = "fast";
  bool enforce_eager = false;
  int64_t pause_above = 0;
  app.add_option("--model", model_dir, "trained checkpoint with an MTP module (throughput)");
  app.add_option("--cost-model", cost_model_dir,
                 "checkpoint with an MTP module for the step costs (default: generate the "
                 "v2-lite preset with --cost-layers layers and one MTP module, FP8)");
  app.add_option("--cost-layers", cost_layers, "layers of the generated V2-Lite-shaped model");
  app.add_option("--batch-sizes", batches)->delimiter(',');
  app.add_option("--max-k", max_k, "draft tokens up to this (0 = off is always measured)");
  app.add_option("--output-len", output_len, "tokens generated per request");
  app.add_option("--context", context, "cached tokens before the timed steps (step costs)");
  app.add_option("--reps", reps, "timed repetitions of each step (median)");
  app.add_option("--throughput-reps", throughput_reps,
                 "runs of each throughput row (the median tok/s one is reported)")
      ->check(CLI::PositiveNumber);
  app.add_option("--threads", threads, "CPU threads of the engine and the step costs (0: all)");
  app.add_option("--device", device,
                 "cpu, or cuda: the throughput rows on the GPU backend "
                 "(the step costs, CPU only, are then skipped)")
      ->check(CLI::IsMember({"cpu", "cuda"}));
  app.add_option("--cpu-kernels", cpu_kernels,
                 "--device cpu: fast or bf16, as the server's --cpu-kernels (docs/cpu-numerics.md)")
      ->check(CLI::IsMember({"fast", "bf16"}));
  app.add_flag("--enforce-eager", enforce_eager,
               "--device cuda: no CUDA graphs, for decode or speculative steps: the "
               "verification's own cost, without the graphs' gain");
  app.add_option("--disable-by-batch-size", pause_above,
                 "the k > 0 rows with the server's --speculative-disable-by-batch-size (no "
                 "drafts while more sequences decode; 0: never)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--output", output, "JSON report path");
  if (std::optional<int> exit_status = ParseCommandLine(app, argc, argv)) return *exit_status;
  // Each row as it is measured, also into a pipe: a run cut short keeps what it had.
  std::setvbuf(stdout, nullptr, _IOLBF, 0);

  // 1. Throughput on the trained model.
  auto tokenizer = Tokenizer::Load(model_dir);
  if (!tokenizer.ok()) {
    std::fprintf(stderr, "%s\n", tokenizer.status().ToString().c_str());
    return 1;
  }
  // Only the chosen backend loads the weights (the GPU run needs no host copy of them).
  std::unique_ptr<DeepseekModel> cpu_model;
  Backend backend;
  CudaRunner cuda;
  std::string gpu_description;
  if (device == "cpu") {
    cpu_model = LoadOrDie(model_dir, *ParseCpuKernels(cpu_kernels));
    backend.cpu = cpu_model.get();
  } else {
    absl::StatusOr<DeviceSelection> selected = SelectDevice("cuda");
    absl::StatusOr<CudaRunner> loaded =
        selected.ok()
            ? LoadCudaRunner(model_dir,
                             CudaRunnerOptions{.load = LoadOptions{.load_mtp = true},
                                               .max_num_batched_tokens = kMaxBatchedTokens,
                                               .max_num_seqs = kMaxNumSeqs,
                                               .max_model_len = kMaxModelLen,
                                               .max_num_kv_blocks = kKvBlocks,
                                               .enforce_eager = enforce_eager})
            : absl::StatusOr<CudaRunner>(selected.status());
    if (!loaded.ok()) {
      std::fprintf(stderr, "--device cuda: %s\n", loaded.status().ToString().c_str());
      return 1;
    }
    cuda = *std::move(loaded);
    for (const std::string& line : cuda.log_lines) std::printf("%s\n", line.c_str());
    backend = Backend{.cuda = cuda.model.get(),
                      .cuda_kv_blocks = cuda.num_kv_blocks,
                      .name = absl::StrCat(selected->name, ", ", cuda.quantization,
                                           enforce_eager ? ", eager" : ", CUDA graphs")};
    gpu_description = selected->description;
  }
  std::vector<ThroughputRow> rows;
  SetCpuThreadsOfThisThread(threads);  // the step costs run on this thread
  const std::string kernels =
      backend.cuda == nullptr ? absl::StrCat(" (", cpu_kernels, " kernels)") : "";
  const std::string pause =
      pause_above > 0 ? absl::StrCat(", no drafts while more sequences decode than ", pause_above)
                      : "";
  std::printf(
      "speculative decoding, %s on %s%s, %d CPU threads, greedy, %lld tokens per request, median "
      "of %d%s%s\n",
      model_dir.c_str(), backend.name.c_str(), kernels.c_str(), CpuThreadsOfThisThread(),
      static_cast<long long>(output_len), throughput_reps,
      backend.cuda != nullptr ? " after one untimed run" : "", pause.c_str());
  std::printf("%5s | %2s | %8s | %13s | %8s | %10s | %13s%s\n", "batch", "k", "seconds",
              "output tok/s", "vs k=0", "acceptance", "mean accepted",
              backend.cuda != nullptr ? " | graphed forwards" : "");
  for (int64_t batch : batches) {
    // Rounds of k = 0 … max_k, so that a slow spell of the machine hits every k alike; each k's
    // median run is reported.
    std::vector<std::vector<ThroughputRow>> runs(static_cast<size_t>(max_k + 1));
    // On the GPU the first run of a shape captures its graphs and builds cuBLASLt plans.
    if (backend.cuda != nullptr) {
      for (int64_t k = 0; k <= max_k; ++k) {
        (void)RunThroughput(backend, **tokenizer, batch, k, output_len, threads, pause_above);
      }
    }
    for (int r = 0; r < throughput_reps; ++r) {
      for (int64_t k = 0; k <= max_k; ++k) {
        runs[k].push_back(
            RunThroughput(backend, **tokenizer, batch, k, output_len, threads, pause_above));
      }
    }
    double base = 0.0;
    for (int64_t k = 0; k <= max_k; ++k) {
      std::sort(runs[k].begin(), runs[k].end(), [](const ThroughputRow& a, const ThroughputRow& b) {
        return a.tokens_per_second() < b.tokens_per_second();
      });
      ThroughputRow row = runs[k][runs[k].size() / 2];
      if (k == 0) base = row.tokens_per_second();
      const std::string graphed = backend.cuda != nullptr
                                      ? absl::StrCat(" | ", row.graphed_forwards, " of ",
                                                     row.graphed_forwards + row.eager_forwards)
                                      : "";
      std::printf("%5lld | %2lld | %8.3f | %13.1f | %7.2fx | %10.3f | %13.2f%s\n",
                  static_cast<long long>(batch), static_cast<long long>(k), row.seconds,
                  row.tokens_per_second(), row.tokens_per_second() / base, row.acceptance(),
                  row.mean_acceptance_length(), graphed.c_str());
      rows.push_back(std::move(row));
    }
  }

  // 2. Step costs (CPU).
  std::optional<nlohmann::json> step_costs;
  if (backend.cuda == nullptr) {
    step_costs = RunStepCosts(cost_model_dir, cost_layers, *ParseCpuKernels(cpu_kernels), context,
                              max_k, reps, rows);
    if (!step_costs.has_value()) return 1;
  }

  nlohmann::json report = moeserve::bench::MeasurementContext();
  if (backend.cuda != nullptr) {
    report["host"] = report["device"];
    report["device"] = gpu_description;
    // A size whose capture failed runs eagerly: the "CUDA graphs" rows say how many did.
    report["graph_capture_failures"] = CudaExecutionCountsOf(*backend.cuda).capture_failures;
  }
  report["benchmark"] = "speculative_decoding";
  report["model"] = model_dir;
  report["threads"] = CpuThreadsOfThisThread();
  if (backend.cuda == nullptr) report["cpu_kernels"] = cpu_kernels;
  report["throughput_reps"] = throughput_reps;
  report["output_len"] = output_len;
  report["speculative_disable_by_batch_size"] = pause_above;
  nlohmann::json throughput = nlohmann::json::array();
  for (const ThroughputRow& r : rows) {
    throughput.push_back({{"batch", r.batch},
                          {"k", r.k},
                          {"seconds", r.seconds},
                          {"output_tokens", r.output_tokens},
                          {"output_tokens_per_second", r.tokens_per_second()},
                          {"num_drafts", r.speculation.num_drafts},
                          {"num_draft_tokens", r.speculation.num_draft_tokens},
                          {"num_accepted_tokens", r.speculation.num_accepted_tokens},
                          {"accepted_per_position", r.speculation.accepted_per_position},
                          {"acceptance", r.acceptance()},
                          {"mean_acceptance_length", r.mean_acceptance_length()},
                          {"graphed_forwards", r.graphed_forwards},
                          {"eager_forwards", r.eager_forwards}});
  }
  report["throughput"] = throughput;
  report["backend"] = backend.name;
  if (step_costs.has_value()) report.update(*step_costs);
  return moeserve::bench::WriteReport(output, report) ? 0 : 1;
}
