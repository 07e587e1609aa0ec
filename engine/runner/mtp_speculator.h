// Speculative decoding with the model's multi-token-prediction (MTP) module: one engine step
// that verifies last step's drafts and drafts the next ones (DeepSeek-V3 report §2.2; vLLM's
// and SGLang's MTP speculators; docs/speculative-decoding.md).
//
// A step, for the whole continuous batch at once:
//  1. Target forward over every scheduled sequence's new tokens, a decode's draft tokens
//     appended (ScheduledSequence::num_draft_tokens), with the logits of each sampling
//     sequence's last 1 + d positions and every token's final hidden state.
//  2. Verify, per sequence, left to right: VerifyDraftToken (sampler.h) accepts a draft or
//     replaces it with a token of the target distribution and stops; after d accepted drafts the
//     last row gives a bonus token. Penalties, min_tokens and logprobs see each row's own
//     context, as if the tokens had been decoded one by one.
//  3. The MTP module runs over every position whose target KV became valid this step (prefill
//     chunks included, so its own latent cache stays complete), reading the target's hidden
//     state at position p and the token at p + 1; a drafting sequence's last row is its first
//     draft. No sequence drafts while more than EngineOptions::speculative_disable_by_batch_size
//     of the step's sampling sequences go on decoding: the pass then only writes latents, and
//     the next step verifies no drafts.
//  4. For k > 1 the module drafts on from its own output state and draft, one position per
//     pass (k - 1 passes), into look-ahead KV slots the scheduler allocated; the next step
//     overwrites them with the real values.
// Rejected drafts' KV is never committed: the scheduler advances num_computed_tokens by the
// accepted tokens only and shrinks the block table (Scheduler::CommitComputed).
//
// Greedy output is bit-identical to decoding without speculation when the MLA form is absorbed
// for every token (EngineOptions::mla_form, the CPU default): each position's computation then
// does not depend on how many tokens its sequence runs in a step. Owned by the ModelRunner;
// engine thread only.
#pragma once

#include <cstdint>

#include "absl/status/statusor.h"
#include "engine/engine_options.h"
#include "engine/runner/step_model.h"
#include "engine/runner/step_output.h"
#include "engine/scheduler/scheduled_batch.h"

namespace moeserve::engine {

class MtpSpeculator {
 public:
  // `model` must hold an MTP module (StepModel::num_mtp_modules) and outlive this object.
  MtpSpeculator(StepModel& model, const EngineOptions& options);

  absl::StatusOr<StepOutput> Execute(const ScheduledBatch& batch);

 private:
  StepModel& model_;
  const EngineOptions options_;
};

}  // namespace moeserve::engine
