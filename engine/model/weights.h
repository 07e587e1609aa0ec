// The weights of a DeepSeek model as the CPU backend holds them.
//
// Linear and expert weights keep their checkpoint precision (BF16, or FP8 e4m3 with 128×128
// block scales) and are converted in registers by the GEMM (ops/linear/weight_gemm.h); with
// LoadOptions::cpu_kernels = kReference, or where a layout does not fit the kernels, they are
// dequantized to fp32 once at load. Norms, embeddings, routers and biases are fp32.
// FP8 linears remember that they were FP8 so the forward pass can quantize their input
// activations (reference §4), making CPU numerics mirror the GPU's FP8 GEMMs. gate_proj and
// up_proj are stacked into one [2I, D] matrix per MLP where the format allows (MlpWeights).
// Filled by LoadModelWeights (weight_loader.h); immutable afterwards.
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "engine/ops/cpu/cpu_features.h"
#include "engine/ops/linear/weight_gemm.h"

namespace moeserve::engine {

// y = x · Wᵀ for W [out_features, in_features], held in `format`; only that format's vectors
// are filled.
struct LinearWeight {
  int64_t out_features = 0;
  int64_t in_features = 0;
  WeightFormat format = WeightFormat::kF32;
  std::vector<float> weight;          // kF32
  std::vector<uint16_t> weight_bf16;  // kBf16: bf16 bits
  std::vector<uint8_t> weight_fp8;    // kFp8Block128: e4m3 bytes
  std::vector<float> scale_inv;       // kFp8Block128: [ceil(out/128), ceil(in/128)]
  bool fp8 = false;  // F8_E4M3 in the checkpoint (or quantized at load): inputs go through FP8
  CpuIsa isa = CpuIsa::kPortable;  // the GEMM implementation this weight runs on
  // BF16 GEMMs of at least kOneDnnMinRows rows may run on oneDNN (`--cpu-kernels bf16` without
  // `--deterministic`; ops/linear/weight_gemm_onednn.h).
  bool library_gemm = false;

  WeightMatrixView view() const;
  size_t size_bytes() const;  // the weight and its scales as held
};

// The fp32 values W stands for (what the reference backend holds), whatever its format.
std::vector<float> DequantizeLinear(const LinearWeight& linear);

struct MlpWeights {
  // gate_proj and up_proj stacked into one [2 * width, hidden] matrix, rows [0, width)
  // gate_proj: one GEMM, then SiLU·mul. An FP8 width that is not a multiple of 128 (V2-Lite's
  // dense 10944) cannot stack without splitting a scale block; then gate_up holds gate_proj
  // alone and `up` holds up_proj (StackedGateUp gives the stack for consumers that need it).
  LinearWeight gate_up;
  std::optional<LinearWeight> up;
  LinearWeight down;  // [hidden, width]
  int64_t width() const { return down.in_features; }
};

struct MoeWeights {
  std::vector<float> router;           // [n_routed_experts, hidden] (mlp.gate.weight)
  std::vector<float> correction_bias;  // [n_routed_experts] noaux_tc only, else empty
  std::vector<MlpWeights> experts;     // [n_routed_experts], or this rank's slots under EP
  std::optional<MlpWeights> shared;    // n_shared_experts fused into one MLP
  // Expert parallelism (engine/parallel): the logical expert in each entry of `experts`.
  // Empty when `experts` holds every expert in order.
  std::vector<int32_t> slot_experts;
};

struct MlaWeights {
  std::optional<LinearWeight> q_proj;    // [H * 192, hidden] when q_lora_rank is null
  std::optional<LinearWeight> q_a_proj;  // [q_lora_rank, hidden]
  std::vector<float> q_a_norm;           // [q_lora_rank]
  std::optional<LinearWeight> q_b_proj;  // [H * 192, q_lora_rank]
  LinearWeight kv_a_proj;                // [kv_lora_rank + rope_dim, hidden]
  std::vector<float> kv_a_norm;          // [kv_lora_rank]
  LinearWeight kv_b_proj;                // [H * (nope_dim + v_dim), kv_lora_rank]
  LinearWeight o_proj;                   // [hidden, H * v_dim]
  // kv_b_proj split per head for the absorbed form, in its format (mla_absorbed_weights.h):
  LinearWeight w_uk_t;  // [H * kv_lora_rank, nope_dim]: W_UK[h]ᵀ, so q_abs = q_nope · W_UK[h]
  LinearWeight w_uv;    // [H * v_dim, kv_lora_rank]:   W_UV[h],  so o_h = o_lat · W_UV[h]ᵀ
};

struct DecoderLayerWeights {
  std::vector<float> input_norm;           // [hidden]
  std::vector<float> post_attention_norm;  // [hidden]
  MlaWeights attention;
  std::optional<MlpWeights> dense_mlp;  // layers before first_k_dense_replace
  std::optional<MoeWeights> moe;        // the others
};

// One multi-token-prediction module, model.layers.{num_hidden_layers + m}.* (reference §3.4):
// h' = eh_proj([enorm(embed(t_{i+1})); hnorm(h_i)]), one decoder block, then the shared head.
// DeepSeek-V3 ships copies of the main embedding and lm_head as the module's embed_tokens and
// shared_head.head; a copy equal to the main tensor is not held twice (the optionals are empty
// and the main ones are used).
struct MtpWeights {
  std::vector<float> enorm;  // [hidden], on the embedding of the next token
  std::vector<float> hnorm;  // [hidden], on the previous depth's hidden state
  LinearWeight eh_proj;      // [hidden, 2 * hidden]: input [enorm(e) | hnorm(h)]
  DecoderLayerWeights block;
  std::vector<float> head_norm;                    // shared_head.norm [hidden]
  std::optional<std::vector<float>> embed_tokens;  // [vocab, hidden] when it differs
  std::optional<LinearWeight> head;                // [vocab, hidden] when it differs
};

struct ModelWeights {
  std::vector<float> embed_tokens;  // [vocab, hidden]
  std::vector<float> final_norm;    // [hidden]
  LinearWeight lm_head;             // [vocab, hidden]
  std::vector<DecoderLayerWeights> layers;
  std::vector<MtpWeights> mtp;  // loaded only when LoadOptions::load_mtp
};

}  // namespace moeserve::engine
