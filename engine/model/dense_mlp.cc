#include "engine/model/dense_mlp.h"

#include <vector>

#include "engine/model/linear.h"
#include "engine/ops/activation/silu_mul.h"

namespace moeserve::engine {

void MlpForward(const MlpWeights& mlp, const float* x, int64_t rows, bool quantize_activations,
                float* out, bool accumulate) {
  const int64_t width = mlp.width();
  std::vector<float> gate_up(static_cast<size_t>(rows * 2 * width));
  const int64_t hidden = mlp.gate_up.in_features;
  if (mlp.up.has_value()) {  // held apart (weights.h): both write into the stacked layout
    ApplyLinear(mlp.gate_up, x, rows, hidden, quantize_activations, gate_up.data(), 2 * width);
    ApplyLinear(*mlp.up, x, rows, hidden, quantize_activations, gate_up.data() + width, 2 * width);
  } else {
    ApplyLinear(mlp.gate_up, x, rows, hidden, quantize_activations, gate_up.data());
  }
  std::vector<float> activated(static_cast<size_t>(rows * width));
  SiluMulCpu(gate_up.data(), rows, width, activated.data());
  ApplyLinear(mlp.down, activated.data(), rows, width, quantize_activations, out, -1, accumulate);
}

}  // namespace moeserve::engine
