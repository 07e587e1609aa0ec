// Warp-level BF16 tensor-core helpers shared by the MLA attention kernels (device code only;
// include from .cu files): mma.sync m16n8k16 with fp32 accumulators, fragment loads from padded
// shared-memory tiles, and cp.async copies global → shared.
//
// Fragment layouts are the PTX ISA's for mma.m16n8k16 .bf16 (g = lane / 4, t = lane % 4):
//   A (16×16, row-major): a[0] = (row g, cols 2t..2t+1), a[1] = (row g+8, cols 2t..2t+1),
//                         a[2] = (row g, cols 2t+8..2t+9), a[3] = (row g+8, cols 2t+8..2t+9);
//   B (16×8, k × n):      b[0] = (k 2t..2t+1, col g), b[1] = (k 2t+8..2t+9, col g);
//   C (16×8, fp32):       c[0..1] = (row g, cols 2t..2t+1), c[2..3] = (row g+8, same cols).
// Each 32-bit register holds two bf16 with the lower index in the low half. Loads are plain
// 32-bit shared loads (no ldmatrix) so the index arithmetic stays visible; callers pad rows so
// that the eight row groups g of a warp land in different banks.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

namespace moeserve::engine::cuda {

// d += a · b for one 16×8×16 tile.
__device__ __forceinline__ void MmaBf16M16N8K16(float (&d)[4], const uint32_t (&a)[4],
                                                const uint32_t (&b)[2]) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
      "{%8, %9}, {%0, %1, %2, %3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

__device__ __forceinline__ uint32_t LoadPair(const __nv_bfloat16* p) {
  return *reinterpret_cast<const uint32_t*>(p);
}

// Two bf16 from different addresses into one register, `lo` in the low half.
__device__ __forceinline__ uint32_t PackPair(__nv_bfloat16 lo, __nv_bfloat16 hi) {
  return static_cast<uint32_t>(__bfloat16_as_ushort(lo)) |
         (static_cast<uint32_t>(__bfloat16_as_ushort(hi)) << 16);
}

__device__ __forceinline__ uint32_t PackFloats(float lo, float hi) {
  return PackPair(__float2bfloat16(lo), __float2bfloat16(hi));
}

// A fragment of rows [row0, row0 + 16) × cols [col0, col0 + 16) of a row-major tile whose rows
// are `stride` elements apart (col0 and stride even).
__device__ __forceinline__ void LoadFragmentA(const __nv_bfloat16* tile, int stride, int row0,
                                              int col0, int lane, uint32_t (&a)[4]) {
  const int g = lane / 4, t = lane % 4;
  const __nv_bfloat16* top = tile + (row0 + g) * stride + col0 + 2 * t;
  const __nv_bfloat16* bottom = top + 8 * stride;
  a[0] = LoadPair(top);
  a[1] = LoadPair(bottom);
  a[2] = LoadPair(top + 8);
  a[3] = LoadPair(bottom + 8);
}

// B fragment for B = Mᵀ where M is a row-major [n][k] tile (e.g. K in Q·Kᵀ): B rows k0..k0+15,
// cols n0..n0+7.
__device__ __forceinline__ void LoadFragmentBTransposed(const __nv_bfloat16* tile, int stride,
                                                        int n0, int k0, int lane,
                                                        uint32_t (&b)[2]) {
  const int g = lane / 4, t = lane % 4;
  const __nv_bfloat16* row = tile + (n0 + g) * stride + k0 + 2 * t;
  b[0] = LoadPair(row);
  b[1] = LoadPair(row + 8);
}

// B fragment for B = M where M is a row-major [k][n] tile (e.g. V in P·V): B rows k0..k0+15,
// cols n0..n0+7. The two values of a register come from consecutive rows, so two 16-bit loads.
__device__ __forceinline__ void LoadFragmentB(const __nv_bfloat16* tile, int stride, int k0, int n0,
                                              int lane, uint32_t (&b)[2]) {
  const int g = lane / 4, t = lane % 4;
  const __nv_bfloat16* p = tile + (k0 + 2 * t) * stride + n0 + g;
  b[0] = PackPair(p[0], p[stride]);
  b[1] = PackPair(p[8 * stride], p[9 * stride]);
}

// 16-byte asynchronous copy global → shared (both 16-byte aligned), cached in L2 only.
__device__ __forceinline__ void CpAsync16(void* shared, const void* global) {
  const uint32_t dst = static_cast<uint32_t>(__cvta_generic_to_shared(shared));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(dst), "l"(global) : "memory");
}

__device__ __forceinline__ void CpAsyncCommit() {
  asm volatile("cp.async.commit_group;\n" ::: "memory");
}

// Waits until at most `kPending` committed groups of this thread are still in flight.
template <int kPending>
__device__ __forceinline__ void CpAsyncWait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(kPending) : "memory");
}

__device__ __forceinline__ void StoreZero16(void* shared) {
  *reinterpret_cast<uint4*>(shared) = make_uint4(0, 0, 0, 0);
}

}  // namespace moeserve::engine::cuda
