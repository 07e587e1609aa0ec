#include "engine/model/linear.h"

#include <vector>

#include "engine/ops/linear/fp8_quant.h"
#include "engine/ops/linear/gemm.h"

namespace moeserve::engine {

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
    GemmCpu(quantized.data(), k, linear.weight.data(), y, ldy, rows, linear.out_features, k,
            accumulate);
    return;
  }
  GemmCpu(x, ldx, linear.weight.data(), y, ldy, rows, linear.out_features, k, accumulate);
}

}  // namespace moeserve::engine
