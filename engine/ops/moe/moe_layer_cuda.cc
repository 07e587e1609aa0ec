#include "engine/ops/moe/moe_layer_cuda.h"

#include <cuda_runtime_api.h>

#include <algorithm>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "engine/ops/activation/silu_mul_fp8_cuda.h"
#include "engine/ops/cuda/check.h"
#include "engine/ops/linear/fp8_quant_cuda.h"
#include "engine/ops/linear/fp8_segmented_layout.h"
#include "engine/ops/moe/expert_slots_cuda.h"
#include "engine/ops/moe/moe_grouped_gemm_cuda.h"
#include "engine/ops/moe/moe_permute.h"
#include "engine/ops/moe/moe_permute_cuda.h"
#include "engine/ops/moe/moe_route_cuda.h"
#include "engine/status_macros.h"

namespace moeserve::engine {
namespace {

int64_t CeilDiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Fp8 groups (scale columns) of a `cols`-wide activation.
int64_t Groups(int64_t cols) { return CeilDiv(cols, kFp8BlockSize); }

absl::Status CheckFp8Block(const Fp8BlockWeight& w, int64_t rows, int64_t cols,
                           const std::string& name) {
  const int64_t bytes = rows * cols;
  const int64_t scales = CeilDiv(rows, kFp8BlockSize) * CeilDiv(cols, kFp8BlockSize);
  if (static_cast<int64_t>(w.fp8.size()) != bytes) {
    return absl::InvalidArgumentError(
        absl::StrCat(name, ".fp8 has ", w.fp8.size(), " bytes, expected [", rows, ", ", cols, "]"));
  }
  if (static_cast<int64_t>(w.scale_inv.size()) != scales) {
    return absl::InvalidArgumentError(
        absl::StrCat(name, ".scale_inv has ", w.scale_inv.size(), " entries, expected ", scales));
  }
  return absl::OkStatus();
}

// The arena pieces of one Forward, in allocation order; ScratchBytes adds up the same list.
struct ScratchSizes {
  int64_t entries, rows, padded_tokens;
  int64_t hidden, width, shared_width, num_experts;
  bool has_shared;

  template <typename Visit>
  void ForEach(Visit&& visit) const {
    visit(entries * 4);                // expert ids
    visit(entries * 4);                // route weights
    visit(entries * 4);                // local slot ids (expert parallelism only; counted always)
    visit(entries * 4);                // scatter
    visit(rows * 4);                   // gather
    visit(num_experts * 4);            // counts
    visit((num_experts + 1) * 4);      // offsets
    visit(rows * hidden);              // gathered x, e4m3
    visit(rows * Groups(hidden) * 4);  // its scales
    visit(rows * 2 * width * 2);       // gate_up output, bf16
    visit(rows * width);               // activation, e4m3
    visit(rows * Groups(width) * 4);   // its scales
    visit(rows * hidden * 2);          // expert outputs, bf16
    if (has_shared) {
      visit(padded_tokens * hidden);                // x, e4m3
      visit(padded_tokens * Groups(hidden) * 4);    // its scales
      visit(padded_tokens * 2 * shared_width * 2);  // gate_up output
      visit(padded_tokens * shared_width);          // activation, e4m3
      visit(padded_tokens * Groups(shared_width) * 4);
      visit(padded_tokens * hidden * 2);  // shared output, bf16
    }
  }
};

template <typename T>
absl::StatusOr<T*> Take(DeviceArena& arena, int64_t bytes) {
  MOESERVE_ASSIGN_OR_RETURN(void* p, arena.Allocate(static_cast<size_t>(bytes)));
  return static_cast<T*>(p);
}

}  // namespace

absl::StatusOr<MoeLayerCuda::StackedMlps> MoeLayerCuda::Upload(
    const std::vector<const Fp8MlpHostWeights*>& mlps, int64_t hidden, int64_t width,
    const char* what) {
  StackedMlps stacked;
  stacked.count = static_cast<int64_t>(mlps.size());
  stacked.width = width;
  const int64_t gate_up_bytes = 2 * width * hidden, down_bytes = hidden * width;
  const int64_t gate_up_scales = CeilDiv(2 * width, kFp8BlockSize) * Fp8ScaleStride(hidden);
  const int64_t down_scales = CeilDiv(hidden, kFp8BlockSize) * Fp8ScaleStride(width);
  std::vector<uint8_t> gate_up(static_cast<size_t>(stacked.count * gate_up_bytes));
  std::vector<uint8_t> down(static_cast<size_t>(stacked.count * down_bytes));
  std::vector<float> gate_up_s(static_cast<size_t>(stacked.count * gate_up_scales));
  std::vector<float> down_s(static_cast<size_t>(stacked.count * down_scales));
  for (int64_t i = 0; i < stacked.count; ++i) {
    const std::string name = stacked.count == 1 ? what : absl::StrCat(what, "[", i, "]");
    const Fp8MlpHostWeights& mlp = *mlps[i];
    MOESERVE_RETURN_IF_ERROR(CheckFp8Block(mlp.gate_up, 2 * width, hidden, name + ".gate_up"));
    MOESERVE_RETURN_IF_ERROR(CheckFp8Block(mlp.down, hidden, width, name + ".down"));
    std::copy(mlp.gate_up.fp8.begin(), mlp.gate_up.fp8.end(), gate_up.begin() + i * gate_up_bytes);
    std::copy(mlp.down.fp8.begin(), mlp.down.fp8.end(), down.begin() + i * down_bytes);
    const std::vector<float> gs = PadFp8WeightScales(mlp.gate_up.scale_inv, 2 * width, hidden);
    const std::vector<float> ds = PadFp8WeightScales(mlp.down.scale_inv, hidden, width);
    std::copy(gs.begin(), gs.end(), gate_up_s.begin() + i * gate_up_scales);
    std::copy(ds.begin(), ds.end(), down_s.begin() + i * down_scales);
  }
  MOESERVE_ASSIGN_OR_RETURN(stacked.gate_up,
                            DeviceBuffer::FromHost(gate_up.data(), gate_up.size()));
  MOESERVE_ASSIGN_OR_RETURN(stacked.down, DeviceBuffer::FromHost(down.data(), down.size()));
  MOESERVE_ASSIGN_OR_RETURN(
      stacked.gate_up_scales,
      DeviceBuffer::FromHost(gate_up_s.data(), gate_up_s.size() * sizeof(float)));
  MOESERVE_ASSIGN_OR_RETURN(stacked.down_scales,
                            DeviceBuffer::FromHost(down_s.data(), down_s.size() * sizeof(float)));
  return stacked;
}

absl::StatusOr<std::unique_ptr<MoeLayerCuda>> MoeLayerCuda::Create(CudaContext& context,
                                                                   CublasLtGemm& gemm,
                                                                   const MoeLayerHostWeights& w) {
  const RoutingParams& r = w.routing;
  if (w.hidden <= 0 || w.expert_width <= 0 || w.shared_width < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("MoeLayerCuda: hidden=", w.hidden, " expert_width=", w.expert_width,
                     " shared_width=", w.shared_width, " (need positive hidden and expert_width)"));
  }
  if (r.num_experts <= 0 || r.top_k <= 0 || r.top_k > r.num_experts) {
    return absl::InvalidArgumentError(absl::StrCat(
        "MoeLayerCuda: routing.num_experts=", r.num_experts, " routing.top_k=", r.top_k));
  }
  const LocalExpertSlots& slots = w.local_slots;
  const int64_t num_slots = slots.empty() ? r.num_experts : slots.num_slots;
  if (static_cast<int64_t>(w.experts.size()) != num_slots) {
    return absl::InvalidArgumentError(absl::StrCat(
        "MoeLayerCuda: experts has ", w.experts.size(), " entries, ",
        slots.empty() ? "routing.num_experts is " : "local_slots.num_slots is ", num_slots));
  }
  if (!slots.empty() &&
      (slots.num_experts != r.num_experts || slots.max_replicas < 1 ||
       static_cast<int64_t>(slots.replica_count.size()) != r.num_experts ||
       static_cast<int64_t>(slots.local_slot.size()) != r.num_experts * slots.max_replicas)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "MoeLayerCuda: local_slots for ", slots.num_experts, " experts × ", slots.max_replicas,
        " replicas do not match routing.num_experts=", r.num_experts));
  }
  for (int32_t slot : slots.local_slot) {
    if (slot >= num_slots) {
      return absl::InvalidArgumentError(
          absl::StrCat("MoeLayerCuda: local_slots names slot ", slot, " of ", num_slots));
    }
  }
  for (int32_t count : slots.replica_count) {
    if (count < 1 || count > slots.max_replicas) {
      return absl::InvalidArgumentError(absl::StrCat("MoeLayerCuda: local_slots.replica_count ",
                                                     count, " outside [1, ", slots.max_replicas,
                                                     "]"));
    }
  }
  if (static_cast<int64_t>(w.router.size()) != r.num_experts * w.hidden) {
    return absl::InvalidArgumentError(absl::StrCat("MoeLayerCuda: router has ", w.router.size(),
                                                   " entries, expected [", r.num_experts, ", ",
                                                   w.hidden, "]"));
  }
  if (w.shared.has_value() != (w.shared_width > 0)) {
    return absl::InvalidArgumentError(absl::StrCat("MoeLayerCuda: shared weights ",
                                                   w.shared.has_value() ? "given" : "missing",
                                                   " but shared_width=", w.shared_width));
  }
  auto layer = std::unique_ptr<MoeLayerCuda>(new MoeLayerCuda(context, gemm));
  layer->hidden_ = w.hidden;
  layer->num_experts_ = r.num_experts;
  layer->num_slots_ = num_slots;
  layer->routing_ = r;
  if (!slots.empty()) {
    layer->max_replicas_ = slots.max_replicas;
    MOESERVE_ASSIGN_OR_RETURN(
        layer->replica_count_,
        DeviceBuffer::FromHost(slots.replica_count.data(), slots.replica_count.size() * 4));
    MOESERVE_ASSIGN_OR_RETURN(
        layer->local_slot_,
        DeviceBuffer::FromHost(slots.local_slot.data(), slots.local_slot.size() * 4));
  }
  MOESERVE_ASSIGN_OR_RETURN(
      layer->router_, DeviceBuffer::FromHost(w.router.data(), w.router.size() * sizeof(uint16_t)));
  if (r.correction_bias != nullptr) {
    MOESERVE_ASSIGN_OR_RETURN(
        layer->correction_bias_,
        DeviceBuffer::FromHost(r.correction_bias,
                               static_cast<size_t>(r.num_experts) * sizeof(float)));
    layer->routing_.correction_bias = layer->correction_bias_.as<float>();
  }
  std::vector<const Fp8MlpHostWeights*> experts;
  for (const Fp8MlpHostWeights& e : w.experts) experts.push_back(&e);
  MOESERVE_ASSIGN_OR_RETURN(layer->experts_, Upload(experts, w.hidden, w.expert_width, "experts"));
  if (w.shared.has_value()) {
    MOESERVE_ASSIGN_OR_RETURN(layer->shared_,
                              Upload({&*w.shared}, w.hidden, w.shared_width, "shared"));
  }
  layer->host_offsets_.resize(static_cast<size_t>(num_slots + 1));
  return layer;
}

size_t MoeLayerCuda::weight_bytes() const {
  size_t bytes = router_.size_bytes() + correction_bias_.size_bytes();
  auto add = [&](const StackedMlps& m) {
    bytes += m.gate_up.size_bytes() + m.gate_up_scales.size_bytes() + m.down.size_bytes() +
             m.down_scales.size_bytes();
  };
  add(experts_);
  if (shared_.has_value()) add(*shared_);
  return bytes;
}

Fp8WeightView MoeLayerCuda::GateUpView(const StackedMlps& mlps, int64_t index) const {
  const int64_t n = 2 * mlps.width, k = hidden_;
  const int64_t stride = Fp8ScaleStride(k);
  return Fp8WeightView{mlps.gate_up.as<uint8_t>() + index * n * k,
                       mlps.gate_up_scales.as<float>() + index * CeilDiv(n, kFp8BlockSize) * stride,
                       n, k, stride};
}

Fp8WeightView MoeLayerCuda::DownView(const StackedMlps& mlps, int64_t index) const {
  const int64_t n = hidden_, k = mlps.width;
  const int64_t stride = Fp8ScaleStride(k);
  return Fp8WeightView{mlps.down.as<uint8_t>() + index * n * k,
                       mlps.down_scales.as<float>() + index * CeilDiv(n, kFp8BlockSize) * stride, n,
                       k, stride};
}

size_t MoeLayerCuda::ScratchBytes(int64_t num_tokens) const {
  const int64_t entries = num_tokens * routing_.top_k;
  const ScratchSizes sizes{
      entries,
      MoePermutedRowsUpperBound(num_tokens, routing_.top_k, num_slots_, kSegmentAlignment),
      Fp8PaddedTokens(num_tokens),
      hidden_,
      experts_.width,
      shared_.has_value() ? shared_->width : 0,
      num_slots_,
      shared_.has_value()};
  size_t total = num_tokens * num_experts_ * sizeof(float) + DeviceArena::kAlignmentBytes;
  sizes.ForEach([&](int64_t bytes) {
    total += static_cast<size_t>(AlignUp(bytes, DeviceArena::kAlignmentBytes));
  });
  return total;
}

absl::Status MoeLayerCuda::Forward(const uint16_t* x, int64_t num_tokens, uint16_t* out) {
  if (num_tokens < 0) {
    return absl::InvalidArgumentError(absl::StrCat("MoeLayerCuda: num_tokens=", num_tokens));
  }
  if (num_tokens == 0) return absl::OkStatus();
  DeviceArena& arena = context_.arena();
  const int64_t entries = num_tokens * routing_.top_k;
  MOESERVE_ASSIGN_OR_RETURN(float* logits,
                            Take<float>(arena, num_tokens * num_experts_ * sizeof(float)));
  MOESERVE_ASSIGN_OR_RETURN(int32_t * ids, Take<int32_t>(arena, entries * 4));
  MOESERVE_ASSIGN_OR_RETURN(float* weights, Take<float>(arena, entries * 4));
  // Router logits in fp32 from BF16 operands, as HF's F.linear(x.float(), W.float()).
  MOESERVE_RETURN_IF_ERROR(gemm_.Bf16(x, router_.as<uint16_t>(), logits, GemmOutputType::kF32,
                                      num_tokens, num_experts_, hidden_));
  MOESERVE_RETURN_IF_ERROR(CudaLaunchStatus(
      LaunchRouteCuda(routing_, logits, num_tokens, ids, weights, context_.stream()),
      "LaunchRouteCuda"));
  return ForwardRouted(x, num_tokens, ids, weights, out);
}

absl::Status MoeLayerCuda::SharedExperts(const uint16_t* x, int64_t num_tokens, uint16_t* y) {
  DeviceArena& arena = context_.arena();
  void* stream = context_.stream();
  const int64_t padded = Fp8PaddedTokens(num_tokens), width = shared_->width;
  MOESERVE_ASSIGN_OR_RETURN(uint8_t * xq, Take<uint8_t>(arena, padded * hidden_));
  MOESERVE_ASSIGN_OR_RETURN(float* xs, Take<float>(arena, padded * Groups(hidden_) * 4));
  MOESERVE_ASSIGN_OR_RETURN(uint16_t * h, Take<uint16_t>(arena, padded * 2 * width * 2));
  MOESERVE_ASSIGN_OR_RETURN(uint8_t * aq, Take<uint8_t>(arena, padded * width));
  MOESERVE_ASSIGN_OR_RETURN(float* as, Take<float>(arena, padded * Groups(width) * 4));
  MOESERVE_RETURN_IF_ERROR(CudaLaunchStatus(
      LaunchQuantizeActivationsFp8Bf16(x, num_tokens, padded, hidden_, xq, xs, stream),
      "LaunchQuantizeActivationsFp8Bf16"));
  MOESERVE_RETURN_IF_ERROR(gemm_.Fp8BlockScaled(xq, xs, GateUpView(*shared_, 0), h, padded));
  MOESERVE_RETURN_IF_ERROR(CudaLaunchStatus(
      LaunchSiluMulQuantizeFp8(h, padded, width, /*segment_offsets=*/nullptr, 0, aq, as, stream),
      "LaunchSiluMulQuantizeFp8"));
  return gemm_.Fp8BlockScaled(aq, as, DownView(*shared_, 0), y, padded);
}

absl::Status MoeLayerCuda::ForwardRouted(const uint16_t* x, int64_t num_tokens,
                                         const int32_t* expert_ids, const float* route_weights,
                                         uint16_t* out) {
  if (num_tokens < 0) {
    return absl::InvalidArgumentError(absl::StrCat("MoeLayerCuda: num_tokens=", num_tokens));
  }
  if (num_tokens == 0) return absl::OkStatus();
  DeviceArena& arena = context_.arena();
  void* stream = context_.stream();
  const int64_t top_k = routing_.top_k, width = experts_.width;
  const int64_t entries = num_tokens * top_k;
  const int64_t max_rows =
      MoePermutedRowsUpperBound(num_tokens, top_k, num_slots_, kSegmentAlignment);
  const int64_t hidden_groups = Groups(hidden_), width_groups = Groups(width);

  MOESERVE_ASSIGN_OR_RETURN(int32_t * scatter, Take<int32_t>(arena, entries * 4));
  MOESERVE_ASSIGN_OR_RETURN(int32_t * gather, Take<int32_t>(arena, max_rows * 4));
  MOESERVE_ASSIGN_OR_RETURN(int32_t * counts, Take<int32_t>(arena, num_slots_ * 4));
  MOESERVE_ASSIGN_OR_RETURN(int32_t * offsets, Take<int32_t>(arena, (num_slots_ + 1) * 4));
  MOESERVE_ASSIGN_OR_RETURN(uint8_t * xq, Take<uint8_t>(arena, max_rows * hidden_));
  MOESERVE_ASSIGN_OR_RETURN(float* xs, Take<float>(arena, max_rows * hidden_groups * 4));
  MOESERVE_ASSIGN_OR_RETURN(uint16_t * h, Take<uint16_t>(arena, max_rows * 2 * width * 2));
  MOESERVE_ASSIGN_OR_RETURN(uint8_t * aq, Take<uint8_t>(arena, max_rows * width));
  MOESERVE_ASSIGN_OR_RETURN(float* as, Take<float>(arena, max_rows * width_groups * 4));
  MOESERVE_ASSIGN_OR_RETURN(uint16_t * y, Take<uint16_t>(arena, max_rows * hidden_ * 2));

  const int32_t* slot_ids = expert_ids;
  if (max_replicas_ > 0) {
    // Expert parallelism: the router's global ids become this rank's slots (-1: elsewhere);
    // the global routing statistics are counted here, before the drop.
    MOESERVE_ASSIGN_OR_RETURN(int32_t * local_ids, Take<int32_t>(arena, entries * 4));
    MOESERVE_RETURN_IF_ERROR(CudaLaunchStatus(
        LaunchMapToLocalSlots(replica_count_.as<int32_t>(), local_slot_.as<int32_t>(), num_experts_,
                              max_replicas_, expert_ids, num_tokens, top_k, local_ids,
                              expert_token_counts_, stream),
        "LaunchMapToLocalSlots"));
    slot_ids = local_ids;
  }
  MOESERVE_RETURN_IF_ERROR(CudaLaunchStatus(
      LaunchBuildMoePermutation(slot_ids, num_tokens, top_k, num_slots_, kSegmentAlignment, counts,
                                offsets, gather, scatter, stream),
      "LaunchBuildMoePermutation"));
  if (expert_token_counts_ != nullptr && max_replicas_ == 0) {
    MOESERVE_RETURN_IF_ERROR(CudaLaunchStatus(
        LaunchAccumulateExpertCounts(counts, num_slots_, expert_token_counts_, stream),
        "LaunchAccumulateExpertCounts"));
  }
  MOESERVE_RETURN_IF_ERROR(
      CudaLaunchStatus(LaunchMoeGatherQuantizeFp8(x, hidden_, top_k, gather, offsets, num_slots_,
                                                  max_rows, xq, xs, stream),
                       "LaunchMoeGatherQuantizeFp8"));
  // The shared experts do not depend on the routing: queue them before the synchronisation.
  uint16_t* shared_y = nullptr;
  if (shared_.has_value()) {
    MOESERVE_ASSIGN_OR_RETURN(shared_y,
                              Take<uint16_t>(arena, Fp8PaddedTokens(num_tokens) * hidden_ * 2));
    MOESERVE_RETURN_IF_ERROR(SharedExperts(x, num_tokens, shared_y));
  }

  const ExpertBuffers buffers{offsets, xq, xs, h, aq, as, y, max_rows};
  if (expert_gemm_ == MoeExpertGemm::kGroupedTensorCores) {
    MOESERVE_RETURN_IF_ERROR(GroupedExpertGemms(buffers, /*tensor_cores=*/true));
  } else if (UsesGroupedGemm(num_tokens)) {
    MOESERVE_RETURN_IF_ERROR(GroupedExpertGemms(buffers, /*tensor_cores=*/false));
  } else {
    MOESERVE_RETURN_IF_ERROR(PerExpertGemms(buffers));
  }
  return CudaLaunchStatus(LaunchMoeUnpermute(y, scatter, route_weights, num_tokens, top_k, hidden_,
                                             shared_y, out, stream),
                          "LaunchMoeUnpermute");
}

bool MoeLayerCuda::UsesGroupedGemm(int64_t num_tokens) const {
  switch (expert_gemm_) {
    case MoeExpertGemm::kPerExpertCublasLt:
      return false;
    case MoeExpertGemm::kGroupedNoSync:
      return true;
    case MoeExpertGemm::kGroupedTensorCores:
      return false;  // ForwardRouted takes that path before asking
    case MoeExpertGemm::kAuto:
      break;
  }
  // The grouped kernel reads 16-byte vectors along K.
  return num_tokens <= kGroupedMaxTokens && hidden_ % 16 == 0 && experts_.width % 16 == 0;
}

absl::Status MoeLayerCuda::PerExpertGemms(const ExpertBuffers& b) {
  const int64_t width = experts_.width;
  const int64_t hidden_groups = Groups(hidden_), width_groups = Groups(width);
  void* stream = context_.stream();
  // The one host synchronisation: the per-expert GEMM loop needs the segment offsets.
  cudaStream_t cuda_stream = static_cast<cudaStream_t>(stream);
  MOESERVE_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(host_offsets_.data(), b.offsets,
                                                host_offsets_.size() * sizeof(int32_t),
                                                cudaMemcpyDeviceToHost, cuda_stream));
  MOESERVE_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(cuda_stream));

  for (int64_t e = 0; e < num_slots_; ++e) {
    const int64_t begin = host_offsets_[e], rows = host_offsets_[e + 1] - begin;
    if (rows == 0) continue;  // an expert with no tokens costs nothing
    MOESERVE_RETURN_IF_ERROR(
        gemm_.Fp8BlockScaled(b.xq + begin * hidden_, b.xs + begin * hidden_groups,
                             GateUpView(experts_, e), b.h + begin * 2 * width, rows));
  }
  MOESERVE_RETURN_IF_ERROR(CudaLaunchStatus(
      LaunchSiluMulQuantizeFp8(b.h, b.max_rows, width, b.offsets, num_slots_, b.aq, b.as, stream),
      "LaunchSiluMulQuantizeFp8"));
  for (int64_t e = 0; e < num_slots_; ++e) {
    const int64_t begin = host_offsets_[e], rows = host_offsets_[e + 1] - begin;
    if (rows == 0) continue;
    MOESERVE_RETURN_IF_ERROR(gemm_.Fp8BlockScaled(b.aq + begin * width, b.as + begin * width_groups,
                                                  DownView(experts_, e), b.y + begin * hidden_,
                                                  rows));
  }
  return absl::OkStatus();
}

absl::Status MoeLayerCuda::GroupedExpertGemms(const ExpertBuffers& b, bool tensor_cores) {
  const int64_t width = experts_.width;
  void* stream = context_.stream();
  // Both kernels read the segment offsets on the device; only the math differs.
  auto gemm = [&](const uint8_t* x, const float* xs, const StackedMlps& m, bool gate_up,
                  uint16_t* y) {
    const int64_t n = gate_up ? 2 * width : hidden_, k = gate_up ? hidden_ : width;
    const uint8_t* w = gate_up ? m.gate_up.as<uint8_t>() : m.down.as<uint8_t>();
    const float* ws = gate_up ? m.gate_up_scales.as<float>() : m.down_scales.as<float>();
    return tensor_cores ? LaunchMoeGroupedFp8GemmMma(x, xs, b.offsets, num_slots_, b.max_rows, w,
                                                     ws, n, k, Fp8ScaleStride(k), y, stream)
                        : LaunchMoeGroupedFp8Gemm(x, xs, b.offsets, num_slots_, w, ws, n, k,
                                                  Fp8ScaleStride(k), y, stream);
  };
  const char* name = tensor_cores ? "LaunchMoeGroupedFp8GemmMma" : "LaunchMoeGroupedFp8Gemm";
  MOESERVE_RETURN_IF_ERROR(CudaLaunchStatus(gemm(b.xq, b.xs, experts_, true, b.h),
                                            absl::StrCat(name, "(gate_up)").c_str()));
  MOESERVE_RETURN_IF_ERROR(CudaLaunchStatus(
      LaunchSiluMulQuantizeFp8(b.h, b.max_rows, width, b.offsets, num_slots_, b.aq, b.as, stream),
      "LaunchSiluMulQuantizeFp8"));
  return CudaLaunchStatus(gemm(b.aq, b.as, experts_, false, b.y),
                          absl::StrCat(name, "(down)").c_str());
}

}  // namespace moeserve::engine
