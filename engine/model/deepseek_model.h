// A DeepSeek-V2/V3 causal LM on the CPU backend:
// embed → N × (RMSNorm → MLA → RMSNorm → dense MLP | MoE) → RMSNorm → lm_head.
//
// The model owns its weights (immutable after Load) and nothing else: the latent KV pages
// belong to the caller (the model runner), and each step's inputs come in a ForwardBatch.
// Forward is const and safe to call from one thread at a time per KvPages.
//
// A DeepseekModel may also be one rank's shard of a model-parallel group (RankContext,
// engine/parallel/parallel_config.h): it then holds only that rank's weights, and Forward must
// be called on every rank of the group with the same batch; the collectives inside leave
// every rank with the same logits. ParallelModel (engine/parallel) drives such a group.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/batch/forward_batch.h"
#include "engine/batch/forward_options.h"
#include "engine/batch/kv_pages.h"
#include "engine/model/model_config.h"
#include "engine/model/weight_loader.h"
#include "engine/model/weights.h"
#include "engine/ops/rope/rope.h"
#include "engine/parallel/parallel_config.h"

namespace moeserve::engine {

class DeepseekModel {
 public:
  // Reads config.json and the safetensors of an HF checkpoint directory; `options` as in
  // weight_loader.h (e.g. LoadOptions{.quantize_fp8 = true} for `--quantization fp8`).
  static absl::StatusOr<std::unique_ptr<DeepseekModel>> Load(const std::string& model_dir,
                                                             const LoadOptions& options = {});
  // Rank `rank.rank`'s shard: reads only its part of the weights. The communicator and
  // placement must outlive the model.
  static absl::StatusOr<std::unique_ptr<DeepseekModel>> LoadShard(const std::string& model_dir,
                                                                  const LoadOptions& options,
                                                                  const RankContext& rank);
  DeepseekModel(ModelConfig config, ModelWeights weights, RankContext rank = {});

  const ModelConfig& config() const { return config_; }
  const RankContext& rank() const { return rank_; }
  const ModelWeights& weights() const { return weights_; }

  // KV pages sized for this model: num_blocks blocks of kKvBlockSize tokens per layer, of the
  // element type the load options chose (CpuKvCacheDtype; fp32 for a model built directly).
  KvPages MakeKvPages(int64_t num_blocks) const;
  DType kv_cache_dtype() const { return kv_cache_dtype_; }

  // Runs one step: writes the new tokens' latents into `pages` and returns fp32 logits,
  // [num_seqs, vocab] or [num_tokens, vocab] per options.logits_for. Token ids outside the
  // vocabulary and inconsistent batches are InvalidArgument, checked before any work.
  absl::StatusOr<std::vector<float>> Forward(const ForwardBatch& batch, KvPages& pages,
                                             const ForwardOptions& options = {}) const;

  // The checks Forward starts with: token ids, positions, slots and block tables.
  absl::Status ValidateBatch(const ForwardBatch& batch, const KvPages& pages) const;

  // Tokens routed to each (MoE layer, expert) by the calls so far: [num_layers, n_experts]
  // (zero rows for dense layers). Not synchronised: read it from the forward thread. In a
  // group, the sum over ranks is the model's count (ParallelModel::expert_token_counts).
  const std::vector<int64_t>& expert_token_counts() const { return expert_token_counts_; }

 private:
  ModelConfig config_;
  ModelWeights weights_;
  RankContext rank_;
  RopeTable rope_;
  DType kv_cache_dtype_ = DType::kF32;
  mutable std::vector<int64_t> expert_token_counts_;
};

}  // namespace moeserve::engine
