#include "engine/model/deepseek_model_cuda.h"

#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstring>
#include <map>
#include <utility>

#include "absl/strings/str_cat.h"
#include "engine/batch/attention_order.h"
#include "engine/batch/decode_padding.h"
#include "engine/ops/activation/silu_mul_cuda.h"
#include "engine/ops/attention/latent_cache_cuda.h"
#include "engine/ops/attention/mla_absorb_cuda.h"
#include "engine/ops/attention/mla_decode_cuda.h"
#include "engine/ops/attention/mla_decode_split.h"
#include "engine/ops/attention/mla_prefill_cuda.h"
#include "engine/ops/cuda/check.h"
#include "engine/ops/dtype.h"
#include "engine/ops/embedding/embedding_cuda.h"
#include "engine/ops/linear/fp8_quant_cuda.h"
#include "engine/ops/norm/rms_norm_cuda.h"
#include "engine/ops/rope/rope_cuda.h"
#include "engine/sampling/argmax_cuda.h"
#include "engine/status_macros.h"

namespace moeserve::engine {
namespace {

// q_a_layernorm and kv_a_layernorm use the RMSNorm default eps (reference §3), as in
// mla_layer.cc.
constexpr float kLatentNormEps = 1e-6f;

// The most new tokens per sequence a step replays from a graph: 1 + the most draft tokens a
// speculative step verifies (--speculative-tokens, at most 8). Longer uniform steps (prefill
// chunks of equal length) run eagerly rather than capture a graph per prompt length.
constexpr int64_t kMaxGraphTokensPerSeq = 9;

int64_t CeilDiv(int64_t a, int64_t b) { return (a + b - 1) / b; }
int64_t AlignUp(int64_t a, int64_t b) { return CeilDiv(a, b) * b; }

template <typename T>
absl::StatusOr<T*> Take(DeviceArena& arena, int64_t count) {
  MOESERVE_ASSIGN_OR_RETURN(void* p, arena.Allocate(static_cast<size_t>(count) * sizeof(T)));
  return static_cast<T*>(p);
}

// Arena bytes of the FP8 quantization of a [rows, k] activation (Linear's scratch).
int64_t QuantBytes(int64_t rows, int64_t k) {
  const int64_t padded = Fp8PaddedTokens(rows);
  return padded * k + CeilDiv(k, kFp8BlockSize) * padded * 4 + 2 * DeviceArena::kAlignmentBytes;
}

}  // namespace

// One step's inputs on the device, in attention order (attention_order.h), plus the host facts
// the launches need.
struct DeepseekModelCuda::StepInputs {
  AttentionOrderedBatch ordered;
  int64_t num_tokens = 0;
  int64_t num_seqs = 0;
  int64_t max_absorbed_queries = 0;
  int64_t max_absorbed_len = 0;
  const int32_t* token_ids = nullptr;
  const int32_t* positions = nullptr;
  const int64_t* slot_mapping = nullptr;
  const int32_t* query_start_loc = nullptr;
  const int32_t* seq_lens = nullptr;
  const int32_t* block_tables = nullptr;
  const int32_t* logit_rows = nullptr;
};

int64_t DeepseekModelCuda::KvBytesPerBlock(const ModelConfig& config, int64_t mtp_modules) {
  return (config.num_hidden_layers + mtp_modules) * kKvBlockSize * config.kv_cache_dim() * 2;
}

int64_t DeepseekModelCuda::kv_bytes_per_token() const {
  return (config_.num_hidden_layers + num_mtp_modules()) * config_.kv_cache_dim() * 2;
}

size_t DeepseekModelCuda::ActivationBytes(const ModelConfig& c, const CudaModelWeights& weights,
                                          const CudaStepLimits& limits, int num_sms) {
  const int64_t t = std::max<int64_t>(limits.max_num_batched_tokens, 1);
  const int64_t s = std::clamp<int64_t>(limits.max_num_seqs, 1, t);
  const int64_t ctx = std::max<int64_t>(limits.max_model_len, t);
  const int64_t tp = Fp8PaddedTokens(t);
  const int64_t d = c.hidden_size, kv = c.kv_cache_dim(), rank = c.kv_lora_rank;
  const int64_t heads = c.num_attention_heads;
  const int64_t qk = c.qk_head_dim(), v = c.v_head_dim;
  const int64_t q_rank = c.q_lora_rank.value_or(0);
  const int64_t blocks_per_seq = CeilDiv(ctx, kKvBlockSize);
  const int64_t align = DeviceArena::kAlignmentBytes;

  // Alive for the whole step: inputs, residual, normed, branch, final rows, logits.
  int64_t step = t * (4 + 4 + 8 + 4) + (2 * s + 1) * 4 + s * blocks_per_seq * 4 + 8 * align;
  step += 4 * tp * d * 2 + tp * c.vocab_size * 4;
  // ForwardMtp: the previous states, the normed embedding and hidden, and their concatenation.
  if (!weights.mtp.empty()) step += 5 * tp * d * 2 + 4 * align;

  // Attention of one layer.
  int64_t attention = tp * heads * qk * 2 + tp * kv * 2 + tp * heads * v * 2;
  attention += q_rank > 0 ? 2 * AlignUp(tp * q_rank * 2, align) + QuantBytes(t, q_rank) : 0;
  attention += QuantBytes(t, std::max({d, heads * v, q_rank}));
  // Absorbed: q_mqa and o_lat, plus the split workspace of the worst plan within the limits:
  // decode (1 token a sequence), uniform speculative steps (q tokens each, as graphed) and the
  // whole budget spread over the sequences.
  size_t worst_workspace = 0;
  for (int64_t seqs = 1; seqs <= s; seqs = seqs < s ? std::min(seqs * 2, s) : s + 1) {
    std::vector<int64_t> token_counts = {t};
    for (int64_t q = 1; q <= kMaxGraphTokensPerSeq && seqs * q <= t; ++q) {
      token_counts.push_back(seqs * q);
    }
    for (int64_t tokens : token_counts) {
      const MlaDecodePlan plan =
          PlanMlaDecode(seqs, heads, tokens, CeilDiv(tokens, seqs), ctx, num_sms);
      worst_workspace = std::max(worst_workspace, plan.workspace_bytes);
    }
  }
  const int64_t absorbed = t * heads * (kv + rank) * 2 + static_cast<int64_t>(worst_workspace);
  // Naive: one sequence's gathered latents, c_kv, its FP8 copy and K/V.
  const int64_t ctx_p = Fp8PaddedTokens(ctx);
  const int64_t naive = ctx * kv * 2 + ctx_p * rank * 2 + QuantBytes(ctx, rank) +
                        ctx_p * heads * (c.qk_nope_head_dim + v) * 2;
  attention += std::max(absorbed, naive) + 16 * align;

  // MLP of one layer: the dense one, or the MoE layer's own scratch.
  int64_t mlp = QuantBytes(t, d) + tp * 2 * c.intermediate_size * 2 + tp * c.intermediate_size * 2 +
                QuantBytes(t, c.intermediate_size) + 8 * align;
  for (const CudaLayerWeights& layer : weights.layers) {
    if (layer.moe != nullptr) {
      mlp = std::max<int64_t>(mlp, static_cast<int64_t>(layer.moe->ScratchBytes(t)));
    }
  }
  for (const CudaMtpWeights& module : weights.mtp) {
    if (module.block.moe != nullptr) {
      mlp = std::max<int64_t>(mlp, static_cast<int64_t>(module.block.moe->ScratchBytes(t)));
    }
  }
  const int64_t total = step + std::max(attention, mlp);
  return static_cast<size_t>(total + total / 8 + (int64_t{16} << 20));
}

absl::StatusOr<std::unique_ptr<DeepseekModelCuda>> DeepseekModelCuda::Create(
    std::unique_ptr<CudaContext> context, std::unique_ptr<CublasLtGemm> gemm, ModelConfig config,
    CudaModelWeights weights, int64_t num_kv_blocks) {
  if (config.kv_lora_rank != kMlaVDim || config.qk_rope_head_dim != kMhaRopeDim ||
      config.qk_nope_head_dim != kMhaNopeDim || config.v_head_dim != kMhaVDim) {
    return absl::UnimplementedError(absl::StrCat(
        "the CUDA MLA kernels are built for DeepSeek's geometry (kv_lora_rank 512, rope 64, nope "
        "128, v 128); config.json has ",
        config.kv_lora_rank, "/", config.qk_rope_head_dim, "/", config.qk_nope_head_dim, "/",
        config.v_head_dim));
  }
  if (weights.lm_head.fp8) {
    return absl::UnimplementedError("an FP8 lm_head is not supported by the CUDA backend");
  }
  if (num_kv_blocks < 1) {
    return absl::InvalidArgumentError(absl::StrCat("num_kv_blocks=", num_kv_blocks));
  }
  const int64_t layers = config.num_hidden_layers;
  const int64_t experts = config.n_routed_experts;
  auto model = std::unique_ptr<DeepseekModelCuda>(new DeepseekModelCuda(
      std::move(context), std::move(gemm), std::move(config), std::move(weights)));
  model->num_kv_blocks_ = num_kv_blocks;
  MOESERVE_ASSIGN_OR_RETURN(
      model->kv_pages_,
      DeviceBuffer::Allocate(static_cast<size_t>(
          num_kv_blocks * KvBytesPerBlock(model->config_, model->num_mtp_modules()))));
  // Zeroed so a page read before it is written holds zeros, never NaN.
  MOESERVE_RETURN_IF_ERROR(model->kv_pages_.Fill(0));
  MOESERVE_ASSIGN_OR_RETURN(model->expert_token_counts_,
                            DeviceBuffer::Allocate(static_cast<size_t>(layers * experts) * 8));
  MOESERVE_RETURN_IF_ERROR(model->expert_token_counts_.Fill(0));
  for (int64_t l = 0; l < layers; ++l) {
    const CudaLayerWeights& layer = model->weights_.layers[static_cast<size_t>(l)];
    if (layer.moe != nullptr) {
      layer.moe->set_expert_token_counts(model->expert_token_counts_.as<int64_t>() + l * experts);
    }
  }
  // Uploads and fills ran on the legacy stream; the model's stream does not wait for it.
  MOESERVE_CUDA_RETURN_IF_ERROR(cudaDeviceSynchronize());
  return model;
}

uint16_t* DeepseekModelCuda::layer_pages(int64_t layer) const {
  return kv_pages_.as<uint16_t>() + layer * num_kv_blocks_ * kKvBlockSize * config_.kv_cache_dim();
}

std::vector<int64_t> DeepseekModelCuda::expert_token_counts() const {
  std::vector<int64_t> counts(
      static_cast<size_t>(config_.num_hidden_layers * config_.n_routed_experts), 0);
  const cudaStream_t stream = static_cast<cudaStream_t>(context_->stream());
  if (cudaMemcpyAsync(counts.data(), expert_token_counts_.data(), counts.size() * 8,
                      cudaMemcpyDeviceToHost, stream) != cudaSuccess ||
      cudaStreamSynchronize(stream) != cudaSuccess) {
    return std::vector<int64_t>(counts.size(), 0);  // statistics only; the next step reports
  }
  return counts;
}

absl::Status DeepseekModelCuda::Linear(const CudaLinear& w, const uint16_t* x, int64_t rows,
                                       uint16_t* y) {
  if (!w.fp8) {
    return gemm_->Bf16(x, w.bf16(), y, GemmOutputType::kBf16, rows, w.out_features, w.in_features);
  }
  DeviceArena& arena = context_->arena();
  const int64_t padded = Fp8PaddedTokens(rows), k = w.in_features;
  MOESERVE_ASSIGN_OR_RETURN(uint8_t * xq, Take<uint8_t>(arena, padded * k));
  MOESERVE_ASSIGN_OR_RETURN(float* xs, Take<float>(arena, CeilDiv(k, kFp8BlockSize) * padded));
  MOESERVE_RETURN_IF_ERROR(CudaLaunchStatus(
      LaunchQuantizeActivationsFp8Bf16(x, rows, padded, k, xq, xs, context_->stream()),
      "LaunchQuantizeActivationsFp8Bf16"));
  return gemm_->Fp8BlockScaled(xq, xs, w.fp8_view(), y, padded);
}

absl::Status DeepseekModelCuda::Mlp(const CudaMlp& mlp, const uint16_t* x, int64_t rows,
                                    uint16_t* out) {
  DeviceArena& arena = context_->arena();
  const int64_t padded = Fp8PaddedTokens(rows), width = mlp.width();
  MOESERVE_ASSIGN_OR_RETURN(uint16_t * gate_up, Take<uint16_t>(arena, padded * 2 * width));
  MOESERVE_ASSIGN_OR_RETURN(uint16_t * activated, Take<uint16_t>(arena, padded * width));
  MOESERVE_RETURN_IF_ERROR(Linear(mlp.gate_up, x, rows, gate_up));
  MOESERVE_RETURN_IF_ERROR(CudaLaunchStatus(
      LaunchSiluMulBf16(gate_up, rows, width, activated, context_->stream()), "LaunchSiluMulBf16"));
  return Linear(mlp.down, activated, rows, out);
}

absl::Status DeepseekModelCuda::AttendAbsorbed(const CudaMlaWeights& w, const StepInputs& in,
                                               const uint16_t* q, const uint16_t* pages,
                                               uint16_t* attn) {
  const AttentionOrderedBatch& o = in.ordered;
  const int64_t n = o.num_absorbed_tokens, heads = w.num_heads;
  if (n == 0) return absl::OkStatus();
  DeviceArena& arena = context_->arena();
  const MlaAbsorbDims dims{.num_heads = heads};
  MOESERVE_ASSIGN_OR_RETURN(uint16_t * q_mqa, Take<uint16_t>(arena, n * heads * kMlaKvDim));
  MOESERVE_ASSIGN_OR_RETURN(uint16_t * o_lat, Take<uint16_t>(arena, n * heads * kMlaVDim));
  MOESERVE_RETURN_IF_ERROR(MlaAbsorbQuery(*gemm_, dims, q, w.w_uk_t.as<uint16_t>(), n, q_mqa));

  const MlaDecodePlan plan = PlanMlaDecode(o.num_absorbed_seqs, heads, n, in.max_absorbed_queries,
                                           in.max_absorbed_len, context_->device().num_sms);
  void* workspace = nullptr;
  if (plan.workspace_bytes > 0) {
    MOESERVE_ASSIGN_OR_RETURN(workspace, arena.Allocate(plan.workspace_bytes));
  }
  const MlaDecodeCudaArgs args{.q = q_mqa,
                               .pages = pages,
                               .block_tables = in.block_tables,
                               .query_start_loc = in.query_start_loc,
                               .seq_lens = in.seq_lens,
                               .num_pages = num_kv_blocks_,
                               .max_blocks_per_seq = o.batch.max_blocks_per_seq,
                               .num_seqs = o.num_absorbed_seqs,
                               .num_heads = heads,
                               .num_tokens = n,
                               .softmax_scale = static_cast<float>(config_.SoftmaxScale()),
                               .out = o_lat,
                               .lse = nullptr};
  MOESERVE_RETURN_IF_ERROR(CudaLaunchStatus(
      LaunchMlaDecodeBf16(args, plan, workspace, context_->stream()), "LaunchMlaDecodeBf16"));
  return MlaAbsorbOutput(*gemm_, dims, o_lat, w.w_uv.as<uint16_t>(), n, attn);
}

absl::Status DeepseekModelCuda::AttendNaive(const CudaMlaWeights& w, const StepInputs& in,
                                            int64_t seq, const uint16_t* q, const uint16_t* pages,
                                            uint16_t* attn) {
  const ForwardBatch& b = in.ordered.batch;
  const int64_t ctx = b.seq_lens[seq], first = b.query_start_loc[seq];
  const int64_t heads = w.num_heads, kv = kMlaKvDim, rank = kMlaVDim;
  DeviceArena& arena = context_->arena();
  void* stream = context_->stream();
  MOESERVE_ASSIGN_OR_RETURN(uint16_t * latents, Take<uint16_t>(arena, ctx * kv));
  MOESERVE_ASSIGN_OR_RETURN(uint16_t * c_kv, Take<uint16_t>(arena, Fp8PaddedTokens(ctx) * rank));
  MOESERVE_ASSIGN_OR_RETURN(
      uint16_t * k_nope_v,
      Take<uint16_t>(arena, Fp8PaddedTokens(ctx) * heads * (kMhaNopeDim + kMhaVDim)));
  MOESERVE_RETURN_IF_ERROR(
      CudaLaunchStatus(LaunchGatherLatentCacheBf16(pages, num_kv_blocks_,
                                                   in.block_tables + seq * b.max_blocks_per_seq,
                                                   ctx, latents, stream),
                       "LaunchGatherLatentCacheBf16"));
  // kv_b_proj reads c_kv as a dense [ctx, 512] matrix; the gathered rows are 576 wide.
  MOESERVE_CUDA_RETURN_IF_ERROR(
      cudaMemcpy2DAsync(c_kv, rank * 2, latents, kv * 2, rank * 2, static_cast<size_t>(ctx),
                        cudaMemcpyDeviceToDevice, static_cast<cudaStream_t>(stream)));
  MOESERVE_RETURN_IF_ERROR(Linear(w.kv_b_proj, c_kv, ctx, k_nope_v));
  const MhaPrefillCudaArgs args{.q = q + first * heads * config_.qk_head_dim(),
                                .k_nope_v = k_nope_v,
                                .k_pe = latents + rank,
                                .k_pe_stride = kv,
                                .num_queries = b.num_new_tokens(seq),
                                .ctx = ctx,
                                .num_heads = heads,
                                .softmax_scale = static_cast<float>(config_.SoftmaxScale()),
                                .out = attn + first * heads * kMhaVDim};
  return CudaLaunchStatus(LaunchMhaPrefillBf16(args, stream), "LaunchMhaPrefillBf16");
}

absl::Status DeepseekModelCuda::Attention(const CudaMlaWeights& w, int64_t kv_layer,
                                          const StepInputs& in, const uint16_t* x, uint16_t* out) {
  DeviceArena& arena = context_->arena();
  void* stream = context_->stream();
  const int64_t t = in.num_tokens, padded = Fp8PaddedTokens(t), heads = w.num_heads;
  const int64_t qk = config_.qk_head_dim(), kv = config_.kv_cache_dim();
  const int64_t nope = config_.qk_nope_head_dim, rope = config_.qk_rope_head_dim;

  MOESERVE_ASSIGN_OR_RETURN(uint16_t * q, Take<uint16_t>(arena, padded * heads * qk));
  if (w.q_proj.has_value()) {
    MOESERVE_RETURN_IF_ERROR(Linear(*w.q_proj, x, t, q));
  } else {
    const int64_t q_rank = w.q_a_proj->out_features;
    MOESERVE_ASSIGN_OR_RETURN(uint16_t * q_latent, Take<uint16_t>(arena, padded * q_rank));
    MOESERVE_ASSIGN_OR_RETURN(uint16_t * q_normed, Take<uint16_t>(arena, padded * q_rank));
    MOESERVE_RETURN_IF_ERROR(Linear(*w.q_a_proj, x, t, q_latent));
    MOESERVE_RETURN_IF_ERROR(
        CudaLaunchStatus(LaunchRmsNormBf16(q_latent, w.q_a_norm.as<uint16_t>(), kLatentNormEps, t,
                                           q_rank, q_normed, stream),
                         "LaunchRmsNormBf16(q_a_layernorm)"));
    MOESERVE_RETURN_IF_ERROR(Linear(*w.q_b_proj, q_normed, t, q));
  }
  MOESERVE_ASSIGN_OR_RETURN(uint16_t * kv_a, Take<uint16_t>(arena, padded * kv));
  MOESERVE_RETURN_IF_ERROR(Linear(w.kv_a_proj, x, t, kv_a));

  uint16_t* pages = layer_pages(kv_layer);
  const float* inv_freq = weights_.rope_inv_freq.as<float>();
  const float scaling = weights_.rope_attention_scaling;
  MOESERVE_RETURN_IF_ERROR(CudaLaunchStatus(
      LaunchWriteLatentCacheFusedBf16(kv_a, kv, w.kv_a_norm.as<uint16_t>(), kLatentNormEps,
                                      inv_freq, scaling, in.positions, in.slot_mapping, t,
                                      num_kv_blocks_ * kKvBlockSize, pages, stream),
      "LaunchWriteLatentCacheFusedBf16"));
  MOESERVE_RETURN_IF_ERROR(
      CudaLaunchStatus(LaunchRopeInterleavedBf16(inv_freq, rope, scaling, in.positions, t, heads,
                                                 heads * qk, qk, q + nope, stream),
                       "LaunchRopeInterleavedBf16(q_pe)"));

  MOESERVE_ASSIGN_OR_RETURN(uint16_t * attn,
                            Take<uint16_t>(arena, padded * heads * config_.v_head_dim));
  const size_t mark = arena.used_bytes();
  MOESERVE_RETURN_IF_ERROR(AttendAbsorbed(w, in, q, pages, attn));
  for (int64_t s = in.ordered.num_absorbed_seqs; s < in.num_seqs; ++s) {
    arena.RewindTo(mark);
    MOESERVE_RETURN_IF_ERROR(AttendNaive(w, in, s, q, pages, attn));
  }
  return Linear(w.o_proj, attn, t, out);
}

absl::Status DeepseekModelCuda::PrepareStep(const ForwardBatch& batch,
                                            const ForwardOptions& options, StepInputs& in) {
  if (!options.quantize_activations) {
    return absl::InvalidArgumentError(
        "the CUDA backend always quantizes the inputs of FP8 linears (quantize_activations)");
  }
  MOESERVE_ASSIGN_OR_RETURN(in.ordered, OrderForAttention(batch, options));
  const ForwardBatch& b = in.ordered.batch;
  in.num_tokens = b.num_tokens();
  in.num_seqs = b.num_seqs();
  for (int64_t s = 0; s < in.ordered.num_absorbed_seqs; ++s) {
    in.max_absorbed_queries = std::max<int64_t>(in.max_absorbed_queries, b.num_new_tokens(s));
    in.max_absorbed_len = std::max<int64_t>(in.max_absorbed_len, b.seq_lens[s]);
  }
  DeviceArena& arena = context_->arena();
  arena.Reset();
  void* stream = context_->stream();
  const cudaStream_t cuda_stream = static_cast<cudaStream_t>(stream);

  // The step's inputs: packed into one host buffer, copied with one cudaMemcpyAsync.
  struct Piece {
    const void* data;
    size_t bytes;
    const void** device;
  };
  const Piece pieces[] = {
      {b.token_ids.data(), b.token_ids.size() * 4, reinterpret_cast<const void**>(&in.token_ids)},
      {b.positions.data(), b.positions.size() * 4, reinterpret_cast<const void**>(&in.positions)},
      {b.slot_mapping.data(), b.slot_mapping.size() * 8,
       reinterpret_cast<const void**>(&in.slot_mapping)},
      {b.query_start_loc.data(), b.query_start_loc.size() * 4,
       reinterpret_cast<const void**>(&in.query_start_loc)},
      {b.seq_lens.data(), b.seq_lens.size() * 4, reinterpret_cast<const void**>(&in.seq_lens)},
      {b.block_tables.data(), b.block_tables.size() * 4,
       reinterpret_cast<const void**>(&in.block_tables)},
      {in.ordered.logit_rows.data(), in.ordered.logit_rows.size() * 4,
       reinterpret_cast<const void**>(&in.logit_rows)},
  };
  size_t total = 0;
  for (const Piece& p : pieces) total += AlignUp(static_cast<int64_t>(p.bytes), 16);
  staging_.assign(total, 0);
  MOESERVE_ASSIGN_OR_RETURN(uint8_t * device_inputs,
                            Take<uint8_t>(arena, static_cast<int64_t>(total)));
  size_t offset = 0;
  for (const Piece& p : pieces) {
    if (p.bytes > 0) std::memcpy(staging_.data() + offset, p.data, p.bytes);
    *p.device = device_inputs + offset;
    offset += AlignUp(static_cast<int64_t>(p.bytes), 16);
  }
  MOESERVE_CUDA_RETURN_IF_ERROR(
      cudaMemcpyAsync(device_inputs, staging_.data(), total, cudaMemcpyHostToDevice, cuda_stream));
  return absl::OkStatus();
}

absl::Status DeepseekModelCuda::RunLayer(const CudaLayerWeights& layer, int64_t kv_layer,
                                         const StepInputs& in, bool first, size_t mark, uint16_t* h,
                                         uint16_t* normed, uint16_t* branch) {
  DeviceArena& arena = context_->arena();
  void* stream = context_->stream();
  const int64_t t = in.num_tokens, d = config_.hidden_size;
  const float eps = static_cast<float>(config_.rms_norm_eps);
  arena.RewindTo(mark);
  // h += branch (the previous layer's MLP), then normed = RMSNorm(h).
  const int launch =
      first ? LaunchRmsNormBf16(h, layer.input_norm.as<uint16_t>(), eps, t, d, normed, stream)
            : LaunchFusedAddRmsNormBf16(h, branch, layer.input_norm.as<uint16_t>(), eps, t, d,
                                        normed, stream);
  MOESERVE_RETURN_IF_ERROR(CudaLaunchStatus(launch, "input_layernorm"));
  MOESERVE_RETURN_IF_ERROR(Attention(layer.attention, kv_layer, in, normed, branch));
  MOESERVE_RETURN_IF_ERROR(AllReduceRows(reduce_attention_, branch, t * d));
  arena.RewindTo(mark);
  MOESERVE_RETURN_IF_ERROR(CudaLaunchStatus(
      LaunchFusedAddRmsNormBf16(h, branch, layer.post_attention_norm.as<uint16_t>(), eps, t, d,
                                normed, stream),
      "post_attention_layernorm"));
  if (layer.moe != nullptr) {
    MOESERVE_RETURN_IF_ERROR(layer.moe->Forward(normed, t, branch));
    return AllReduceRows(reduce_moe_, branch, t * d);
  }
  MOESERVE_RETURN_IF_ERROR(Mlp(*layer.dense_mlp, normed, t, branch));
  return AllReduceRows(reduce_attention_, branch, t * d);
}

absl::StatusOr<DeepseekModelCuda::DeviceLogits> DeepseekModelCuda::Head(const StepInputs& in,
                                                                        const CudaLinear& head,
                                                                        const uint16_t* normed,
                                                                        uint16_t* final_rows) {
  const int64_t t = in.num_tokens, rows = static_cast<int64_t>(in.ordered.logit_rows.size());
  const int64_t d = config_.hidden_size;
  MOESERVE_ASSIGN_OR_RETURN(float* logits,
                            Take<float>(context_->arena(), rows * config_.vocab_size));
  // The rows whose logits are wanted, in the caller's order (a gather over the normed rows).
  MOESERVE_RETURN_IF_ERROR(CudaLaunchStatus(
      LaunchEmbeddingGatherBf16(normed, t, d, in.logit_rows, rows, final_rows, context_->stream()),
      "gather logit rows"));
  MOESERVE_RETURN_IF_ERROR(gemm_->Bf16(final_rows, head.bf16(), logits, GemmOutputType::kF32, rows,
                                       config_.vocab_size, d));
  return DeviceLogits{logits, rows};
}

absl::StatusOr<DeepseekModelCuda::DeviceLogits> DeepseekModelCuda::RunStep(
    const StepInputs& in, const uint16_t** final_hidden) {
  const int64_t t = in.num_tokens, rows = static_cast<int64_t>(in.ordered.logit_rows.size());
  DeviceArena& arena = context_->arena();
  void* stream = context_->stream();
  const int64_t d = config_.hidden_size, padded = Fp8PaddedTokens(t);
  const uint16_t* embed = weights_.embed_tokens.as<uint16_t>();
  MOESERVE_ASSIGN_OR_RETURN(uint16_t * h, Take<uint16_t>(arena, padded * d));
  MOESERVE_ASSIGN_OR_RETURN(uint16_t * normed, Take<uint16_t>(arena, padded * d));
  MOESERVE_ASSIGN_OR_RETURN(uint16_t * branch, Take<uint16_t>(arena, padded * d));
  MOESERVE_ASSIGN_OR_RETURN(uint16_t * final_rows,
                            Take<uint16_t>(arena, Fp8PaddedTokens(rows) * d));
  MOESERVE_RETURN_IF_ERROR(CudaLaunchStatus(
      LaunchEmbeddingGatherBf16(embed, config_.vocab_size, d, in.token_ids, t, h, stream),
      "LaunchEmbeddingGatherBf16"));

  const size_t mark = arena.used_bytes();
  for (int64_t l = 0; l < config_.num_hidden_layers; ++l) {
    MOESERVE_RETURN_IF_ERROR(RunLayer(weights_.layers[static_cast<size_t>(l)], l, in,
                                      /*first=*/l == 0, mark, h, normed, branch));
  }
  arena.RewindTo(mark);
  MOESERVE_RETURN_IF_ERROR(CudaLaunchStatus(
      LaunchFusedAddRmsNormBf16(h, branch, weights_.final_norm.as<uint16_t>(),
                                static_cast<float>(config_.rms_norm_eps), t, d, normed, stream),
      "norm"));
  if (final_hidden != nullptr) *final_hidden = normed;
  return Head(in, weights_.lm_head, normed, final_rows);
}

absl::StatusOr<DeepseekModelCuda::DeviceStep> DeepseekModelCuda::RunMainStep(const StepInputs& in) {
  const uint16_t* hidden = nullptr;
  MOESERVE_ASSIGN_OR_RETURN(DeviceLogits logits, RunStep(in, &hidden));
  return DeviceStep{logits, hidden};
}

absl::StatusOr<DeepseekModelCuda::DeviceLogits> DeepseekModelCuda::ForwardOnDevice(
    const ForwardBatch& batch, const ForwardOptions& options) {
  MOESERVE_RETURN_IF_ERROR(ValidateForwardBatch(batch, config_.vocab_size, num_kv_blocks_));
  if (batch.num_tokens() == 0) return DeviceLogits{nullptr, 0};
  StepInputs in;
  const std::optional<GraphKey> key = GraphFor(/*module=*/-1, batch, options);
  MOESERVE_RETURN_IF_ERROR(PrepareStepFor(key, batch, options, in));
  MOESERVE_ASSIGN_OR_RETURN(DeviceStep step,
                            RunStepFor(key, batch.num_seqs(), [&] { return RunMainStep(in); }));
  return step.logits;
}

std::optional<DeepseekModelCuda::GraphKey> DeepseekModelCuda::GraphFor(
    int64_t module, const ForwardBatch& batch, const ForwardOptions& options) const {
  const int64_t q = UniformNewTokens(batch);
  if (q == 0 || q > kMaxGraphTokensPerSeq || !UsesAbsorbedMla(options.mla_form, q)) {
    return std::nullopt;
  }
  const int64_t rows = UniformLogitsPerSequence(batch, options);
  const int64_t size = GraphBatchSizeFor(graph_options_.batch_sizes, batch.num_seqs());
  if (rows == 0 || size == 0 || batch.max_blocks_per_seq > graph_table_width()) {
    return std::nullopt;
  }
  const int64_t max_tokens =
      graph_options_.max_num_batched_tokens > 0
          ? std::min(graph_options_.max_num_batched_tokens, MoeLayerCuda::kGroupedMaxTokens)
          : MoeLayerCuda::kGroupedMaxTokens;
  if (size * q > max_tokens ||
      (graph_options_.max_num_seqs > 0 && size > graph_options_.max_num_seqs)) {
    return std::nullopt;
  }
  return GraphKey{.module = module, .num_seqs = size, .tokens_per_seq = q, .logits_per_seq = rows};
}

absl::Status DeepseekModelCuda::PrepareStepFor(const std::optional<GraphKey>& key,
                                               const ForwardBatch& batch,
                                               const ForwardOptions& options, StepInputs& in) {
  if (!key.has_value()) return PrepareStep(batch, options, in);
  MOESERVE_RETURN_IF_ERROR(PrepareStep(PadDecodeBatch(batch, key->num_seqs, graph_table_width()),
                                       PadOptions(options, key->num_seqs), in));
  // The captured split plan must serve every later step: plan for the longest context.
  in.max_absorbed_len = graph_options_.max_model_len;
  return absl::OkStatus();
}

absl::StatusOr<DeepseekModelCuda::DeviceStep> DeepseekModelCuda::RunStepFor(
    const std::optional<GraphKey>& key, int64_t num_seqs,
    const std::function<absl::StatusOr<DeviceStep>()>& body) {
  if (!key.has_value()) {
    ++forward_counts_.eager;
    return body();
  }
  MOESERVE_ASSIGN_OR_RETURN(DeviceStep step, RunCaptured(*key, body));
  step.logits.rows = num_seqs * key->logits_per_seq;  // the pads' rows come after the real ones
  return step;
}

absl::StatusOr<DeepseekModelCuda::DeviceStep> DeepseekModelCuda::RunCaptured(
    const GraphKey& key, const std::function<absl::StatusOr<DeviceStep>()>& body) {
  DeviceArena& arena = context_->arena();
  const cudaStream_t stream = static_cast<cudaStream_t>(context_->stream());
  // A step since the last capture grew the FP8 GEMM scratch: every graph still writes through
  // the freed buffer. Ranks run the same shapes, so all of them see it at the same step.
  const auto drop_graphs_on_new_scratch = [&] {
    if (gemm_->scratch_generation() == graphs_scratch_generation_) return;
    DestroyGraphs();
    graphs_scratch_generation_ = gemm_->scratch_generation();
  };
  drop_graphs_on_new_scratch();
  const size_t inputs_end = arena.used_bytes();
  const auto found = graphs_.find(key);
  const bool capture =
      found == graphs_.end() || (found->second.exec == nullptr && !found->second.eager_only);
  if (capture) {
    // Eagerly once: creates the cuBLASLt plans and the scratch and reports errors outside the
    // capture (it writes the same latents the replay writes again).
    MOESERVE_RETURN_IF_ERROR(body().status());
    arena.RewindTo(inputs_end);
    drop_graphs_on_new_scratch();
  }
  StepGraph& graph = graphs_[key];
  if (capture) {
    MOESERVE_CUDA_RETURN_IF_ERROR(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal));
    absl::StatusOr<DeviceStep> captured = body();
    cudaGraph_t captured_graph = nullptr;
    const cudaError_t end = cudaStreamEndCapture(stream, &captured_graph);
    cudaGraphExec_t exec = nullptr;
    absl::Status status =
        !captured.ok() ? captured.status() : CudaStatus(end, "cudaStreamEndCapture");
    if (status.ok())
      status = CudaStatus(cudaGraphInstantiate(&exec, captured_graph, 0), "cudaGraphInstantiate");
    if (captured_graph != nullptr) (void)cudaGraphDestroy(captured_graph);
    // Every rank must make the same choice, or one would replay collectives the others never
    // join: a capture that failed anywhere makes this key eager on every rank.
    MOESERVE_ASSIGN_OR_RETURN(const bool everyone, EveryRankAgrees(status.ok()));
    if (everyone) {
      graph = {exec, *captured, arena.used_bytes(), false};
    } else {
      // A failed capture leaves its error as the runtime's last error, which the eager run
      // below would otherwise report from its first launch.
      (void)cudaGetLastError();
      if (exec != nullptr) (void)cudaGraphExecDestroy(exec);
      graph.eager_only = true;
      const std::string what =
          absl::StrCat(key.module < 0 ? "main" : absl::StrCat("MTP module ", key.module),
                       " step of ", key.num_seqs, " sequences x ", key.tokens_per_seq, " tokens");
      capture_failures_.push_back(
          status.ok()
              ? absl::AbortedError(absl::StrCat("another rank failed to capture the ", what))
              : absl::Status(status.code(), absl::StrCat(what, ": ", status.message())));
    }
  }
  if (graph.eager_only) {
    ++forward_counts_.eager;
    arena.RewindTo(inputs_end);
    return body();
  }
  ++forward_counts_.graphed;
  MOESERVE_CUDA_RETURN_IF_ERROR(cudaGraphLaunch(static_cast<cudaGraphExec_t>(graph.exec), stream));
  arena.AdvanceTo(graph.arena_end);
  return graph.outputs;
}

absl::Status DeepseekModelCuda::SetRankGroup(Communicator* comm, const ParallelConfig& parallel) {
  MOESERVE_RETURN_IF_ERROR(ValidateParallelConfig(parallel, config_));
  if (parallel.world_size() > 1 &&
      (comm == nullptr || comm->world_size() != parallel.world_size())) {
    return absl::InvalidArgumentError(absl::StrCat("SetRankGroup: a group of ",
                                                   parallel.world_size(),
                                                   " ranks needs a communicator of as many"));
  }
  DestroyGraphs();  // captured without the collectives
  comm_ = parallel.world_size() > 1 ? comm : nullptr;
  reduce_attention_ = parallel.tensor_parallel_size > 1;
  reduce_moe_ = parallel.world_size() > 1;
  return absl::OkStatus();
}

absl::StatusOr<bool> DeepseekModelCuda::EveryRankAgrees(bool mine) {
  if (comm_ == nullptr) return mine;
  if (agreement_.size_bytes() == 0) {
    MOESERVE_ASSIGN_OR_RETURN(agreement_, DeviceBuffer::Allocate(sizeof(int32_t)));
  }
  const int32_t failed = mine ? 0 : 1;
  const cudaStream_t stream = static_cast<cudaStream_t>(context_->stream());
  MOESERVE_CUDA_RETURN_IF_ERROR(
      cudaMemcpyAsync(agreement_.data(), &failed, sizeof(failed), cudaMemcpyHostToDevice, stream));
  MOESERVE_RETURN_IF_ERROR(comm_->AllReduceSum(agreement_.data(), 1, CommDataType::kInt32));
  int32_t failures = 0;
  MOESERVE_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(&failures, agreement_.data(), sizeof(failures),
                                                cudaMemcpyDeviceToHost, stream));
  MOESERVE_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream));
  return failures == 0;
}

absl::Status DeepseekModelCuda::AllReduceRows(bool needed, uint16_t* rows, int64_t count) {
  if (!needed || comm_ == nullptr) return absl::OkStatus();
  return comm_->AllReduceSum(rows, count, CommDataType::kBfloat16);
}

absl::Status DeepseekModelCuda::SetCudaGraphs(CudaGraphOptions options) {
  for (size_t i = 0; i < options.batch_sizes.size(); ++i) {
    const int64_t size = options.batch_sizes[i];
    if (size < 1 || size > MoeLayerCuda::kGroupedMaxTokens ||
        (i > 0 && size <= options.batch_sizes[i - 1])) {
      return absl::InvalidArgumentError(
          absl::StrCat("CUDA graph batch sizes must ascend within [1, ",
                       MoeLayerCuda::kGroupedMaxTokens, "]; got ", size, " at index ", i));
    }
  }
  if (!options.batch_sizes.empty() && options.max_model_len < 1) {
    return absl::InvalidArgumentError("CUDA graphs need max_model_len");
  }
  DestroyGraphs();
  graph_options_ = std::move(options);
  return absl::OkStatus();
}

void DeepseekModelCuda::DestroyGraphs() {
  for (auto& [key, graph] : graphs_) {
    if (graph.exec != nullptr) (void)cudaGraphExecDestroy(static_cast<cudaGraphExec_t>(graph.exec));
  }
  graphs_.clear();
}

DeepseekModelCuda::~DeepseekModelCuda() { DestroyGraphs(); }

absl::StatusOr<std::vector<float>> DeepseekModelCuda::Forward(const ForwardBatch& batch,
                                                              const ForwardOptions& options) {
  MOESERVE_ASSIGN_OR_RETURN(DeviceLogits logits, ForwardOnDevice(batch, options));
  return LogitsToHost(logits);
}

absl::StatusOr<std::vector<float>> DeepseekModelCuda::LogitsToHost(const DeviceLogits& logits) {
  std::vector<float> host(static_cast<size_t>(logits.rows * config_.vocab_size));
  const cudaStream_t stream = static_cast<cudaStream_t>(context_->stream());
  if (!host.empty()) {
    MOESERVE_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(
        host.data(), logits.data, host.size() * sizeof(float), cudaMemcpyDeviceToHost, stream));
  }
  MOESERVE_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream));
  return host;
}

absl::StatusOr<std::vector<int32_t>> DeepseekModelCuda::ForwardArgmax(
    const ForwardBatch& batch, const ForwardOptions& options) {
  ForwardOptions last_tokens = options;
  last_tokens.logits_for = LogitsFor::kLastTokenOfEachSequence;
  MOESERVE_ASSIGN_OR_RETURN(DeviceLogits logits, ForwardOnDevice(batch, last_tokens));
  std::vector<int32_t> host(static_cast<size_t>(logits.rows));
  if (host.empty()) return host;
  const cudaStream_t stream = static_cast<cudaStream_t>(context_->stream());
  MOESERVE_ASSIGN_OR_RETURN(int32_t * ids, Take<int32_t>(context_->arena(), logits.rows));
  MOESERVE_RETURN_IF_ERROR(
      CudaLaunchStatus(LaunchArgmaxF32(logits.data, logits.rows, config_.vocab_size, ids, stream),
                       "LaunchArgmaxF32"));
  MOESERVE_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(host.data(), ids, host.size() * sizeof(int32_t),
                                                cudaMemcpyDeviceToHost, stream));
  MOESERVE_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream));
  return host;
}

absl::StatusOr<std::vector<float>> DeepseekModelCuda::HiddenToHost(
    const uint16_t* rows, int64_t device_rows, int64_t count, const std::vector<int32_t>* order) {
  const int64_t d = config_.hidden_size;
  std::vector<uint16_t> bf16(static_cast<size_t>(device_rows * d));
  const cudaStream_t stream = static_cast<cudaStream_t>(context_->stream());
  if (!bf16.empty()) {
    MOESERVE_CUDA_RETURN_IF_ERROR(
        cudaMemcpyAsync(bf16.data(), rows, bf16.size() * 2, cudaMemcpyDeviceToHost, stream));
  }
  MOESERVE_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream));
  std::vector<float> out(static_cast<size_t>(count * d));
  for (int64_t i = 0; i < count; ++i) {
    const int64_t from = order != nullptr ? (*order)[static_cast<size_t>(i)] : i;
    for (int64_t j = 0; j < d; ++j) out[i * d + j] = Bf16ToFloat(bf16[from * d + j]);
  }
  return out;
}

absl::StatusOr<ForwardOutput> DeepseekModelCuda::ForwardWithHidden(const ForwardBatch& batch,
                                                                   const ForwardOptions& options) {
  MOESERVE_RETURN_IF_ERROR(ValidateForwardBatch(batch, config_.vocab_size, num_kv_blocks_));
  ForwardOutput out;
  if (batch.num_tokens() == 0) return out;
  StepInputs in;
  const std::optional<GraphKey> key = GraphFor(/*module=*/-1, batch, options);
  MOESERVE_RETURN_IF_ERROR(PrepareStepFor(key, batch, options, in));
  MOESERVE_ASSIGN_OR_RETURN(DeviceStep step,
                            RunStepFor(key, batch.num_seqs(), [&] { return RunMainStep(in); }));
  MOESERVE_ASSIGN_OR_RETURN(out.logits, LogitsToHost(step.logits));
  MOESERVE_ASSIGN_OR_RETURN(out.hidden, HiddenToHost(step.hidden, in.num_tokens, batch.num_tokens(),
                                                     &in.ordered.new_index));
  return out;
}

absl::StatusOr<ForwardOutput> DeepseekModelCuda::ForwardMtp(int64_t module,
                                                            const ForwardBatch& batch,
                                                            absl::Span<const float> prev_hidden,
                                                            const ForwardOptions& options) {
  if (module < 0 || module >= num_mtp_modules()) {
    return absl::InvalidArgumentError(
        absl::StrCat("MTP module ", module, " is not loaded (", num_mtp_modules(), " are)"));
  }
  MOESERVE_RETURN_IF_ERROR(ValidateForwardBatch(batch, config_.vocab_size, num_kv_blocks_));
  const int64_t d = config_.hidden_size;
  if (static_cast<int64_t>(prev_hidden.size()) != batch.num_tokens() * d) {
    return absl::InvalidArgumentError(absl::StrCat("MTP prev_hidden has ", prev_hidden.size(),
                                                   " values; expected ", batch.num_tokens() * d));
  }
  ForwardOutput out;
  if (batch.num_tokens() == 0) return out;
  const std::vector<int32_t>& asked = options.logits_per_sequence;
  if (options.logits_for == LogitsFor::kLastTokenOfEachSequence &&
      std::find(asked.begin(), asked.end(), 0) != asked.end()) {
    // Sequences that want only their latents written: the block runs over every position here
    // anyway, so their last rows are computed (the shapes the graphs were captured for) and
    // dropped.
    MOESERVE_RETURN_IF_ERROR(LogitRows(batch, options, ZeroLogitRows::kAllowed).status());
    MOESERVE_ASSIGN_OR_RETURN(
        ForwardOutput widened,
        ForwardMtp(module, batch, prev_hidden, WithLogitRowForEverySequence(options)));
    return KeepAskedRows(std::move(widened), options, config_.vocab_size, d);
  }
  const std::optional<GraphKey> key = GraphFor(module, batch, options);
  if (!key.has_value()) {
    MOESERVE_ASSIGN_OR_RETURN(std::optional<ForwardOutput> grouped,
                              ForwardMtpInGroups(module, batch, prev_hidden, options));
    if (grouped.has_value()) return *std::move(grouped);
  }
  StepInputs in;
  MOESERVE_RETURN_IF_ERROR(PrepareStepFor(key, batch, options, in));
  // The previous depth's states, moved into attention order, as BF16 (the residual stream's
  // type on this backend); a pad's are zeros. An input of the step, uploaded before its work.
  const int64_t t = in.num_tokens;
  hidden_staging_.assign(static_cast<size_t>(t * d), 0);
  for (int64_t i = 0; i < batch.num_tokens(); ++i) {
    const int64_t to = in.ordered.new_index[static_cast<size_t>(i)];
    for (int64_t j = 0; j < d; ++j)
      hidden_staging_[to * d + j] = FloatToBf16(prev_hidden[i * d + j]);
  }
  MOESERVE_ASSIGN_OR_RETURN(uint16_t * prev,
                            Take<uint16_t>(context_->arena(), Fp8PaddedTokens(t) * d));
  MOESERVE_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(prev, hidden_staging_.data(),
                                                hidden_staging_.size() * 2, cudaMemcpyHostToDevice,
                                                static_cast<cudaStream_t>(context_->stream())));
  MOESERVE_ASSIGN_OR_RETURN(DeviceStep step, RunStepFor(key, batch.num_seqs(), [&] {
                              return RunMtpStep(module, in, prev);
                            }));
  MOESERVE_ASSIGN_OR_RETURN(out.logits, LogitsToHost(step.logits));
  MOESERVE_ASSIGN_OR_RETURN(out.hidden,
                            HiddenToHost(step.hidden, step.logits.rows, step.logits.rows, nullptr));
  return out;
}

absl::StatusOr<std::optional<ForwardOutput>> DeepseekModelCuda::ForwardMtpInGroups(
    int64_t module, const ForwardBatch& batch, absl::Span<const float> prev_hidden,
    const ForwardOptions& options) {
  if (options.logits_for != LogitsFor::kLastTokenOfEachSequence ||
      !options.logits_per_sequence.empty()) {
    return std::nullopt;
  }
  std::map<int64_t, std::vector<int64_t>> groups;  // new tokens -> the sequences with as many
  for (int64_t s = 0; s < batch.num_seqs(); ++s) groups[batch.num_new_tokens(s)].push_back(s);
  if (groups.size() < 2) return std::nullopt;
  std::vector<ForwardBatch> parts;
  for (const auto& [tokens, seqs] : groups) {
    parts.push_back(SequencesOf(batch, seqs));
    if (!GraphFor(module, parts.back(), options).has_value()) return std::nullopt;
  }
  const int64_t d = config_.hidden_size, vocab = config_.vocab_size;
  ForwardOutput out;
  out.logits.resize(static_cast<size_t>(batch.num_seqs() * vocab));
  out.hidden.resize(static_cast<size_t>(batch.num_seqs() * d));
  size_t part = 0;
  for (const auto& [tokens, seqs] : groups) {
    std::vector<float> prev;
    for (const int64_t s : seqs) {
      prev.insert(prev.end(), prev_hidden.begin() + batch.query_start_loc[s] * d,
                  prev_hidden.begin() + batch.query_start_loc[s + 1] * d);
    }
    MOESERVE_ASSIGN_OR_RETURN(ForwardOutput group,
                              ForwardMtp(module, parts[part++], prev, options));
    for (size_t i = 0; i < seqs.size(); ++i) {
      std::copy_n(group.logits.begin() + static_cast<int64_t>(i) * vocab, vocab,
                  out.logits.begin() + seqs[i] * vocab);
      std::copy_n(group.hidden.begin() + static_cast<int64_t>(i) * d, d,
                  out.hidden.begin() + seqs[i] * d);
    }
  }
  return out;
}

absl::StatusOr<DeepseekModelCuda::DeviceStep> DeepseekModelCuda::RunMtpStep(int64_t module,
                                                                            const StepInputs& in,
                                                                            const uint16_t* prev) {
  const CudaMtpWeights& mtp = weights_.mtp[static_cast<size_t>(module)];
  const int64_t t = in.num_tokens, padded = Fp8PaddedTokens(t), d = config_.hidden_size;
  const int64_t rows = static_cast<int64_t>(in.ordered.logit_rows.size());
  DeviceArena& arena = context_->arena();
  void* stream = context_->stream();
  const cudaStream_t cuda_stream = static_cast<cudaStream_t>(stream);
  const float eps = static_cast<float>(config_.rms_norm_eps);
  MOESERVE_ASSIGN_OR_RETURN(uint16_t * embedded, Take<uint16_t>(arena, padded * d));
  MOESERVE_ASSIGN_OR_RETURN(uint16_t * joined, Take<uint16_t>(arena, padded * 2 * d));
  MOESERVE_ASSIGN_OR_RETURN(uint16_t * h, Take<uint16_t>(arena, padded * d));
  MOESERVE_ASSIGN_OR_RETURN(uint16_t * normed, Take<uint16_t>(arena, padded * d));
  MOESERVE_ASSIGN_OR_RETURN(uint16_t * branch, Take<uint16_t>(arena, padded * d));
  MOESERVE_ASSIGN_OR_RETURN(uint16_t * final_rows,
                            Take<uint16_t>(arena, Fp8PaddedTokens(rows) * d));

  // [enorm(embed(t_{i+1})) | hnorm(h_i)], the embedding zero at position 0 (deepseek_model.h),
  // which the gather decides on the device (a graph replays it for any positions).
  const DeviceBuffer& embed = mtp.embed_tokens ? *mtp.embed_tokens : weights_.embed_tokens;
  MOESERVE_RETURN_IF_ERROR(CudaLaunchStatus(
      LaunchMtpEmbeddingGatherBf16(embed.as<uint16_t>(), config_.vocab_size, d, in.token_ids,
                                   in.positions, t, embedded, stream),
      "LaunchMtpEmbeddingGatherBf16"));
  MOESERVE_RETURN_IF_ERROR(CudaLaunchStatus(
      LaunchRmsNormBf16(embedded, mtp.enorm.as<uint16_t>(), eps, t, d, normed, stream), "enorm"));
  MOESERVE_RETURN_IF_ERROR(CudaLaunchStatus(
      LaunchRmsNormBf16(prev, mtp.hnorm.as<uint16_t>(), eps, t, d, branch, stream), "hnorm"));
  MOESERVE_CUDA_RETURN_IF_ERROR(cudaMemcpy2DAsync(joined, 2 * d * 2, normed, d * 2, d * 2,
                                                  static_cast<size_t>(t), cudaMemcpyDeviceToDevice,
                                                  cuda_stream));
  MOESERVE_CUDA_RETURN_IF_ERROR(cudaMemcpy2DAsync(joined + d, 2 * d * 2, branch, d * 2, d * 2,
                                                  static_cast<size_t>(t), cudaMemcpyDeviceToDevice,
                                                  cuda_stream));
  // Marked before eh_proj, so that a quantizing linear's scratch is not held through the block.
  const size_t mark = arena.used_bytes();
  MOESERVE_RETURN_IF_ERROR(Linear(mtp.eh_proj, joined, t, h));

  MOESERVE_RETURN_IF_ERROR(RunLayer(mtp.block, config_.num_hidden_layers + module, in,
                                    /*first=*/true, mark, h, normed, branch));
  arena.RewindTo(mark);
  MOESERVE_RETURN_IF_ERROR(CudaLaunchStatus(
      LaunchFusedAddRmsNormBf16(h, branch, mtp.head_norm.as<uint16_t>(), eps, t, d, normed, stream),
      "shared_head.norm"));
  MOESERVE_ASSIGN_OR_RETURN(DeviceLogits logits,
                            Head(in, mtp.head ? *mtp.head : weights_.lm_head, normed, final_rows));
  return DeviceStep{logits, final_rows};
}

}  // namespace moeserve::engine
