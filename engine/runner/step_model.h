// The seam between the model runner and a backend: one forward step of the whole model over
// the backend's own paged latent KV cache.
//
// The model runner turns the scheduler's batch into a ForwardBatch, calls Forward, and samples
// from the logits it returns; it does not know where the step ran. Implementations, all here in
// runner/ adapting a model below: CpuStepModel (cpu_step_model.h: a DeepseekModel or a
// tensor/expert-parallel group of them, with host KV pages), CudaStepModel (cuda_step_model.h:
// one GPU's DeepseekModelCuda, device weights and KV pages) and CudaRankGroup (several GPUs). Block
// ids in the batch are the scheduler's KvCacheManager's, so the backend's KV pool must have as many
// blocks as EngineOptions::num_kv_blocks. Engine thread only.
#pragma once

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "engine/batch/forward_batch.h"
#include "engine/batch/forward_options.h"
#include "engine/model/model_config.h"

namespace moeserve::engine {

class StepModel {
 public:
  virtual ~StepModel() = default;

  virtual const ModelConfig& config() const = 0;

  // Writes the batch's new tokens into the KV pages and returns fp32 logits on the host,
  // [num_seqs, vocab] or [num_tokens, vocab] per options.logits_for. Invalid batches (token
  // ids outside the vocabulary, slots or blocks outside the pool) are InvalidArgument before
  // any work.
  virtual absl::StatusOr<std::vector<float>> Forward(const ForwardBatch& batch,
                                                     const ForwardOptions& options) = 0;

  // Forward for LogitsFor::kLastTokenOfEachSequence, then GreedyToken (sampler.h) of each
  // sequence's row: [num_seqs] token ids. The default reads Forward's logits; the CUDA backend
  // takes the argmax on the device and copies only the ids.
  virtual absl::StatusOr<std::vector<int32_t>> ForwardArgmax(const ForwardBatch& batch,
                                                             const ForwardOptions& options);

  // --- Speculative decoding with the model's multi-token-prediction (MTP) module.
  // MTP modules the backend holds (the KV pool then has a latent layer for each): 0 by default.
  virtual int64_t num_mtp_modules() const { return 0; }
  // Forward (logits per options, logits_per_sequence included) plus every token's hidden state
  // after the final norm, [num_tokens, hidden]. Default: Unimplemented.
  virtual absl::StatusOr<ForwardOutput> ForwardWithHidden(const ForwardBatch& batch,
                                                          const ForwardOptions& options);
  // One step of MTP module 0 (DeepseekModel::ForwardMtp: token i is the token after position
  // i, prev_hidden [num_tokens, hidden] the state at position i). Default: Unimplemented.
  virtual absl::StatusOr<ForwardOutput> ForwardMtp(const ForwardBatch& batch,
                                                   absl::Span<const float> prev_hidden,
                                                   const ForwardOptions& options);

  // Blocks of kKvBlockSize tokens in the KV pool.
  virtual int64_t num_kv_blocks() const = 0;
  // Bytes of latent cache one token takes over all layers (of one rank's copy).
  virtual int64_t kv_bytes_per_token() const = 0;
  // Tokens routed to each (layer, expert) so far: [num_layers, n_routed_experts].
  virtual std::vector<int64_t> expert_token_counts() const = 0;
};

}  // namespace moeserve::engine
