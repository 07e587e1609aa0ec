// A DeepSeek-V2/V3 causal LM on the CPU backend:
// embed → N × (RMSNorm → MLA → RMSNorm → dense MLP | MoE) → RMSNorm → lm_head.
//
// The model owns its weights (immutable after Load) and nothing else: the latent KV pages
// belong to the caller (the model runner), and each step's inputs come in a ForwardBatch.
// Forward is const and safe to call from one thread at a time per KvPages.
//
// A DeepseekModel may also be one rank's shard of a model-parallel group (RankContext,
// engine/parallel/parallel_config.h): it then holds only that rank's weights (its MTP modules'
// blocks cut like the main layers), and Forward, ForwardWithHidden and ForwardMtp must be called
// on every rank of the group with the same arguments; the collectives inside leave every rank
// with the same outputs. ParallelModel (engine/parallel) drives such a group.
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
#include "engine/parallel/expert_placement.h"
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

  // KV pages sized for this model: num_blocks blocks of kKvBlockSize tokens per layer (the main
  // stack's, then one per loaded MTP module), of the element type the load options chose
  // (CpuKvCacheDtype; fp32 for a model built directly).
  KvPages MakeKvPages(int64_t num_blocks) const;
  DType kv_cache_dtype() const { return kv_cache_dtype_; }

  // Runs one step: writes the new tokens' latents into `pages` and returns fp32 logits,
  // [num_seqs, vocab] or [num_tokens, vocab] per options.logits_for. Token ids outside the
  // vocabulary and inconsistent batches are InvalidArgument, checked before any work.
  absl::StatusOr<std::vector<float>> Forward(const ForwardBatch& batch, KvPages& pages,
                                             const ForwardOptions& options = {}) const;

  // Forward that also returns every token's final-normed hidden state, for the MTP module.
  absl::StatusOr<ForwardOutput> ForwardWithHidden(const ForwardBatch& batch, KvPages& pages,
                                                  const ForwardOptions& options = {}) const;

  // MTP modules loaded (LoadOptions::load_mtp): 0 or the config's num_nextn_predict_layers.
  int64_t num_mtp_modules() const { return static_cast<int64_t>(weights_.mtp.size()); }

  // One step of MTP module `module` (reference §3.4) at the batch's positions: token i of the
  // batch is the token AFTER position i (t_{i+1}), `prev_hidden` [num_tokens, hidden] the state
  // at position i of the previous depth (ForwardWithHidden's hidden, or this module's own output
  // when drafting further ahead). Writes the module's latents into its layer of `pages` and
  // returns the logits of t_{i+2} for the rows ForwardOptions selects, with their hidden states;
  // a sequence with logits_per_sequence 0 only writes its latents (its block work is skipped).
  absl::StatusOr<ForwardOutput> ForwardMtp(int64_t module, const ForwardBatch& batch,
                                           absl::Span<const float> prev_hidden, KvPages& pages,
                                           const ForwardOptions& options = {}) const;

  // The checks Forward starts with: token ids, positions, slots and block tables.
  absl::Status ValidateBatch(const ForwardBatch& batch, const KvPages& pages) const;

  // Tokens routed to each (MoE layer, expert) by the calls so far: [num_layers, n_experts]
  // (zero rows for dense layers). Not synchronised: read it from the forward thread. In a
  // group, the sum over ranks is the model's count (ParallelModel::expert_token_counts).
  const std::vector<int64_t>& expert_token_counts() const { return expert_token_counts_; }

 private:
  // Embedding → decoder layers on a validated batch: the residual stream [num_tokens, hidden]
  // before the final norm.
  absl::StatusOr<std::vector<float>> RunLayers(const ForwardBatch& batch, KvPages& pages,
                                               const ForwardOptions& options) const;
  // One decoder layer on the residual stream `h` in place; `kv_layer` indexes `pages`.
  absl::Status RunDecoderLayer(const DecoderLayerWeights& layer, int64_t kv_layer,
                               int64_t* expert_counts, const ForwardBatch& batch, KvPages& pages,
                               const ForwardOptions& options, std::vector<float>& h) const;
  // The part of RunDecoderLayer later tokens depend on, for `tokens` of the batch alone:
  // input_norm, then their MLA latents into layer `kv_layer` of `pages`. `h` is not changed.
  void WriteLatentsOnly(const DecoderLayerWeights& layer, int64_t kv_layer,
                        const ForwardBatch& batch, absl::Span<const int64_t> tokens,
                        const std::vector<float>& h, KvPages& pages,
                        const ForwardOptions& options) const;
  // RMSNorm(h[rows]) with `norm` (null: h is normed already), then `head`: the logits and the
  // normed rows.
  ForwardOutput HeadLogits(const std::vector<float>& h, absl::Span<const int64_t> rows,
                           const std::vector<float>* norm, const LinearWeight& head,
                           const ForwardOptions& options) const;

  // Under expert parallelism, where layer `kv_layer`'s experts sit: the group's placement for
  // the main stack, MtpLayerPlacement for an MTP module's block.
  const LayerPlacement& ExpertLayout(int64_t kv_layer) const;

  ModelConfig config_;
  ModelWeights weights_;
  RankContext rank_;
  LayerPlacement mtp_placement_;  // expert parallelism only
  RopeTable rope_;
  DType kv_cache_dtype_ = DType::kF32;
  mutable std::vector<int64_t> expert_token_counts_;
};

}  // namespace moeserve::engine
