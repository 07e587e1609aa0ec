// A CPU LinearWeight in the FP8 block-128 format from fp32 values (quantized as a checkpoint's
// would be), for tests of the layers that take LinearWeights.
#pragma once

#include <cstdint>
#include <utility>
#include <vector>

#include "engine/model/weights.h"
#include "engine/ops/cpu/cpu_features.h"
#include "engine/ops/linear/fp8_quant.h"

namespace moeserve::engine::testing {

// values: [rows, cols] row-major; the GEMM runs on `isa`.
inline LinearWeight Fp8Linear(const std::vector<float>& values, int64_t rows, int64_t cols,
                              CpuIsa isa) {
  Fp8BlockWeight q = QuantizeFp8BlockWeight(values, rows, cols);
  LinearWeight w;
  w.out_features = rows;
  w.in_features = cols;
  w.format = WeightFormat::kFp8Block128;
  w.weight_fp8 = std::move(q.fp8);
  w.scale_inv = std::move(q.scale_inv);
  w.fp8 = true;
  w.isa = isa;
  return w;
}

}  // namespace moeserve::engine::testing
