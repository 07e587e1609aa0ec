// silu(g) · u on the device, the one formula behind silu_mul.h's contract, shared by the plain
// SiLU-and-mul kernel and the fused SiLU·mul + FP8 requantization. Device code only.
#pragma once

#include <cuda_runtime.h>

namespace moeserve::engine {

// expf (not __expf): matches std::exp to within an ulp, as the CPU twin uses.
__device__ __forceinline__ float SiluMul(float gate, float up) {
  return gate / (1.0f + expf(-gate)) * up;
}

}  // namespace moeserve::engine
