#include "engine/model/cuda_model_weights.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "engine/model/linear.h"
#include "engine/model/moe_layer.h"
#include "engine/ops/dtype.h"
#include "engine/ops/rope/rope.h"
#include "engine/status_macros.h"

namespace moeserve::engine {
namespace {

// The FP8 bytes and 128×128 scales of an FP8 linear: the checkpoint's own where the CPU loader
// kept them, otherwise quantized from the fp32 values (an FP8 checkpoint held dequantized
// requantizes to the same bytes wherever a block's amax reaches 448).
Fp8BlockWeight HostFp8(const LinearWeight& linear) {
  if (linear.format == WeightFormat::kFp8Block128) {
    return Fp8BlockWeight{linear.weight_fp8, linear.scale_inv};
  }
  return QuantizeFp8BlockWeight(DequantizeLinear(linear), linear.out_features, linear.in_features);
}

absl::StatusOr<Fp8MlpHostWeights> QuantizeMlp(const MlpWeights& mlp, const std::string& name) {
  if (!mlp.gate_up.fp8 || !mlp.down.fp8) {
    return absl::FailedPreconditionError(absl::StrCat(
        name,
        " is not FP8: the CUDA backend runs MoE experts as FP8 block-scaled GEMMs; serve a "
        "BF16 checkpoint with --quantization fp8"));
  }
  Fp8MlpHostWeights out;
  out.gate_up = HostFp8(StackedGateUp(mlp));
  out.down = HostFp8(mlp.down);
  return out;
}

absl::StatusOr<CudaMlp> UploadMlp(const MlpWeights& mlp) {
  CudaMlp out;
  MOESERVE_ASSIGN_OR_RETURN(out.gate_up, UploadLinear(StackedGateUp(mlp)));
  MOESERVE_ASSIGN_OR_RETURN(out.down, UploadLinear(mlp.down));
  return out;
}

absl::StatusOr<std::unique_ptr<MoeLayerCuda>> UploadMoe(
    CudaContext& context, CublasLtGemm& gemm, const ModelConfig& config, const MoeWeights& moe,
    const std::string& name, int64_t layer_index, const CudaWeightShard& shard) {
  MoeLayerHostWeights host;
  if (!moe.slot_experts.empty()) {
    if (shard.placement == nullptr) {
      return absl::InvalidArgumentError(
          absl::StrCat(name, ": an expert-parallel shard needs its expert placement"));
    }
    host.local_slots = ExpertSlotsOnRank(shard.placement->layers[static_cast<size_t>(layer_index)],
                                         config.n_routed_experts, shard.ep_rank);
  }
  host.hidden = config.hidden_size;
  // The shard's width: moe_intermediate_size / tp when experts are split on it.
  host.expert_width =
      moe.experts.empty() ? config.moe_intermediate_size : moe.experts[0].down.in_features;
  const bool with_shared = moe.shared.has_value() && shard.shared_experts;
  host.shared_width = with_shared ? moe.shared->width() : 0;
  host.routing = MakeRoutingParams(config, moe);  // correction_bias: copied by Create
  host.router = FloatsToBf16(moe.router);
  host.experts.reserve(moe.experts.size());
  for (size_t e = 0; e < moe.experts.size(); ++e) {
    MOESERVE_ASSIGN_OR_RETURN(Fp8MlpHostWeights expert,
                              QuantizeMlp(moe.experts[e], absl::StrCat(name, ".experts.", e)));
    host.experts.push_back(std::move(expert));
  }
  if (with_shared) {
    MOESERVE_ASSIGN_OR_RETURN(host.shared,
                              QuantizeMlp(*moe.shared, absl::StrCat(name, ".shared_experts")));
  }
  return MoeLayerCuda::Create(context, gemm, host);
}

size_t LayerBytes(const CudaLayerWeights& l) {
  const CudaMlaWeights& a = l.attention;
  size_t bytes = l.input_norm.size_bytes() + l.post_attention_norm.size_bytes() +
                 a.q_a_norm.size_bytes() + a.kv_a_proj.bytes() + a.kv_a_norm.size_bytes() +
                 a.kv_b_proj.bytes() + a.o_proj.bytes() + a.w_uk_t.size_bytes() +
                 a.w_uv.size_bytes();
  for (const auto* q : {&a.q_proj, &a.q_a_proj, &a.q_b_proj}) {
    if (q->has_value()) bytes += (*q)->bytes();
  }
  if (l.dense_mlp.has_value()) bytes += l.dense_mlp->gate_up.bytes() + l.dense_mlp->down.bytes();
  if (l.moe != nullptr) bytes += l.moe->weight_bytes();
  return bytes;
}

size_t MtpBytes(const CudaMtpWeights& m) {
  return m.enorm.size_bytes() + m.hnorm.size_bytes() + m.eh_proj.bytes() + LayerBytes(m.block) +
         m.head_norm.size_bytes() + (m.embed_tokens ? m.embed_tokens->size_bytes() : 0) +
         (m.head ? m.head->bytes() : 0);
}

}  // namespace

absl::StatusOr<DeviceBuffer> UploadBf16(const std::vector<float>& values) {
  const std::vector<uint16_t> bf16 = FloatsToBf16(values);
  return DeviceBuffer::FromHost(bf16.data(), bf16.size() * sizeof(uint16_t));
}

absl::StatusOr<CudaLinear> UploadFp8Linear(const Fp8BlockWeight& weight, int64_t out_features,
                                           int64_t in_features) {
  const int64_t row_blocks = (out_features + kFp8BlockSize - 1) / kFp8BlockSize;
  const int64_t col_blocks = (in_features + kFp8BlockSize - 1) / kFp8BlockSize;
  if (static_cast<int64_t>(weight.fp8.size()) != out_features * in_features ||
      static_cast<int64_t>(weight.scale_inv.size()) != row_blocks * col_blocks) {
    return absl::InvalidArgumentError(
        absl::StrCat("UploadFp8Linear: ", weight.fp8.size(), " bytes and ", weight.scale_inv.size(),
                     " scales do not make a [", out_features, ", ", in_features, "] FP8 weight"));
  }
  CudaLinear linear;
  linear.out_features = out_features;
  linear.in_features = in_features;
  linear.fp8 = true;
  MOESERVE_ASSIGN_OR_RETURN(linear.weight,
                            DeviceBuffer::FromHost(weight.fp8.data(), weight.fp8.size()));
  const std::vector<float> scales = PadFp8WeightScales(weight.scale_inv, out_features, in_features);
  MOESERVE_ASSIGN_OR_RETURN(linear.scales,
                            DeviceBuffer::FromHost(scales.data(), scales.size() * sizeof(float)));
  return linear;
}

absl::StatusOr<CudaLinear> UploadLinear(const LinearWeight& linear) {
  if (linear.fp8) {
    return UploadFp8Linear(HostFp8(linear), linear.out_features, linear.in_features);
  }
  CudaLinear out;
  out.out_features = linear.out_features;
  out.in_features = linear.in_features;
  MOESERVE_ASSIGN_OR_RETURN(out.weight, UploadBf16(DequantizeLinear(linear)));
  return out;
}

absl::StatusOr<CudaLayerWeights> UploadLayerWeights(CudaContext& context, CublasLtGemm& gemm,
                                                    const ModelConfig& config,
                                                    const DecoderLayerWeights& layer,
                                                    int64_t layer_index,
                                                    const CudaWeightShard& shard) {
  const std::string name = absl::StrCat("model.layers.", layer_index);
  CudaLayerWeights out;
  MOESERVE_ASSIGN_OR_RETURN(out.input_norm, UploadBf16(layer.input_norm));
  MOESERVE_ASSIGN_OR_RETURN(out.post_attention_norm, UploadBf16(layer.post_attention_norm));

  const MlaWeights& a = layer.attention;
  CudaMlaWeights& mla = out.attention;
  mla.num_heads = a.kv_b_proj.out_features / (config.qk_nope_head_dim + config.v_head_dim);
  if (a.q_proj.has_value()) {
    MOESERVE_ASSIGN_OR_RETURN(mla.q_proj, UploadLinear(*a.q_proj));
  } else {
    MOESERVE_ASSIGN_OR_RETURN(mla.q_a_proj, UploadLinear(*a.q_a_proj));
    MOESERVE_ASSIGN_OR_RETURN(mla.q_a_norm, UploadBf16(a.q_a_norm));
    MOESERVE_ASSIGN_OR_RETURN(mla.q_b_proj, UploadLinear(*a.q_b_proj));
  }
  MOESERVE_ASSIGN_OR_RETURN(mla.kv_a_proj, UploadLinear(a.kv_a_proj));
  MOESERVE_ASSIGN_OR_RETURN(mla.kv_a_norm, UploadBf16(a.kv_a_norm));
  MOESERVE_ASSIGN_OR_RETURN(mla.kv_b_proj, UploadLinear(a.kv_b_proj));
  MOESERVE_ASSIGN_OR_RETURN(mla.o_proj, UploadLinear(a.o_proj));
  MOESERVE_ASSIGN_OR_RETURN(mla.w_uk_t, UploadBf16(DequantizeLinear(a.w_uk_t)));
  MOESERVE_ASSIGN_OR_RETURN(mla.w_uv, UploadBf16(DequantizeLinear(a.w_uv)));

  if (layer.dense_mlp.has_value()) {
    MOESERVE_ASSIGN_OR_RETURN(out.dense_mlp, UploadMlp(*layer.dense_mlp));
  } else {
    MOESERVE_ASSIGN_OR_RETURN(
        out.moe, UploadMoe(context, gemm, config, *layer.moe, name + ".mlp", layer_index, shard));
  }
  return out;
}

absl::StatusOr<CudaMtpWeights> UploadMtpWeights(CudaContext& context, CublasLtGemm& gemm,
                                                const ModelConfig& config, const MtpWeights& mtp,
                                                int64_t module) {
  CudaMtpWeights out;
  MOESERVE_ASSIGN_OR_RETURN(out.enorm, UploadBf16(mtp.enorm));
  MOESERVE_ASSIGN_OR_RETURN(out.hnorm, UploadBf16(mtp.hnorm));
  MOESERVE_ASSIGN_OR_RETURN(out.eh_proj, UploadLinear(mtp.eh_proj));
  MOESERVE_ASSIGN_OR_RETURN(out.block, UploadLayerWeights(context, gemm, config, mtp.block,
                                                          config.num_hidden_layers + module));
  MOESERVE_ASSIGN_OR_RETURN(out.head_norm, UploadBf16(mtp.head_norm));
  if (mtp.embed_tokens.has_value()) {
    MOESERVE_ASSIGN_OR_RETURN(out.embed_tokens, UploadBf16(*mtp.embed_tokens));
  }
  if (mtp.head.has_value()) {
    if (mtp.head->fp8) {
      return absl::UnimplementedError(
          "an FP8 MTP shared_head.head is not supported by the CUDA backend");
    }
    MOESERVE_ASSIGN_OR_RETURN(out.head, UploadLinear(*mtp.head));
  }
  return out;
}

absl::Status UploadNonLayerWeights(const ModelConfig& config, const ModelWeights& weights,
                                   CudaModelWeights& out) {
  MOESERVE_ASSIGN_OR_RETURN(out.embed_tokens, UploadBf16(weights.embed_tokens));
  MOESERVE_ASSIGN_OR_RETURN(out.final_norm, UploadBf16(weights.final_norm));
  MOESERVE_ASSIGN_OR_RETURN(out.lm_head, UploadLinear(weights.lm_head));
  const RopeTable rope =
      MakeRopeTable(config.qk_rope_head_dim, config.rope_theta, config.rope_scaling);
  MOESERVE_ASSIGN_OR_RETURN(
      out.rope_inv_freq,
      DeviceBuffer::FromHost(rope.inv_freq.data(), rope.inv_freq.size() * sizeof(float)));
  out.rope_attention_scaling = rope.attention_scaling;
  out.bytes += out.embed_tokens.size_bytes() + out.final_norm.size_bytes() + out.lm_head.bytes() +
               out.rope_inv_freq.size_bytes();
  return absl::OkStatus();
}

absl::StatusOr<CudaModelWeights> LoadCudaModelWeights(CudaContext& context, CublasLtGemm& gemm,
                                                      const Checkpoint& checkpoint,
                                                      const ModelConfig& config,
                                                      const LoadOptions& options,
                                                      const WeightShard& shard,
                                                      const CudaWeightShard& cuda_shard) {
  MOESERVE_RETURN_IF_ERROR(CheckMtpShard(options, shard));
  CudaModelWeights out;
  ModelWeights non_layer;
  MOESERVE_RETURN_IF_ERROR(LoadModelWeightsByLayer(
      checkpoint, config, options, shard, non_layer,
      [&](int64_t index, DecoderLayerWeights&& host) -> absl::Status {
        const DecoderLayerWeights layer = std::move(host);  // freed when this upload returns
        MOESERVE_ASSIGN_OR_RETURN(
            CudaLayerWeights uploaded,
            UploadLayerWeights(context, gemm, config, layer, index, cuda_shard));
        out.bytes += LayerBytes(uploaded);
        out.layers.push_back(std::move(uploaded));
        return absl::OkStatus();
      }));
  MOESERVE_RETURN_IF_ERROR(UploadNonLayerWeights(config, non_layer, out));
  if (options.load_mtp) {
    MOESERVE_ASSIGN_OR_RETURN(std::vector<MtpWeights> modules,
                              LoadMtpModules(checkpoint, config, options, non_layer));
    for (size_t m = 0; m < modules.size(); ++m) {
      MOESERVE_ASSIGN_OR_RETURN(
          CudaMtpWeights uploaded,
          UploadMtpWeights(context, gemm, config, modules[m], static_cast<int64_t>(m)));
      out.bytes += MtpBytes(uploaded);
      out.mtp.push_back(std::move(uploaded));
    }
  }
  return out;
}

}  // namespace moeserve::engine
