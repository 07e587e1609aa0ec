#include <cmath>

#include "engine/ops/cpu/parallel_for.h"
#include "engine/ops/norm/rms_norm.h"

namespace moeserve::engine {

void RmsNormCpu(absl::Span<const float> x, absl::Span<const float> weight, float eps,
                int64_t num_rows, absl::Span<float> y) {
  const int64_t dim = static_cast<int64_t>(weight.size());
  ParallelFor(num_rows, num_rows * dim > (1 << 15), [&](int64_t r) {
    const float* in = x.data() + r * dim;
    float* out = y.data() + r * dim;
    double sum_squares = 0.0;
    for (int64_t i = 0; i < dim; ++i) sum_squares += static_cast<double>(in[i]) * in[i];
    const float inv_rms = 1.0f / std::sqrt(static_cast<float>(sum_squares / dim) + eps);
    for (int64_t i = 0; i < dim; ++i) out[i] = weight[i] * (in[i] * inv_rms);
  });
}

}  // namespace moeserve::engine
