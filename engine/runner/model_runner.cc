#include "engine/runner/model_runner.h"

#include <algorithm>

#include "engine/batch/forward_batch.h"
#include "engine/runner/cpu_step_model.h"
#include "engine/runner/sampling_inputs.h"
#include "engine/status_macros.h"

namespace moeserve::engine {
namespace {

// Whether GreedyToken of the raw logits is this entry's whole sampling step: it samples nothing,
// or greedily with no processors, no logprobs and no EOS/stop masking for min_new_tokens.
bool ArgmaxAnswers(const ScheduledSequence& entry) {
  if (!entry.samples) return true;
  const Sequence& s = *entry.sequence;
  return NeedsOnlyArgmax(s.request.sampling) && s.num_generated() >= s.request.stop.min_new_tokens;
}

}  // namespace

ModelRunner::ModelRunner(const DeepseekModel& model, const EngineOptions& options)
    : ModelRunner(std::make_unique<CpuStepModel>(model, options.num_kv_blocks), options) {}

ModelRunner::ModelRunner(ParallelModel& model, const EngineOptions& options)
    : ModelRunner(std::make_unique<CpuStepModel>(model, options.num_kv_blocks), options) {}

ModelRunner::ModelRunner(StepModel& model, const EngineOptions& options)
    : model_(model), options_(options) {
  if (options.speculative_tokens > 0) {
    speculator_ = std::make_unique<MtpSpeculator>(model_, options);
  }
}

ModelRunner::ModelRunner(std::unique_ptr<StepModel> owned, const EngineOptions& options)
    : ModelRunner(*owned, options) {
  owned_ = std::move(owned);
}

ModelRunner::~ModelRunner() = default;

absl::StatusOr<StepOutput> ModelRunner::Execute(const ScheduledBatch& batch) {
  if (speculator_ != nullptr) return speculator_->Execute(batch);
  ForwardBatchBuilder builder;
  for (const ScheduledSequence& entry : batch.sequences) {
    const Sequence& s = *entry.sequence;
    const auto begin = s.tokens.begin() + s.num_computed_tokens;
    builder.AddSequence(s.block_table.ids(), s.num_computed_tokens,
                        std::vector<int32_t>(begin, begin + entry.num_new_tokens));
  }
  const ForwardBatch forward_batch = std::move(builder).Build();
  ForwardOptions forward_options;
  forward_options.mla_form = options_.mla_form;
  forward_options.logits_for = LogitsFor::kLastTokenOfEachSequence;
  StepOutput output;
  output.accepted_drafts.assign(batch.sequences.size(), 0);

  // When every sampled row is plain greedy, only the argmax ids need to leave the backend.
  if (std::all_of(batch.sequences.begin(), batch.sequences.end(), ArgmaxAnswers)) {
    MOESERVE_ASSIGN_OR_RETURN(std::vector<int32_t> ids,
                              model_.ForwardArgmax(forward_batch, forward_options));
    for (size_t i = 0; i < batch.sequences.size(); ++i) {
      if (!batch.sequences[i].samples) continue;
      Sequence& s = *batch.sequences[i].sequence;
      s.rng.NextUniform();  // SampleToken draws once per token, greedy included
      output.sequences.push_back({.sequence = &s, .tokens = {{.token_id = ids[i]}}});
    }
    return output;
  }
  MOESERVE_ASSIGN_OR_RETURN(std::vector<float> logits,
                            model_.Forward(forward_batch, forward_options));

  // Sample the rows whose chunk reached the end of their sequence.
  const int64_t vocab = config().vocab_size;
  std::vector<float> rows;
  std::vector<SamplingRow> sampling_rows;
  for (size_t i = 0; i < batch.sequences.size(); ++i) {
    const ScheduledSequence& entry = batch.sequences[i];
    if (!entry.samples) continue;
    Sequence& s = *entry.sequence;
    rows.insert(rows.end(), logits.begin() + i * vocab, logits.begin() + (i + 1) * vocab);
    MaskStopTokensBeforeMinTokens(s, s.num_generated(),
                                  absl::MakeSpan(rows).subspan(rows.size() - vocab));
    const absl::Span<const int32_t> all(s.tokens);
    sampling_rows.push_back(
        {&s.request.sampling,
         PenaltyContext{all.subspan(0, s.num_prompt_tokens), all.subspan(s.num_prompt_tokens)},
         &s.rng});
    output.sequences.push_back({.sequence = &s});
  }
  if (sampling_rows.empty()) return output;
  std::vector<SampledToken> tokens = SampleBatch(rows, vocab, sampling_rows);
  for (size_t i = 0; i < tokens.size(); ++i) {
    output.sequences[i].tokens.push_back(std::move(tokens[i]));
  }
  return output;
}

}  // namespace moeserve::engine
