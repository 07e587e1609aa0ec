// moeserve-generate: offline text generation on the CPU backend.
//   moeserve-generate --model DIR --prompt "In the beginning" [--max-new-tokens 64]
//                     [--temperature 0] [--top-k -1] [--top-p 1] [--min-p 0] [--seed S]
//                     [--stop STR]... [--ignore-eos]
// Tokenizes, prefills, then samples one token per step, streaming the text as it is produced
// (incremental detokenizer + stop checker, as the engine will). The engine's scheduler replaces
// this loop for serving.
#include <chrono>
#include <cstdio>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "engine/cli/command_line.h"
#include "engine/model/deepseek_model.h"
#include "engine/runner/offline_runner.h"
#include "engine/sampling/sampler.h"
#include "engine/sampling/sampling_params.h"
#include "engine/stop_checker.h"
#include "engine/tokenizer/incremental_detokenizer.h"
#include "engine/tokenizer/tokenizer.h"

namespace {

using namespace moeserve::engine;

int Fail(const std::string& message) {
  std::fprintf(stderr, "moeserve-generate: %s\n", message.c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Generates text from a prompt with the CPU forward pass."};
  std::string model_dir, prompt;
  SamplingParams sampling;
  sampling.temperature = 0.0f;
  StopConditions stop;
  stop.max_new_tokens = 64;
  uint64_t seed = std::random_device{}();
  bool show_stats = false;
  app.add_option("--model", model_dir, "checkpoint directory (HF layout, with tokenizer.json)")
      ->required();
  app.add_option("--prompt", prompt, "prompt text")->required();
  app.add_option("--max-new-tokens", stop.max_new_tokens);
  app.add_option("--min-new-tokens", stop.min_new_tokens);
  app.add_option("--temperature", sampling.temperature, "0 = greedy");
  app.add_option("--top-k", sampling.top_k);
  app.add_option("--top-p", sampling.top_p);
  app.add_option("--min-p", sampling.min_p);
  app.add_option("--repetition-penalty", sampling.repetition_penalty);
  app.add_option("--seed", seed);
  app.add_option("--stop", stop.stop_strings, "stop string (repeatable)");
  app.add_flag("--ignore-eos", stop.ignore_eos);
  app.add_flag("--stats", show_stats, "print token counts and speed to stderr");
  if (std::optional<int> exit_status = moeserve::engine::ParseCommandLine(app, argc, argv)) {
    return *exit_status;
  }

  auto tokenizer = Tokenizer::Load(model_dir);
  if (!tokenizer.ok()) return Fail(tokenizer.status().ToString());
  auto model = DeepseekModel::Load(model_dir);
  if (!model.ok()) return Fail(model.status().ToString());
  const int64_t vocab = (*model)->config().vocab_size;
  sampling.seed = seed;
  if (absl::Status s = ValidateSamplingParams(sampling, vocab); !s.ok()) return Fail(s.ToString());
  if (auto eos = (*tokenizer)->eos_token_id()) stop.eos_token_ids.push_back(*eos);
  if (absl::Status s = ValidateStopConditions(stop); !s.ok()) return Fail(s.ToString());

  auto prompt_ids = (*tokenizer)->Encode(prompt);
  if (!prompt_ids.ok()) return Fail(prompt_ids.status().ToString());
  if (prompt_ids->empty()) return Fail("the prompt encodes to no tokens");

  OfflineRunner runner(**model, 1, static_cast<int64_t>(prompt_ids->size()) + stop.max_new_tokens);
  IncrementalDetokenizer detokenizer(**tokenizer, /*skip_special_tokens=*/true);
  StopChecker stop_checker(stop);
  SequenceRng rng(seed);
  std::vector<int32_t> generated;
  std::vector<int32_t> step_input = *prompt_ids;
  std::printf("%s", prompt.c_str());
  std::fflush(stdout);

  const auto begin = std::chrono::steady_clock::now();
  std::string finish = "length";
  while (true) {
    auto logits = runner.Step({step_input}, ForwardOptions{});
    if (!logits.ok()) return Fail(logits.status().ToString());
    // Before min_new_tokens, EOS and stop ids may not be chosen (vLLM's MinTokensLogitsProcessor).
    if (static_cast<int64_t>(generated.size()) < stop.min_new_tokens) {
      for (int32_t id : stop.eos_token_ids) (*logits)[id] = -INFINITY;
      for (int32_t id : stop.stop_token_ids) (*logits)[id] = -INFINITY;
    }
    const SampledToken token =
        SampleToken(*logits, sampling, PenaltyContext{*prompt_ids, generated}, rng);
    generated.push_back(token.token_id);
    StopDecision decision = stop_checker.OnToken(token.token_id, detokenizer.Append(token.token_id),
                                                 static_cast<int64_t>(generated.size()));
    std::printf("%s", decision.text.c_str());
    std::fflush(stdout);
    if (decision.finish) {
      finish = std::string(FinishReasonName(*decision.finish));
      // Out of tokens mid-character: the unfinished bytes print as U+FFFD, as a full decode
      // would. After a stop, what follows the stop is not shown.
      if (*decision.finish == FinishReason::kLength) {
        std::printf("%s", detokenizer.Finish().c_str());
      }
      break;
    }
    step_input = {token.token_id};
  }
  std::printf("\n");
  if (show_stats) {
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - begin).count();
    std::fprintf(stderr, "[%zu prompt tokens, %zu generated, finish=%s, %.1f tokens/s]\n",
                 prompt_ids->size(), generated.size(), finish.c_str(), generated.size() / seconds);
  }
  return 0;
}
