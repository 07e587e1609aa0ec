#include <cmath>

#include "engine/ops/activation/silu_mul.h"
#include "engine/ops/cpu/parallel_for.h"

namespace moeserve::engine {

void SiluMulCpu(const float* gate_up, int64_t num_tokens, int64_t width, float* out) {
  ParallelFor(num_tokens, num_tokens * width > (1 << 15), [&](int64_t t) {
    const float* gate = gate_up + t * 2 * width;
    const float* up = gate + width;
    for (int64_t i = 0; i < width; ++i) {
      const float g = gate[i];
      out[t * width + i] = g / (1.0f + std::exp(-g)) * up[i];
    }
  });
}

}  // namespace moeserve::engine
