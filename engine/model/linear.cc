#include "engine/model/linear.h"

#include <algorithm>
#include <vector>

#include "engine/ops/dtype.h"
#include "engine/ops/linear/fp8_quant.h"
#include "engine/ops/linear/weight_gemm_onednn.h"

namespace moeserve::engine {

WeightMatrixView LinearWeight::view() const {
  WeightMatrixView v{format, nullptr, nullptr, out_features, in_features};
  switch (format) {
    case WeightFormat::kF32:
      v.data = weight.data();
      break;
    case WeightFormat::kBf16:
      v.data = weight_bf16.data();
      break;
    case WeightFormat::kFp8Block128:
      v.data = weight_fp8.data();
      v.scale_inv = scale_inv.data();
      break;
  }
  return v;
}

size_t LinearWeight::size_bytes() const {
  return weight.size() * sizeof(float) + weight_bf16.size() * sizeof(uint16_t) + weight_fp8.size() +
         scale_inv.size() * sizeof(float);
}

std::vector<float> DequantizeLinear(const LinearWeight& linear) {
  switch (linear.format) {
    case WeightFormat::kF32:
      return linear.weight;
    case WeightFormat::kBf16:
      return Bf16ToFloats(linear.weight_bf16);
    case WeightFormat::kFp8Block128:
      return DequantizeFp8BlockWeight(linear.weight_fp8, linear.scale_inv, linear.out_features,
                                      linear.in_features);
  }
  return {};
}

bool CanStackRows(const LinearWeight& a, const LinearWeight& b) {
  return a.format == b.format &&
         (a.format != WeightFormat::kFp8Block128 || a.out_features % kFp8BlockSize == 0);
}

LinearWeight StackRows(LinearWeight a, LinearWeight b) {
  LinearWeight out;
  out.out_features = a.out_features + b.out_features;
  out.in_features = a.in_features;
  out.fp8 = a.fp8 && b.fp8;
  out.isa = a.isa;
  out.library_gemm = a.library_gemm;
  if (!CanStackRows(a, b)) {
    out.weight = DequantizeLinear(a);
    const std::vector<float> rest = DequantizeLinear(b);
    out.weight.insert(out.weight.end(), rest.begin(), rest.end());
    return out;
  }
  auto append = [](auto& to, auto& from) { to.insert(to.end(), from.begin(), from.end()); };
  out.format = a.format;
  out.weight = std::move(a.weight);
  append(out.weight, b.weight);
  out.weight_bf16 = std::move(a.weight_bf16);
  append(out.weight_bf16, b.weight_bf16);
  out.weight_fp8 = std::move(a.weight_fp8);
  append(out.weight_fp8, b.weight_fp8);
  out.scale_inv = std::move(a.scale_inv);
  append(out.scale_inv, b.scale_inv);
  return out;
}

LinearWeight StackedGateUp(const MlpWeights& mlp) {
  return mlp.up.has_value() ? StackRows(mlp.gate_up, *mlp.up) : mlp.gate_up;
}

void ApplyLinear(const LinearWeight& linear, const float* x, int64_t rows, int64_t ldx,
                 bool quantize_activations, float* y, int64_t ldy, bool accumulate) {
  if (ldy < 0) ldy = linear.out_features;
  const int64_t k = linear.in_features;
  if (linear.fp8 && quantize_activations) {
    std::vector<float> quantized(static_cast<size_t>(rows * k));
    for (int64_t r = 0; r < rows; ++r) {
      std::copy(x + r * ldx, x + r * ldx + k, quantized.begin() + r * k);
    }
    RoundTripActivationsFp8(absl::MakeSpan(quantized), rows, k);
    WeightGemmCpu(quantized.data(), k, linear.view(), y, ldy, rows, accumulate, linear.isa);
    return;
  }
  if (linear.library_gemm && linear.format == WeightFormat::kBf16 && rows >= kOneDnnMinRows) {
    WeightGemmOneDnnBf16(x, ldx, linear.view(), y, ldy, rows, accumulate);
    return;
  }
  WeightGemmCpu(x, ldx, linear.view(), y, ldy, rows, accumulate, linear.isa);
}

}  // namespace moeserve::engine
