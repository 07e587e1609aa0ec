// y = x · Wᵀ with W held in its checkpoint precision (fp32, BF16 or DeepSeek FP8 with 128×128
// block scales) and converted to fp32 in registers, never expanded in memory (issue 20).
//
// x and y are fp32 and every product is accumulated in fp32; each weight element is the exact
// value the checkpoint encodes (a BF16 widened, or an e4m3 exactly widened and then scaled by
// its block's scale_inv as DequantizeFp8BlockWeight does), so the result equals GemmCpu on the
// dequantized matrix up to the order of the fp32 roundings (the SIMD paths scale x by the block
// scale rather than every weight: (x·s)·w for x·(w·s)). Every implementation reduces each output
// element in one fixed order whatever M is and whichever thread computes it: greedy output is
// bit-identical alone or batched (DESIGN.md §4) for any one instruction set.
//
// Implementations, side by side, tested against each other (weight_gemm_test.cc):
//   kPortable — dequantizes 64 weight rows at a time and runs GemmCpu on them: bit-identical to
//               the fp32 reference backend on the dequantized weights;
//   kAvx2     — 8-lane FMA micro-tiles (kernels_avx2.cc);
//   kAvx512   — 16-lane FMA micro-tiles (kernels_avx512.cc);
//   kAvx512Bf16 — BF16 weights, and FP8 on CPUs with AVX-512-VBMI: x rounded to bf16 once,
//               e4m3 turned into bf16 by table lookup, vdpbf16ps micro-tiles
//               (kernels_avx512_bf16.cc); the rest as kAvx512 (docs/cpu-numerics.md).
//               The one path whose result is not "GemmCpu up to summation order": it is
//               GemmCpu on bf16-rounded x.
// The model's linears (engine/model/linear.h) call it with BestCpuIsa().
#pragma once

#include <cstdint>

#include "engine/ops/cpu/cpu_features.h"

namespace moeserve::engine {

enum class WeightFormat {
  kF32,
  kBf16,
  kFp8Block128,  // F8_E4M3 with weight_scale_inv per 128×128 block (reference §4)
};
const char* WeightFormatName(WeightFormat format);
int64_t WeightFormatBytes(WeightFormat format);  // bytes per weight element

// A read-only [rows, cols] weight matrix, row-major (ld = cols).
struct WeightMatrixView {
  WeightFormat format = WeightFormat::kF32;
  const void* data = nullptr;        // float, uint16_t (bf16 bits) or uint8_t (e4m3)
  const float* scale_inv = nullptr;  // kFp8Block128: [ceil(rows/128), ceil(cols/128)]
  int64_t rows = 0;                  // out_features
  int64_t cols = 0;                  // in_features
};

// x: [m, w.cols] with row stride ldx; y: [m, w.rows] with row stride ldy. accumulate: y += x·Wᵀ.
// `isa` must be available (CpuIsaAvailable); tests pass each one, the model BestCpuIsa().
void WeightGemmCpu(const float* x, int64_t ldx, const WeightMatrixView& w, float* y, int64_t ldy,
                   int64_t m, bool accumulate, CpuIsa isa);

// Whether WeightGemmCpu rounds x to bf16 for this weight format on this instruction set (the
// kAvx512Bf16 paths); otherwise its result is GemmCpu's up to the order of fp32 roundings.
bool WeightGemmRoundsInputsToBf16(WeightFormat format, CpuIsa isa);

// The per-ISA entry points behind WeightGemmCpu (same contract).
void WeightGemmAvx2(const float* x, int64_t ldx, const WeightMatrixView& w, float* y, int64_t ldy,
                    int64_t m, bool accumulate);
void WeightGemmAvx512(const float* x, int64_t ldx, const WeightMatrixView& w, float* y, int64_t ldy,
                      int64_t m, bool accumulate);
void WeightGemmAvx512Bf16(const float* x, int64_t ldx, const WeightMatrixView& w, float* y,
                          int64_t ldy, int64_t m, bool accumulate);

}  // namespace moeserve::engine
