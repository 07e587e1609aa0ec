#include "engine/runner/mtp_speculator.h"

#include <algorithm>
#include <utility>
#include <vector>

#include "engine/batch/forward_batch.h"
#include "engine/runner/sampling_inputs.h"
#include "engine/sampling/sampler.h"
#include "engine/status_macros.h"

namespace moeserve::engine {
namespace {

// Step 2 of the header for one sequence: its 1 + d logits rows → the tokens it gains.
std::vector<SampledToken> VerifySequence(const Sequence& s, absl::Span<const float> rows,
                                         int64_t vocab, absl::Span<const int32_t> drafts,
                                         SequenceRng& rng, SamplingWorkspace& workspace) {
  const SamplingParams& params = s.request.sampling;
  const absl::Span<const int32_t> all(s.tokens);
  // The output so far, growing by each accepted draft, for penalties' view of row j.
  std::vector<int32_t> generated;
  if (HasLogitsProcessors(params)) {
    generated.assign(all.begin() + s.num_prompt_tokens, all.end());
  }
  std::vector<float> masked;
  std::vector<SampledToken> tokens;
  for (size_t j = 0; j <= drafts.size(); ++j) {
    absl::Span<const float> row = rows.subspan(j * vocab, vocab);
    const int64_t generated_index = s.num_generated() + static_cast<int64_t>(j);
    if (MasksStopTokens(s, generated_index)) {
      masked.assign(row.begin(), row.end());
      MaskStopTokensBeforeMinTokens(s, generated_index, absl::MakeSpan(masked));
      row = masked;
    }
    const PenaltyContext context{all.subspan(0, s.num_prompt_tokens), generated};
    if (j == drafts.size()) {
      tokens.push_back(SampleToken(row, params, context, rng, workspace));
      break;
    }
    VerifiedToken verified = VerifyDraftToken(row, params, context, drafts[j], rng, workspace);
    tokens.push_back(std::move(verified.token));
    if (!verified.accepted) break;
    if (HasLogitsProcessors(params)) generated.push_back(drafts[j]);
  }
  return tokens;
}

}  // namespace

MtpSpeculator::MtpSpeculator(StepModel& model, const EngineOptions& options)
    : model_(model), options_(options) {}

absl::StatusOr<StepOutput> MtpSpeculator::Execute(const ScheduledBatch& batch) {
  if (model_.num_mtp_modules() == 0) {
    return absl::FailedPreconditionError(
        "speculative decoding needs the model's MTP module, and none is loaded");
  }
  const int64_t vocab = model_.config().vocab_size;
  const int64_t hidden_size = model_.config().hidden_size;
  const size_t n = batch.sequences.size();

  // 1. Target forward: new tokens, drafts appended; 1 + d logits rows per sampling sequence.
  ForwardBatchBuilder target;
  ForwardOptions options;
  options.mla_form = options_.mla_form;
  options.logits_for = LogitsFor::kLastTokenOfEachSequence;
  std::vector<int64_t> first_token(n);  // of each sequence in the target batch
  int64_t num_tokens = 0;
  for (size_t i = 0; i < n; ++i) {
    const ScheduledSequence& entry = batch.sequences[i];
    const Sequence& s = *entry.sequence;
    const int64_t real = entry.num_new_tokens - entry.num_draft_tokens;
    std::vector<int32_t> ids(s.tokens.begin() + s.num_computed_tokens,
                             s.tokens.begin() + s.num_computed_tokens + real);
    ids.insert(ids.end(), s.draft_tokens.begin(), s.draft_tokens.begin() + entry.num_draft_tokens);
    target.AddSequence(s.block_table.ids(), s.num_computed_tokens, ids);
    options.logits_per_sequence.push_back(
        static_cast<int32_t>(entry.samples ? 1 + entry.num_draft_tokens : 1));
    first_token[i] = num_tokens;
    num_tokens += entry.num_new_tokens;
  }
  MOESERVE_ASSIGN_OR_RETURN(ForwardOutput verified,
                            model_.ForwardWithHidden(std::move(target).Build(), options));

  // 2. Verify each sampling sequence's drafts, rows in parallel (each has its own rng).
  StepOutput output;
  output.accepted_drafts.assign(n, 0);
  std::vector<size_t> sampling;  // batch indices of the sequences that sample
  std::vector<int64_t> first_row;
  int64_t rows = 0;
  for (size_t i = 0; i < n; ++i) {
    const ScheduledSequence& entry = batch.sequences[i];
    if (entry.samples) {
      sampling.push_back(i);
      first_row.push_back(rows);
      output.sequences.push_back({.sequence = entry.sequence});
    }
    rows += options.logits_per_sequence[i];
  }
  const auto num_sampling = static_cast<int64_t>(sampling.size());
#pragma omp parallel if (num_sampling > 1)
  {
    SamplingWorkspace workspace;
#pragma omp for schedule(dynamic)
    for (int64_t k = 0; k < num_sampling; ++k) {
      const ScheduledSequence& entry = batch.sequences[sampling[k]];
      Sequence& s = *entry.sequence;
      const absl::Span<const float> logits =
          absl::MakeConstSpan(verified.logits)
              .subspan(first_row[k] * vocab, (1 + entry.num_draft_tokens) * vocab);
      output.sequences[k].tokens = VerifySequence(
          s, logits, vocab, absl::MakeConstSpan(s.draft_tokens).first(entry.num_draft_tokens),
          s.rng, workspace);
    }
  }

  // Drafts each sampling sequence can use next step: it verifies 1 + d tokens then, all within
  // max_new_tokens; none while more sequences than the speculation limit go on decoding.
  std::vector<int64_t> wanted(static_cast<size_t>(num_sampling), 0);
  int64_t continuing = 0;  // sampling sequences that max_new_tokens does not end this step
  for (int64_t j = 0; j < num_sampling; ++j) {
    const Sequence& s = *output.sequences[j].sequence;
    const int64_t left_after =
        s.num_tokens_left() - static_cast<int64_t>(output.sequences[j].tokens.size());
    wanted[j] = std::clamp<int64_t>(left_after - 1, 0, options_.speculative_tokens);
    continuing += left_after > 0 ? 1 : 0;
  }
  if (options_.speculative_disable_by_batch_size > 0 &&
      continuing > options_.speculative_disable_by_batch_size) {
    std::fill(wanted.begin(), wanted.end(), 0);
  }

  // 3. The MTP module over every position computed this step: (hidden at p, token at p + 1).
  //    A sequence that drafts gets its last row through the module's block and head; the others
  //    (prefill chunks that do not sample yet, sequences that draft nothing) only write latents.
  ForwardBatchBuilder mtp;
  std::vector<float> prev_hidden;
  std::vector<int64_t> new_computed(n);
  ForwardOptions mtp_options;
  mtp_options.mla_form = options_.mla_form;
  std::vector<int64_t> draft_row(static_cast<size_t>(num_sampling), -1);  // row in the pass
  int64_t num_draft_rows = 0;
  size_t k = 0;
  for (size_t i = 0; i < n; ++i) {
    const ScheduledSequence& entry = batch.sequences[i];
    const Sequence& s = *entry.sequence;
    std::vector<int32_t> next;  // the token after each computed position
    int64_t computed = entry.num_new_tokens - entry.num_draft_tokens;
    bool drafts = false;
    if (entry.samples) {
      const std::vector<SampledToken>& gained = output.sequences[k].tokens;
      output.accepted_drafts[i] = static_cast<int64_t>(gained.size()) - 1;
      computed += output.accepted_drafts[i];
      next.assign(s.tokens.begin() + s.num_computed_tokens + 1, s.tokens.end());
      for (const SampledToken& t : gained) next.push_back(t.token_id);
      if (wanted[k] >= 1) {
        drafts = true;
        draft_row[k] = num_draft_rows++;
      }
      ++k;
    } else {
      next.assign(s.tokens.begin() + s.num_computed_tokens + 1,
                  s.tokens.begin() + s.num_computed_tokens + computed + 1);
    }
    next.resize(static_cast<size_t>(computed));
    new_computed[i] = s.num_computed_tokens + computed;
    mtp.AddSequence(s.block_table.ids(), s.num_computed_tokens, next);
    mtp_options.logits_per_sequence.push_back(drafts ? 1 : 0);
    const auto hidden_begin = verified.hidden.begin() + first_token[i] * hidden_size;
    prev_hidden.insert(prev_hidden.end(), hidden_begin, hidden_begin + computed * hidden_size);
  }
  // Every sequence drafting is the default one row each (the shape CUDA graphs are captured for).
  if (num_draft_rows == static_cast<int64_t>(n)) mtp_options.logits_per_sequence.clear();
  MOESERVE_ASSIGN_OR_RETURN(ForwardOutput draft,
                            model_.ForwardMtp(std::move(mtp).Build(), prev_hidden, mtp_options));
  std::vector<float> state(static_cast<size_t>(num_sampling * hidden_size));
  for (int64_t j = 0; j < num_sampling; ++j) {
    if (draft_row[j] < 0) continue;
    const int64_t row = draft_row[j];
    output.sequences[j].next_drafts.push_back(
        GreedyToken(absl::MakeConstSpan(draft.logits).subspan(row * vocab, vocab)));
    std::copy_n(draft.hidden.begin() + row * hidden_size, hidden_size,
                state.begin() + j * hidden_size);
  }

  // 4. Draft on from the module's own state: draft m at position new_computed + m - 2.
  for (int64_t m = 2; m <= options_.speculative_tokens; ++m) {
    ForwardBatchBuilder chain;
    std::vector<float> chain_hidden;
    std::vector<int64_t> members;
    for (int64_t j = 0; j < num_sampling; ++j) {
      if (wanted[j] < m) continue;
      const Sequence& s = *output.sequences[j].sequence;
      const int32_t last_draft = output.sequences[j].next_drafts.back();
      chain.AddSequence(s.block_table.ids(), new_computed[sampling[j]] + m - 2,
                        std::vector<int32_t>{last_draft});
      chain_hidden.insert(chain_hidden.end(), state.begin() + j * hidden_size,
                          state.begin() + (j + 1) * hidden_size);
      members.push_back(j);
    }
    if (members.empty()) break;
    ForwardOptions chain_options;
    chain_options.mla_form = options_.mla_form;
    MOESERVE_ASSIGN_OR_RETURN(ForwardOutput step, model_.ForwardMtp(std::move(chain).Build(),
                                                                    chain_hidden, chain_options));
    for (size_t r = 0; r < members.size(); ++r) {
      const int64_t j = members[r];
      output.sequences[j].next_drafts.push_back(
          GreedyToken(absl::MakeConstSpan(step.logits).subspan(r * vocab, vocab)));
      std::copy_n(step.hidden.begin() + static_cast<int64_t>(r) * hidden_size, hidden_size,
                  state.begin() + j * hidden_size);
    }
  }
  return output;
}

}  // namespace moeserve::engine
