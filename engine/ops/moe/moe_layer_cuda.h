// The DeepSeek MoE feed-forward on the GPU with FP8 block-scaled experts (reference §5.4), the
// CUDA twin of MoeForward (engine/model/moe_layer.h) with activation quantization on:
//
//   router    logits = x · Wrᵀ (BF16 GEMM, fp32 out) → LaunchRouteCuda → ids, weights [T, k]
//   permute   LaunchBuildMoePermutation → expert segments padded to 4 rows (cuBLASLt's rule)
//   gather    x rows in segment order, quantized to E4M3 with per-segment scales
//   gate_up   FP8 GEMMs over the segments with the fused [2I, D] weights (see below)
//   act       SiLU·mul fused with FP8 re-quantization (silu_mul_fp8_cuda.h)
//   down      FP8 GEMMs over the segments, [D, I]
//   combine   LaunchMoeUnpermute: Σ_slot w · y in fp32, + the shared experts' output, → bf16
//
// Two ways to run the expert GEMMs (MoeExpertGemm): one cuBLASLt FP8 GEMM per non-empty expert,
// which needs the segment offsets on the host — copied once per Forward, one stream
// synchronisation per MoE layer, so that path cannot be captured in a CUDA graph — or the
// grouped kernels of moe_grouped_gemm_cuda.h, which read the offsets on the device (no host
// synchronisation, graph-capturable): one on CUDA cores for decode-sized batches, one on tensor
// cores (mma.sync e4m3) for any size. kAuto picks by token count between the first and the
// cuBLASLt loop; the tensor-core kernel is chosen explicitly until measured on a GPU.
//
// The experts' weights are stacked in one device buffer per tensor ([E, 2I, D], [E, D, I] and
// their block scales), the layout a grouped GEMM also wants. Scratch comes from the context's
// DeviceArena (ScratchBytes tells the caller how much); Forward does not reset the arena.
// Engine thread only; the model's CUDA runner owns one MoeLayerCuda per MoE layer.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/ops/cuda/cuda_context.h"
#include "engine/ops/cuda/device_buffer.h"
#include "engine/ops/linear/fp8_quant.h"
#include "engine/ops/linear/gemm_cublaslt.h"
#include "engine/ops/moe/expert_slots.h"
#include "engine/ops/moe/moe_route.h"

namespace moeserve::engine {

// How the routed experts' GEMMs run (the shared experts always use cuBLASLt).
enum class MoeExpertGemm {
  // The grouped kernel up to kGroupedMaxTokens tokens (decode), the cuBLASLt loop above.
  kAuto,
  // One cuBLASLt FP8 GEMM per non-empty expert; copies the offsets to the host (one sync).
  kPerExpertCublasLt,
  // LaunchMoeGroupedFp8Gemm (moe_grouped_gemm_cuda.h): no host synchronisation, CUDA-graph
  // capturable, memory-bound CUDA-core math (fast only for short segments).
  kGroupedNoSync,
  // LaunchMoeGroupedFp8GemmMma: no host synchronisation and tensor cores, for any segment
  // length. Not kAuto's choice above kGroupedMaxTokens until it has been measured against the
  // cuBLASLt loop on a GPU (docs/performance.md, "MoE on GPU").
  kGroupedTensorCores,
};

// One SwiGLU MLP as FP8 blocks (QuantizeFp8BlockWeight's or the checkpoint's scale_inv).
struct Fp8MlpHostWeights {
  Fp8BlockWeight gate_up;  // [2 * width, hidden]: gate_proj rows, then up_proj rows
  Fp8BlockWeight down;     // [hidden, width]
};

struct MoeLayerHostWeights {
  int64_t hidden = 0;
  int64_t expert_width = 0;  // moe_intermediate_size
  int64_t shared_width = 0;  // n_shared_experts · moe_intermediate_size; 0 without shared experts
  // num_experts, top_k and the rule; correction_bias (host, [num_experts]) is copied to the device.
  RoutingParams routing;
  std::vector<uint16_t> router;            // [num_experts, hidden] bf16 (mlp.gate.weight)
  std::vector<Fp8MlpHostWeights> experts;  // [num_experts], or [local_slots.num_slots]
  std::optional<Fp8MlpHostWeights> shared;
  // Expert parallelism (expert_slots.h): this rank holds only these slots' experts and
  // computes only the (token, expert) pairs mapped to them; the caller sums the ranks'
  // outputs. Empty: every expert, slot = expert id.
  LocalExpertSlots local_slots;
};

class MoeLayerCuda {
 public:
  // Segment alignment of the permutation: cuBLASLt's FP8 GEMM needs row counts that are
  // multiples of 4, and 4-row segments keep every per-segment pointer 16-B aligned.
  static constexpr int64_t kSegmentAlignment = 4;
  // kAuto's switch point: with top-6 of 64 experts, 32 tokens give ~3 rows per expert.
  static constexpr int64_t kGroupedMaxTokens = 32;

  // Uploads the weights. InvalidArgument naming the field for inconsistent shapes or sizes.
  // `context` and `gemm` (on that context) must outlive the layer.
  static absl::StatusOr<std::unique_ptr<MoeLayerCuda>> Create(CudaContext& context,
                                                              CublasLtGemm& gemm,
                                                              const MoeLayerHostWeights& weights);

  // Arena bytes one Forward (or ForwardRouted) of num_tokens tokens takes.
  size_t ScratchBytes(int64_t num_tokens) const;

  // x: device [num_tokens, hidden] bf16; out: device [num_tokens, hidden] bf16, not aliasing x.
  absl::Status Forward(const uint16_t* x, int64_t num_tokens, uint16_t* out);

  // Forward after the router, with a given routing: expert_ids and route_weights are device
  // [num_tokens, top_k] (ids in [0, num_experts); others are dropped). Tests force skewed
  // routings through it.
  absl::Status ForwardRouted(const uint16_t* x, int64_t num_tokens, const int32_t* expert_ids,
                             const float* route_weights, uint16_t* out);

  // Device int64 [num_experts] to which every Forward adds the tokens routed to each expert
  // (null: not counted; under expert parallelism every rank counts every token). Must outlive
  // the layer's use of it.
  void set_expert_token_counts(int64_t* device_counts) { expert_token_counts_ = device_counts; }
  // kAuto unless set; tests and benchmarks force either path.
  void set_expert_gemm(MoeExpertGemm mode) { expert_gemm_ = mode; }

  int64_t num_experts() const { return num_experts_; }
  // Experts stored here: num_experts(), or the rank's slots under expert parallelism.
  int64_t num_slots() const { return num_slots_; }
  // Device bytes of the router, experts and shared experts.
  size_t weight_bytes() const;
  int64_t top_k() const { return routing_.top_k; }

 private:
  // The FP8 tensors of `count` MLPs of one width, stacked along a leading dimension.
  struct StackedMlps {
    int64_t count = 0;
    int64_t width = 0;
    DeviceBuffer gate_up, gate_up_scales, down, down_scales;
  };

  MoeLayerCuda(CudaContext& context, CublasLtGemm& gemm) : context_(context), gemm_(gemm) {}

  static absl::StatusOr<StackedMlps> Upload(const std::vector<const Fp8MlpHostWeights*>& mlps,
                                            int64_t hidden, int64_t width, const char* what);
  Fp8WeightView GateUpView(const StackedMlps& mlps, int64_t index) const;
  Fp8WeightView DownView(const StackedMlps& mlps, int64_t index) const;
  absl::Status SharedExperts(const uint16_t* x, int64_t num_tokens, uint16_t* y);
  // The permuted activations between the gather and the un-permute ([max_rows, ·] each).
  struct ExpertBuffers {
    const int32_t* offsets;
    const uint8_t* xq;
    const float* xs;
    uint16_t* h;
    uint8_t* aq;
    float* as;
    uint16_t* y;
    int64_t max_rows;
  };
  bool UsesGroupedGemm(int64_t num_tokens) const;
  // gate_up GEMMs, SiLU·mul + requantization, down GEMMs: h, aq, as and y from xq, xs.
  absl::Status PerExpertGemms(const ExpertBuffers& buffers);
  absl::Status GroupedExpertGemms(const ExpertBuffers& buffers, bool tensor_cores);

  CudaContext& context_;
  CublasLtGemm& gemm_;
  int64_t hidden_ = 0;
  int64_t num_experts_ = 0;  // the router's
  int64_t num_slots_ = 0;    // stacked in experts_
  RoutingParams routing_;    // correction_bias points into correction_bias_ (device)
  DeviceBuffer router_;
  DeviceBuffer correction_bias_;
  StackedMlps experts_;
  std::optional<StackedMlps> shared_;
  MoeExpertGemm expert_gemm_ = MoeExpertGemm::kAuto;
  int64_t* expert_token_counts_ = nullptr;
  // Expert parallelism only (empty otherwise): LocalExpertSlots on the device.
  int64_t max_replicas_ = 0;
  DeviceBuffer replica_count_;
  DeviceBuffer local_slot_;
  std::vector<int32_t> host_offsets_;  // [num_slots + 1], reused per Forward
};

}  // namespace moeserve::engine
