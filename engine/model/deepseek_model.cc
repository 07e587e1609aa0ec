#include "engine/model/deepseek_model.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "engine/io/checkpoint.h"
#include "engine/model/dense_mlp.h"
#include "engine/model/expert_parallel_moe.h"
#include "engine/model/linear.h"
#include "engine/model/mla_layer.h"
#include "engine/model/moe_layer.h"
#include "engine/model/weight_loader.h"
#include "engine/ops/norm/rms_norm.h"
#include "engine/parallel/communicator.h"
#include "engine/parallel/expert_placement.h"
#include "engine/status_macros.h"

namespace moeserve::engine {
absl::StatusOr<std::unique_ptr<DeepseekModel>> DeepseekModel::Load(const std::string& model_dir,
                                                                   const LoadOptions& options) {
  MOESERVE_ASSIGN_OR_RETURN(ModelConfig config, LoadModelConfig(model_dir + "/config.json"));
  MOESERVE_ASSIGN_OR_RETURN(Checkpoint checkpoint, Checkpoint::Open(model_dir));
  MOESERVE_ASSIGN_OR_RETURN(ModelWeights weights, LoadModelWeights(checkpoint, config, options));
  auto model = std::make_unique<DeepseekModel>(std::move(config), std::move(weights));
  model->kv_cache_dtype_ = CpuKvCacheDtype(options);
  return model;
}

absl::StatusOr<std::unique_ptr<DeepseekModel>> DeepseekModel::LoadShard(
    const std::string& model_dir, const LoadOptions& options, const RankContext& rank) {
  MOESERVE_ASSIGN_OR_RETURN(ModelConfig config, LoadModelConfig(model_dir + "/config.json"));
  MOESERVE_RETURN_IF_ERROR(ValidateParallelConfig(rank.parallel, config));
  if (rank.parallel.world_size() > 1 && rank.comm == nullptr) {
    return absl::InvalidArgumentError("a model-parallel rank needs a communicator");
  }
  MOESERVE_ASSIGN_OR_RETURN(WeightShard shard, WeightShardFor(rank, config));
  MOESERVE_ASSIGN_OR_RETURN(Checkpoint checkpoint, Checkpoint::Open(model_dir));
  MOESERVE_ASSIGN_OR_RETURN(ModelWeights weights,
                            LoadModelWeights(checkpoint, config, options, shard));
  auto model = std::make_unique<DeepseekModel>(std::move(config), std::move(weights), rank);
  model->kv_cache_dtype_ = CpuKvCacheDtype(options);
  return model;
}

DeepseekModel::DeepseekModel(ModelConfig config, ModelWeights weights, RankContext rank)
    : config_(std::move(config)),
      weights_(std::move(weights)),
      rank_(rank),
      rope_(MakeRopeTable(config_.qk_rope_head_dim, config_.rope_theta, config_.rope_scaling)),
      expert_token_counts_(
          static_cast<size_t>(config_.num_hidden_layers * config_.n_routed_experts)) {
  if (rank_.ep_size() > 1 && config_.n_routed_experts > 0) {
    mtp_placement_ = MtpLayerPlacement(config_.n_routed_experts, rank_.ep_size());
  }
}

const LayerPlacement& DeepseekModel::ExpertLayout(int64_t kv_layer) const {
  return kv_layer < config_.num_hidden_layers ? rank_.placement->layers[kv_layer] : mtp_placement_;
}

KvPages DeepseekModel::MakeKvPages(int64_t num_blocks) const {
  return KvPages(config_.num_hidden_layers + num_mtp_modules(), num_blocks, config_.kv_cache_dim(),
                 kv_cache_dtype_);
}

absl::Status DeepseekModel::ValidateBatch(const ForwardBatch& b, const KvPages& pages) const {
  if (pages.num_layers() != config_.num_hidden_layers + num_mtp_modules() ||
      pages.kv_dim() != config_.kv_cache_dim() ||
      (pages.dtype() != DType::kF32 && pages.dtype() != DType::kBF16)) {
    return absl::InvalidArgumentError("KvPages do not match the model's layers or kv_dim");
  }
  return ValidateForwardBatch(b, config_.vocab_size, pages.num_blocks());
}

absl::Status DeepseekModel::RunDecoderLayer(const DecoderLayerWeights& layer, int64_t kv_layer,
                                            int64_t* counts, const ForwardBatch& batch,
                                            KvPages& pages, const ForwardOptions& options,
                                            std::vector<float>& h) const {
  const int64_t num_tokens = batch.num_tokens();
  const float eps = static_cast<float>(config_.rms_norm_eps);
  const bool quantize = options.quantize_activations;
  std::vector<float> normed(h.size()), branch(h.size());
  // Tensor parallel: each rank's attention / MLP output is a partial sum over its heads or
  // its slice of the intermediate dimension; the all-reduce makes h identical on every rank.
  const bool tensor_parallel = rank_.tp_size() > 1;
  auto all_reduce_branch = [&]() -> absl::Status {
    if (!tensor_parallel) return absl::OkStatus();
    return rank_.comm->AllReduceSum(absl::MakeSpan(branch));
  };
  RmsNormCpu(h, layer.input_norm, eps, num_tokens, absl::MakeSpan(normed));
  MlaForward(config_, layer.attention, rope_, batch, options, normed.data(), pages.layer(kv_layer),
             branch.data());
  MOESERVE_RETURN_IF_ERROR(all_reduce_branch());
  for (size_t i = 0; i < h.size(); ++i) h[i] += branch[i];

  RmsNormCpu(h, layer.post_attention_norm, eps, num_tokens, absl::MakeSpan(normed));
  if (layer.moe.has_value() && rank_.ep_size() > 1) {
    MOESERVE_RETURN_IF_ERROR(ExpertParallelMoeForward(config_, *layer.moe, ExpertLayout(kv_layer),
                                                      rank_, normed.data(), num_tokens, quantize,
                                                      branch.data(), counts));
  } else if (layer.moe.has_value()) {
    // Every tensor-parallel rank routes every token: rank 0 alone counts them.
    MoeForward(config_, *layer.moe, normed.data(), num_tokens, quantize, branch.data(),
               rank_.rank == 0 ? counts : nullptr);
    MOESERVE_RETURN_IF_ERROR(all_reduce_branch());
  } else {
    MlpForward(*layer.dense_mlp, normed.data(), num_tokens, quantize, branch.data());
    MOESERVE_RETURN_IF_ERROR(all_reduce_branch());
  }
  for (size_t i = 0; i < h.size(); ++i) h[i] += branch[i];
  return absl::OkStatus();
}

absl::StatusOr<std::vector<float>> DeepseekModel::RunLayers(const ForwardBatch& batch,
                                                            KvPages& pages,
                                                            const ForwardOptions& options) const {
  const int64_t hidden = config_.hidden_size;
  // Residual stream h: [num_tokens, hidden] fp32.
  std::vector<float> h(static_cast<size_t>(batch.num_tokens() * hidden));
  for (int64_t t = 0; t < batch.num_tokens(); ++t) {
    const float* row = weights_.embed_tokens.data() + batch.token_ids[t] * hidden;
    std::copy(row, row + hidden, h.begin() + t * hidden);
  }
  for (int64_t l = 0; l < config_.num_hidden_layers; ++l) {
    MOESERVE_RETURN_IF_ERROR(RunDecoderLayer(
        weights_.layers[l], l, expert_token_counts_.data() + l * config_.n_routed_experts, batch,
        pages, options, h));
  }
  return h;
}

ForwardOutput DeepseekModel::HeadLogits(const std::vector<float>& h, absl::Span<const int64_t> rows,
                                        const std::vector<float>* norm, const LinearWeight& head,
                                        const ForwardOptions& options) const {
  const int64_t hidden = config_.hidden_size;
  const int64_t num_rows = static_cast<int64_t>(rows.size());
  ForwardOutput out;
  out.hidden.resize(static_cast<size_t>(num_rows * hidden));
  for (int64_t r = 0; r < num_rows; ++r) {
    std::copy(h.begin() + rows[r] * hidden, h.begin() + (rows[r] + 1) * hidden,
              out.hidden.begin() + r * hidden);
  }
  if (norm != nullptr) {
    RmsNormCpu(out.hidden, *norm, static_cast<float>(config_.rms_norm_eps), num_rows,
               absl::MakeSpan(out.hidden));
  }
  out.logits.resize(static_cast<size_t>(num_rows * config_.vocab_size));
  ApplyLinear(head, out.hidden.data(), num_rows, hidden, options.quantize_activations,
              out.logits.data());
  return out;
}

absl::StatusOr<std::vector<float>> DeepseekModel::Forward(const ForwardBatch& batch, KvPages& pages,
                                                          const ForwardOptions& options) const {
  MOESERVE_RETURN_IF_ERROR(ValidateBatch(batch, pages));
  MOESERVE_ASSIGN_OR_RETURN(std::vector<int64_t> rows, LogitRows(batch, options));
  MOESERVE_ASSIGN_OR_RETURN(std::vector<float> h, RunLayers(batch, pages, options));
  return HeadLogits(h, rows, &weights_.final_norm, weights_.lm_head, options).logits;
}

absl::StatusOr<ForwardOutput> DeepseekModel::ForwardWithHidden(
    const ForwardBatch& batch, KvPages& pages, const ForwardOptions& options) const {
  MOESERVE_RETURN_IF_ERROR(ValidateBatch(batch, pages));
  MOESERVE_ASSIGN_OR_RETURN(std::vector<int64_t> rows, LogitRows(batch, options));
  MOESERVE_ASSIGN_OR_RETURN(std::vector<float> h, RunLayers(batch, pages, options));
  // Every token's state is normed once; the logits' rows are taken from it.
  RmsNormCpu(h, weights_.final_norm, static_cast<float>(config_.rms_norm_eps), batch.num_tokens(),
             absl::MakeSpan(h));
  ForwardOutput out = HeadLogits(h, rows, /*norm=*/nullptr, weights_.lm_head, options);
  out.hidden = std::move(h);
  return out;
}

absl::StatusOr<ForwardOutput> DeepseekModel::ForwardMtp(int64_t module, const ForwardBatch& batch,
                                                        absl::Span<const float> prev_hidden,
                                                        KvPages& pages,
                                                        const ForwardOptions& options) const {
  if (module < 0 || module >= num_mtp_modules()) {
    return absl::InvalidArgumentError(
        absl::StrCat("MTP module ", module, " is not loaded (", num_mtp_modules(), " are)"));
  }
  MOESERVE_RETURN_IF_ERROR(ValidateBatch(batch, pages));
  MOESERVE_ASSIGN_OR_RETURN(std::vector<int64_t> rows,
                            LogitRows(batch, options, ZeroLogitRows::kAllowed));
  const int64_t hidden = config_.hidden_size;
  const int64_t num_tokens = batch.num_tokens();
  if (static_cast<int64_t>(prev_hidden.size()) != num_tokens * hidden) {
    return absl::InvalidArgumentError(absl::StrCat("MTP prev_hidden has ", prev_hidden.size(),
                                                   " values; expected ", num_tokens * hidden));
  }
  const MtpWeights& mtp = weights_.mtp[module];
  const float eps = static_cast<float>(config_.rms_norm_eps);
  const std::vector<float>& embed = mtp.embed_tokens ? *mtp.embed_tokens : weights_.embed_tokens;
  // [enorm(embed(t_{i+1})) | hnorm(h_i)] per token, embedding first (vLLM's order); the
  // embedding is zero at position 0, as vLLM's DeepSeekMultiTokenPredictor has it.
  std::vector<float> e(static_cast<size_t>(num_tokens * hidden));
  for (int64_t t = 0; t < num_tokens; ++t) {
    if (batch.positions[t] == 0) continue;
    const float* row = embed.data() + batch.token_ids[t] * hidden;
    std::copy(row, row + hidden, e.begin() + t * hidden);
  }
  RmsNormCpu(e, mtp.enorm, eps, num_tokens, absl::MakeSpan(e));
  std::vector<float> hn(prev_hidden.begin(), prev_hidden.end());
  RmsNormCpu(hn, mtp.hnorm, eps, num_tokens, absl::MakeSpan(hn));
  std::vector<float> joined(static_cast<size_t>(num_tokens * 2 * hidden));
  for (int64_t t = 0; t < num_tokens; ++t) {
    std::copy(e.begin() + t * hidden, e.begin() + (t + 1) * hidden,
              joined.begin() + t * 2 * hidden);
    std::copy(hn.begin() + t * hidden, hn.begin() + (t + 1) * hidden,
              joined.begin() + t * 2 * hidden + hidden);
  }
  std::vector<float> h(static_cast<size_t>(num_tokens * hidden));
  ApplyLinear(mtp.eh_proj, joined.data(), num_tokens, 2 * hidden, options.quantize_activations,
              h.data());
  const int64_t kv_layer = config_.num_hidden_layers + module;
  const LinearWeight& head = mtp.head ? *mtp.head : weights_.lm_head;
  if (static_cast<int64_t>(rows.size()) == num_tokens) {
    MOESERVE_RETURN_IF_ERROR(
        RunDecoderLayer(mtp.block, kv_layer, /*expert_counts=*/nullptr, batch, pages, options, h));
    return HeadLogits(h, rows, &mtp.head_norm, head, options);
  }
  // Only the logits' rows need the block's output (a speculative step feeds the module every
  // position it accepted, and drafts from the last). The others need only their latents in the
  // module's cache, which the rows attend to: their attention, o_proj and MoE are skipped.
  std::vector<int64_t> latent_only;
  for (int64_t t = 0, r = 0; t < num_tokens; ++t) {
    if (r < static_cast<int64_t>(rows.size()) && rows[r] == t) {
      ++r;
    } else {
      latent_only.push_back(t);
    }
  }
  WriteLatentsOnly(mtp.block, kv_layer, batch, latent_only, h, pages, options);
  if (rows.empty()) return ForwardOutput{};
  std::vector<float> h_rows(rows.size() * static_cast<size_t>(hidden));
  for (size_t r = 0; r < rows.size(); ++r) {
    std::copy_n(h.begin() + rows[r] * hidden, hidden, h_rows.begin() + r * hidden);
  }
  MOESERVE_RETURN_IF_ERROR(RunDecoderLayer(mtp.block, kv_layer, /*expert_counts=*/nullptr,
                                           RowsOnly(batch, rows), pages, options, h_rows));
  std::vector<int64_t> all_rows(rows.size());
  for (size_t r = 0; r < rows.size(); ++r) all_rows[r] = static_cast<int64_t>(r);
  return HeadLogits(h_rows, all_rows, &mtp.head_norm, head, options);
}

void DeepseekModel::WriteLatentsOnly(const DecoderLayerWeights& layer, int64_t kv_layer,
                                     const ForwardBatch& batch, absl::Span<const int64_t> tokens,
                                     const std::vector<float>& h, KvPages& pages,
                                     const ForwardOptions& options) const {
  const int64_t hidden = config_.hidden_size;
  const auto n = static_cast<int64_t>(tokens.size());
  std::vector<float> normed(static_cast<size_t>(n * hidden));
  std::vector<int32_t> positions(tokens.size());
  std::vector<int64_t> slots(tokens.size());
  for (int64_t i = 0; i < n; ++i) {
    std::copy_n(h.begin() + tokens[i] * hidden, hidden, normed.begin() + i * hidden);
    positions[i] = batch.positions[tokens[i]];
    slots[i] = batch.slot_mapping[tokens[i]];
  }
  RmsNormCpu(normed, layer.input_norm, static_cast<float>(config_.rms_norm_eps), n,
             absl::MakeSpan(normed));
  WriteMlaLatents(config_, layer.attention, rope_, positions.data(), slots.data(), n,
                  options.quantize_activations, normed.data(), pages.layer(kv_layer));
}

}  // namespace moeserve::engine
