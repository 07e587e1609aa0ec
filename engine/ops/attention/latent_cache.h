// Reads and writes of the paged latent KV cache, one layer at a time.
//
// A layer's pages are [num_blocks, block_size, kv_dim] with kv_dim = 576 = [c_kv(512) |
// k_pe(64)] (reference §3.1: c_kv after its RMSNorm, k_pe after RoPE), held in fp32 (the
// reference kernel set: results equal to the fp32 oracle) or BF16 (the fast kernel sets, as on
// the GPU: half the memory and half the bytes attention reads). A slot is
// block_id * block_size + offset. The model's MLA layer writes each step's new tokens, then the
// attention ops read whole contexts through the sequence's block table; both forms read the
// rounded values back, so a context gives the same result however it was chunked or batched.
#pragma once

#include <cstdint>

#include "engine/ops/dtype.h"
#include "engine/ops/linear/weight_gemm.h"

namespace moeserve::engine {

// One layer of the cache, read-only: kF32 (float) or kBF16 (uint16_t bf16 bits) elements. A
// plain float pointer is fp32 pages.
struct LatentPagesView {
  DType dtype = DType::kF32;
  const void* data = nullptr;
  LatentPagesView() = default;
  LatentPagesView(const float* fp32_pages) : data(fp32_pages) {}  // NOLINT(runtime/explicit)
  LatentPagesView(DType element_type, const void* pages) : dtype(element_type), data(pages) {}
};

// The same, writable (the MLA layer's write of each step's latents).
struct LatentPages {
  DType dtype = DType::kF32;
  void* data = nullptr;
  LatentPages(float* fp32_pages) : data(fp32_pages) {}  // NOLINT(runtime/explicit)
  LatentPages(DType element_type, void* pages) : dtype(element_type), data(pages) {}
  operator LatentPagesView() const { return {dtype, data}; }  // NOLINT(runtime/explicit)
};

// latent: [num_tokens, kv_dim]; slot_mapping: [num_tokens] (negative = skip, e.g. padding).
// BF16 pages get each value rounded to nearest even.
void WriteLatentCacheCpu(const float* latent, const int64_t* slot_mapping, int64_t num_tokens,
                         int64_t kv_dim, LatentPages pages);

// Copies the first `num_tokens` cached vectors of one sequence into out: [num_tokens, kv_dim]
// (BF16 widened exactly).
void GatherLatentCacheCpu(LatentPagesView pages, const int32_t* block_table, int64_t num_tokens,
                          int64_t block_size, int64_t kv_dim, float* out);

// Cache block `block_id`'s first `rows` vectors as a [rows, kv_dim] matrix, read in place.
WeightMatrixView LatentBlockView(LatentPagesView pages, int64_t block_id, int64_t block_size,
                                 int64_t rows, int64_t kv_dim);

// Columns [col, col + width) of `rows` vectors starting at slot `first_slot` (all in one
// block) as fp32 rows `width` apart: a pointer into fp32 pages (stride kv_dim, *ld = kv_dim),
// or into `scratch` ([rows, width], *ld = width) after widening BF16.
const float* LatentColumnsAsFloat(LatentPagesView pages, int64_t first_slot, int64_t rows,
                                  int64_t kv_dim, int64_t col, int64_t width, float* scratch,
                                  int64_t* ld);

}  // namespace moeserve::engine
