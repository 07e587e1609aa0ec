// Multi-head latent attention for one layer and one step (reference §3.1).
//
// Projects q and the latent [c_kv | k_pe], applies RoPE, writes the new latents into the
// paged cache, then attends for each sequence in the naive form (expand the cached latents
// through kv_b_proj; prefill) or the absorbed form (attend in the 576-dim latent space;
// decode). Both read the context from the same cache, so they agree on any batch.
#pragma once

#include <cstdint>

#include "engine/batch/forward_batch.h"
#include "engine/batch/forward_options.h"
#include "engine/model/model_config.h"
#include "engine/model/weights.h"
#include "engine/ops/attention/latent_cache.h"
#include "engine/ops/rope/rope.h"

namespace moeserve::engine {

// x: [num_tokens, hidden] (after input_layernorm); pages: this layer's [num_blocks, 64, 576];
// out: [num_tokens, hidden] (overwritten). Under tensor parallelism `weights` hold a rank's
// heads and `out` is that rank's partial sum of o_proj (the caller all-reduces); the latents
// written into `pages` are the same on every rank.
void MlaForward(const ModelConfig& config, const MlaWeights& weights, const RopeTable& rope,
                const ForwardBatch& batch, const ForwardOptions& options, const float* x,
                LatentPages pages, float* out);

// MlaForward's first half alone: the latents [RMSNorm(c_kv) | RoPE(k_pe)] of x's num_tokens
// tokens into the cache at their slots. For tokens whose attention output nobody reads (an
// MTP module's earlier positions in a step), the cached latent is all later tokens need.
void WriteMlaLatents(const ModelConfig& config, const MlaWeights& weights, const RopeTable& rope,
                     const int32_t* positions, const int64_t* slot_mapping, int64_t num_tokens,
                     bool quantize, const float* x, LatentPages pages);

}  // namespace moeserve::engine
