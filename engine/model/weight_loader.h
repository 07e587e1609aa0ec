// Checkpoint → ModelWeights for the CPU backend.
//
// Checks every tensor the config implies against the checkpoint: present, a floating dtype,
// exactly the expected shape; FP8 tensors need a finite F32 weight_scale_inv of shape
// [ceil(out/128), ceil(in/128)] and no NaN byte (0x7F, 0xFF). Errors name the tensor, the file and
// both shapes. Tensors of the MTP layers (index num_hidden_layers and up, reference §3.4) are not
// part of the main stack: they load into ModelWeights::mtp when LoadOptions::load_mtp asks for
// them, and are left alone otherwise. Called by DeepseekModel::Load.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/io/checkpoint.h"
#include "engine/model/model_config.h"
#include "engine/model/weights.h"
#include "engine/ops/dtype.h"

namespace moeserve::engine {

// Which CPU kernels the weights are held for (the server's `--cpu-kernels`).
enum class CpuKernels {
  // Linear and expert weights stay in checkpoint precision (BF16, FP8 + block scales; F16 and
  // F32 become fp32) and run on the best instruction set of this CPU (weight_gemm.h).
  kFast,
  // As kFast, but BF16 and FP8 linears run on AVX-512-BF16 dot products (vdpbf16ps) where the CPU
  // has
  // them, their inputs rounded to bf16 (docs/cpu-numerics.md): ~1.7× the GEMM throughput of
  // kFast, results within bf16 tolerance of it. `--cpu-kernels bf16`.
  kFastBf16,
  // Every linear dequantized to fp32 at load and run by the portable GemmCpu: the exact
  // backend the golden tests against transformers pin down.
  kReference,
};

// "fast", "bf16", "reference" (the `--cpu-kernels` values); nullopt for anything else.
std::optional<CpuKernels> ParseCpuKernels(std::string_view name);
// The instruction set a kernel set's linears run on, on this CPU.
CpuIsa LinearIsaFor(CpuKernels kernels);

// How to load (the server's and tools' `--quantization` flag maps here).
struct LoadOptions {
  // `--quantization fp8`: quantize every floating (BF16/F16/F32) linear weight of the decoder
  // layers to 128×128 FP8 blocks at load, with DeepSeek's recipe (QuantizeFp8BlockWeight:
  // scale = amax/448 per block), as if the checkpoint had shipped F8_E4M3 + weight_scale_inv.
  // The CPU backend then holds the dequantized values and quantizes activations before these
  // linears, exactly as for an FP8 checkpoint; the GPU backend uploads the same fp8 bytes and
  // scales. Not quantized, as in DeepSeek's FP8 checkpoints (reference §4): embeddings,
  // lm_head, norms, the router. Weights already in FP8 are left as they are.
  bool quantize_fp8 = false;
  CpuKernels cpu_kernels = CpuKernels::kFast;
  // Element type of the latent KV cache the model allocates (DeepseekModel::MakeKvPages):
  // DType::kBF16 or DType::kF32; nullopt = CpuKvCacheDtype's default (`--kv-cache-dtype`).
  std::optional<DType> kv_cache_dtype;
  // `--check-weights`: scan every floating linear and expert weight for NaN/infinity too (the
  // norms, routers, biases, embeddings and FP8 scales and bytes are always checked); costs one
  // read of those bytes at load (docs/hardening.md has the figure).
  bool check_all_weights = false;
  // `--deterministic`: every GEMM on our own kernels, whose results are bit-identical alone and
  // batched; otherwise `--cpu-kernels bf16` hands BF16 GEMMs with many rows to oneDNN (faster,
  // reduction order depends on the batch; ops/linear/weight_gemm_onednn.h).
  bool deterministic = false;
  // Load the config's num_nextn_predict_layers MTP modules (ModelWeights::mtp) for speculative
  // decoding (`--speculative-tokens`); without it they are left in the checkpoint.
  bool load_mtp = false;
};

// Whether linears loaded with `options` may run on oneDNN (LinearWeight::library_gemm).
bool UsesLibraryGemm(const LoadOptions& options);

// The latent cache's element type for these options: as asked, else BF16 (as on the GPU: half
// the memory and attention bytes, values within bf16 rounding) for the fast kernel sets and
// fp32 for the reference set, whose results equal the fp32 oracle.
DType CpuKvCacheDtype(const LoadOptions& options);
// "bf16" → kBF16, "fp32" → kF32 (the `--kv-cache-dtype` values); nullopt for anything else,
// "auto" included.
std::optional<DType> ParseKvCacheDtype(std::string_view name);

// The part of the weights one rank of a model-parallel group holds (engine/parallel): only
// these rows and columns are converted, so a rank never holds another rank's shard.
struct WeightShard {
  int tp_rank = 0;
  int tp_size = 1;  // > 1: MLA heads and MLP widths split into tp_size contiguous parts
  // Routed experts split on their intermediate dimension too (tensor parallel without EP).
  bool split_routed_experts = false;
  // Expert parallel: per layer, the logical experts of this rank's slots in slot order
  // (MoeWeights::slot_experts). Empty: every expert.
  std::vector<std::vector<int32_t>> layer_experts;
  // Expert parallel: the same for the MoE layer of each MTP module (MtpLayerPlacement, the
  // contiguous partition). Empty: every expert.
  std::vector<int32_t> mtp_layer_experts;
};

absl::StatusOr<ModelWeights> LoadModelWeights(const Checkpoint& checkpoint,
                                              const ModelConfig& config,
                                              const LoadOptions& options = {},
                                              const WeightShard& shard = {});

// The same load, streamed: the embeddings, final norm and lm_head go into `weights` (whose
// layers stay empty), and each decoder layer is handed to on_layer(index, layer) in order as
// soon as it is converted. A caller that uploads and drops each layer (the CUDA loader) holds
// one layer's host copy at a time instead of the whole model's. An error from on_layer stops
// the load and is returned.
absl::Status LoadModelWeightsByLayer(
    const Checkpoint& checkpoint, const ModelConfig& config, const LoadOptions& options,
    const WeightShard& shard, ModelWeights& weights,
    const std::function<absl::Status(int64_t, DecoderLayerWeights&&)>& on_layer);

// InvalidArgument when `options` ask for the MTP modules and `shard` is a tensor- or
// expert-parallel shard: the CUDA loader holds the modules only in an unsharded model (the CPU
// backend shards them like the main stack). Checked before reading anything.
absl::Status CheckMtpShard(const LoadOptions& options, const WeightShard& shard);

// The config's num_nextn_predict_layers MTP modules (what LoadModelWeights adds under
// LoadOptions::load_mtp; the CUDA loader uploads them after the layers), each module's decoder
// block cut to `shard` like a main layer (its MoE experts per shard.mtp_layer_experts); eh_proj,
// the norms and the head are whole on every rank. `main` holds the main embedding and lm_head: a
// module's copy equal to them is not held twice.
absl::StatusOr<std::vector<MtpWeights>> LoadMtpModules(const Checkpoint& checkpoint,
                                                       const ModelConfig& config,
                                                       const LoadOptions& options,
                                                       const ModelWeights& main,
                                                       const WeightShard& shard = {});

}  // namespace moeserve::engine
