// The weights of a DeepSeek model on one GPU, and their upload from the host.
//
// Layout is what the CUDA kernels and cuBLASLt take (reference §4, §5): linears that were FP8
// (in the checkpoint or through `--quantization fp8`) as e4m3 [out, in] with 128×128 block
// scales padded to Fp8ScaleStride; every other tensor in BF16; each MoE layer as a
// MoeLayerCuda (stacked experts, router, shared experts). Built once at load by
// LoadCudaModelWeights (streamed from the checkpoint a layer at a time), or layer by layer (the GPU
// benchmark makes random layers without ever holding a whole model on the host). Immutable
// afterwards; owned by DeepseekModelCuda.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "engine/io/checkpoint.h"
#include "engine/model/model_config.h"
#include "engine/model/weight_loader.h"
#include "engine/model/weights.h"
#include "engine/ops/cuda/cuda_context.h"
#include "engine/ops/linear/fp8_quant.h"
#include "engine/ops/linear/gemm_cublaslt.h"
#include "engine/ops/moe/moe_layer_cuda.h"
#include "engine/parallel/expert_placement.h"

namespace moeserve::engine {

// One nn.Linear on the device: y = x · Wᵀ.
struct CudaLinear {
  int64_t out_features = 0;
  int64_t in_features = 0;
  bool fp8 = false;
  DeviceBuffer weight;  // [out, in]: e4m3 when fp8, else bf16
  DeviceBuffer scales;  // fp8 only: [ceil(out/128), Fp8ScaleStride(in)] fp32

  Fp8WeightView fp8_view() const {
    return {weight.as<uint8_t>(), scales.as<float>(), out_features, in_features,
            Fp8ScaleStride(in_features)};
  }
  const uint16_t* bf16() const { return weight.as<uint16_t>(); }
  size_t bytes() const { return weight.size_bytes() + scales.size_bytes(); }
};

struct CudaMlp {
  CudaLinear gate_up;  // [2 * width, hidden]: gate rows, then up rows
  CudaLinear down;     // [hidden, width]
  int64_t width() const { return down.in_features; }
};

struct CudaMlaWeights {
  int64_t num_heads = 0;
  std::optional<CudaLinear> q_proj;    // q_lora_rank null
  std::optional<CudaLinear> q_a_proj;  // else these three
  DeviceBuffer q_a_norm;               // [q_lora_rank] bf16
  std::optional<CudaLinear> q_b_proj;
  CudaLinear kv_a_proj;    // [576, hidden]
  DeviceBuffer kv_a_norm;  // [512] bf16
  CudaLinear kv_b_proj;    // [H·256, 512], for the naive (prefill) form
  CudaLinear o_proj;       // [hidden, H·128]
  DeviceBuffer w_uk_t;     // [H, 512, 128] bf16 (mla_absorb_cuda.h)
  DeviceBuffer w_uv;       // [H, 128, 512] bf16
};

struct CudaLayerWeights {
  DeviceBuffer input_norm;           // [hidden] bf16
  DeviceBuffer post_attention_norm;  // [hidden] bf16
  CudaMlaWeights attention;
  std::optional<CudaMlp> dense_mlp;
  std::unique_ptr<MoeLayerCuda> moe;
};

// One MTP module (weights.h MtpWeights): h' = eh_proj([enorm(embed(t_{i+1})); hnorm(h_i)]), one
// decoder block, then shared_head.norm and the head. The main embedding and lm_head serve
// where the checkpoint's copies equal them (the optionals are empty).
struct CudaMtpWeights {
  DeviceBuffer enorm;      // [hidden] bf16
  DeviceBuffer hnorm;      // [hidden] bf16
  CudaLinear eh_proj;      // [hidden, 2 * hidden], BF16 (never FP8, reference §4)
  CudaLayerWeights block;  // its latents live in KV layer num_hidden_layers + module
  DeviceBuffer head_norm;  // [hidden] bf16
  std::optional<DeviceBuffer> embed_tokens;  // [vocab, hidden] bf16 when it differs
  std::optional<CudaLinear> head;            // [vocab, hidden] when it differs
};

struct CudaModelWeights {
  DeviceBuffer embed_tokens;  // [vocab, hidden] bf16
  DeviceBuffer final_norm;    // [hidden] bf16
  CudaLinear lm_head;         // [vocab, hidden]
  std::vector<CudaLayerWeights> layers;
  std::vector<CudaMtpWeights> mtp;  // LoadOptions::load_mtp only
  DeviceBuffer rope_inv_freq;       // [qk_rope_head_dim / 2] fp32
  float rope_attention_scaling = 1.0f;
  size_t bytes = 0;  // device bytes of all of the above
};

// What the upload of a model-parallel shard must know beyond the host weights' shapes (which
// already hold only the rank's heads, widths and experts: WeightShard, weight_loader.h).
struct CudaWeightShard {
  // Expert parallelism: the layout and this rank's place in it (null: every expert is here).
  const ExpertPlacement* placement = nullptr;
  int ep_rank = 0;
  // False on the expert-parallel ranks other than 0 when attention is not split: there the
  // shared experts run whole on rank 0 only, so the ranks' summed MoE outputs count them once.
  bool shared_experts = true;
};

// Host fp32 → device BF16.
absl::StatusOr<DeviceBuffer> UploadBf16(const std::vector<float>& values);
// A CPU-backend linear: FP8 ones are re-quantized to 128×128 blocks (exact for weights that
// came from FP8 with DeepSeek's amax/448 recipe: the same codes and scales come back).
absl::StatusOr<CudaLinear> UploadLinear(const LinearWeight& linear);
absl::StatusOr<CudaLinear> UploadFp8Linear(const Fp8BlockWeight& weight, int64_t out_features,
                                           int64_t in_features);

// One decoder layer. MoE layers need FP8 experts (MoeLayerCuda): FailedPrecondition naming
// the layer otherwise ("serve BF16 checkpoints with --quantization fp8").
absl::StatusOr<CudaLayerWeights> UploadLayerWeights(CudaContext& context, CublasLtGemm& gemm,
                                                    const ModelConfig& config,
                                                    const DecoderLayerWeights& layer,
                                                    int64_t layer_index,
                                                    const CudaWeightShard& shard = {});

// MTP module `module` (its block is layer num_hidden_layers + module). MoE blocks need FP8
// experts, as UploadLayerWeights' do.
absl::StatusOr<CudaMtpWeights> UploadMtpWeights(CudaContext& context, CublasLtGemm& gemm,
                                                const ModelConfig& config, const MtpWeights& mtp,
                                                int64_t module);

// Everything but the layers: embeddings, final norm, lm_head and the RoPE table.
absl::Status UploadNonLayerWeights(const ModelConfig& config, const ModelWeights& weights,
                                   CudaModelWeights& out);

// Streams a checkpoint onto the device (LoadModelWeightsByLayer): each layer is converted,
// uploaded and dropped before the next, so the host holds one layer at a time — what makes
// models larger than host memory in fp32 loadable. With LoadOptions::load_mtp the MTP modules
// follow (unsharded models only: InvalidArgument with a tensor- or expert-parallel shard).
// What the CUDA runner calls.
absl::StatusOr<CudaModelWeights> LoadCudaModelWeights(CudaContext& context, CublasLtGemm& gemm,
                                                      const Checkpoint& checkpoint,
                                                      const ModelConfig& config,
                                                      const LoadOptions& options,
                                                      const WeightShard& shard = {},
                                                      const CudaWeightShard& cuda_shard = {});

}  // namespace moeserve::engine
