// Random FP8 and BF16 weights for the GPU benchmarks, made fast enough for a V2-Lite-sized model
// (~15 GB of FP8 experts): values come from small random patterns tiled over the tensor, which
// is all a timing needs (routing still spreads, activations stay finite and O(1)). Also the
// device-to-device copy bandwidth every "ratio to the memory floor" divides by.
#pragma once

#include <cuda_runtime_api.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "bench/gpu/gpu_bench_util.h"
#include "engine/ops/cuda/device_buffer.h"
#include "engine/ops/dtype.h"
#include "engine/ops/linear/fp8_quant.h"
#include "engine/ops/moe/moe_layer_cuda.h"

namespace moeserve::bench {

// Finite random e4m3 bytes, tiled from a 64 KiB pattern that starts at a random offset per call.
inline std::vector<uint8_t> RandomFp8(size_t n, std::mt19937& rng) {
  std::vector<uint8_t> pattern(size_t{1} << 16);
  for (uint8_t& b : pattern) {
    b = static_cast<uint8_t>(rng());
    if ((b & 0x7F) == 0x7F) b &= 0xF0;  // 0x7F and 0xFF are NaN
  }
  std::vector<uint8_t> out(n);
  for (size_t i = 0; i < n; i += pattern.size()) {
    std::memcpy(out.data() + i, pattern.data(), std::min(pattern.size(), n - i));
  }
  return out;
}

// A [rows, cols] FP8 weight whose values (e4m3 up to 448 times 1/(448·sqrt(cols))) keep a
// linear's outputs O(1).
inline engine::Fp8BlockWeight RandomFp8Weight(int64_t rows, int64_t cols, std::mt19937& rng) {
  engine::Fp8BlockWeight w;
  w.fp8 = RandomFp8(static_cast<size_t>(rows * cols), rng);
  w.scale_inv.assign(static_cast<size_t>((rows + 127) / 128 * ((cols + 127) / 128)),
                     1.0f / (448.0f * std::sqrt(static_cast<float>(cols))));
  return w;
}

inline engine::Fp8MlpHostWeights RandomFp8Mlp(int64_t width, int64_t hidden, std::mt19937& rng) {
  return {RandomFp8Weight(2 * width, hidden, rng), RandomFp8Weight(hidden, width, rng)};
}

// n normal(0, stddev) values, tiled from a 1 Mi-value pattern.
inline std::vector<float> RandomNormalTiled(size_t n, double stddev, std::mt19937& rng) {
  std::normal_distribution<float> normal(0.0f, static_cast<float>(stddev));
  std::vector<float> pattern(std::min(n, size_t{1} << 20));
  for (float& v : pattern) v = normal(rng);
  std::vector<float> out(n);
  for (size_t i = 0; i < n; i += pattern.size()) {
    std::copy_n(pattern.begin(), std::min(pattern.size(), n - i), out.begin() + i);
  }
  return out;
}

// Read + write bytes per second of a 512 MiB device-to-device copy on `stream`.
inline double MeasureCopyBandwidth(cudaStream_t stream) {
  const size_t bytes = size_t{512} << 20;
  auto a = engine::DeviceBuffer::Allocate(bytes);
  auto b = engine::DeviceBuffer::Allocate(bytes);
  MustOk(a.status());
  MustOk(b.status());
  const double ms = TimeMs(stream, 2, 10, [&] {
    CheckCuda(cudaMemcpyAsync(b->data(), a->data(), bytes, cudaMemcpyDeviceToDevice, stream),
              "cudaMemcpyAsync");
  });
  return 2.0 * static_cast<double>(bytes) / (ms * 1e-3);
}

}  // namespace moeserve::bench
