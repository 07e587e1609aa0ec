// Which form of MLA the CPU forward runs a sequence's step in, when the caller leaves it to
// the engine (MlaForm::kAuto): the naive form expands every cached latent of the context
// through kv_b_proj and runs multi-head attention; the absorbed form attends in the 576-wide
// latent space and needs no expansion. For a fresh prompt the naive form costs less; for a
// few new tokens after a long cached context (decode, a prefix-cache hit, a short chunk after
// a long one, speculative tokens) the expansion dominates and the absorbed form wins by far.
// The choice depends only on the sequence's own new tokens and context, never on the rest of
// the batch, so batch invariance holds. Called by the MLA layer (mla_layer.cc) and the MLA
// form benchmark (bench/mla_form_bench.cc).
#pragma once

#include <cstdint>

#include "engine/batch/forward_options.h"
#include "engine/model/model_config.h"

namespace moeserve::engine {

// Estimated multiply-adds of each form for one sequence's step with `heads` query heads
// (a rank's heads under tensor parallelism): new_tokens queries over `context` keys (the new
// tokens included).
int64_t NaiveMlaMacs(const ModelConfig& config, int64_t heads, int64_t new_tokens, int64_t context);
int64_t AbsorbedMlaMacs(const ModelConfig& config, int64_t heads, int64_t new_tokens,
                        int64_t context);

// kAuto's choice: a single new token always takes the absorbed form (decode), otherwise the
// form with fewer estimated multiply-adds (weighted by the measured relative speed of the two,
// docs/cpu-numerics.md).
bool CpuPrefersAbsorbedMla(const ModelConfig& config, int64_t heads, int64_t new_tokens,
                           int64_t context);

// `form` when forced (kNaive, kAbsorbed), else CpuPrefersAbsorbedMla.
bool CpuUsesAbsorbedMla(MlaForm form, const ModelConfig& config, int64_t heads, int64_t new_tokens,
                        int64_t context);

}  // namespace moeserve::engine
