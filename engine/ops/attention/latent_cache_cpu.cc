#include <cstring>

#include "engine/ops/attention/latent_cache.h"

namespace moeserve::engine {

void WriteLatentCacheCpu(const float* latent, const int64_t* slot_mapping, int64_t num_tokens,
                         int64_t kv_dim, LatentPages pages) {
  for (int64_t t = 0; t < num_tokens; ++t) {
    if (slot_mapping[t] < 0) continue;
    const float* src = latent + t * kv_dim;
    if (pages.dtype == DType::kBF16) {
      uint16_t* dst = static_cast<uint16_t*>(pages.data) + slot_mapping[t] * kv_dim;
      for (int64_t d = 0; d < kv_dim; ++d) dst[d] = FloatToBf16(src[d]);
    } else {
      std::memcpy(static_cast<float*>(pages.data) + slot_mapping[t] * kv_dim, src,
                  kv_dim * sizeof(float));
    }
  }
}

void GatherLatentCacheCpu(LatentPagesView pages, const int32_t* block_table, int64_t num_tokens,
                          int64_t block_size, int64_t kv_dim, float* out) {
  for (int64_t j = 0; j < num_tokens; ++j) {
    const int64_t slot =
        static_cast<int64_t>(block_table[j / block_size]) * block_size + j % block_size;
    int64_t ld = 0;
    const float* row =
        LatentColumnsAsFloat(pages, slot, 1, kv_dim, 0, kv_dim, out + j * kv_dim, &ld);
    if (row != out + j * kv_dim) std::memcpy(out + j * kv_dim, row, kv_dim * sizeof(float));
  }
}

WeightMatrixView LatentBlockView(LatentPagesView pages, int64_t block_id, int64_t block_size,
                                 int64_t rows, int64_t kv_dim) {
  const int64_t offset = block_id * block_size * kv_dim;
  if (pages.dtype == DType::kBF16) {
    return {WeightFormat::kBf16, static_cast<const uint16_t*>(pages.data) + offset, nullptr, rows,
            kv_dim};
  }
  return {WeightFormat::kF32, static_cast<const float*>(pages.data) + offset, nullptr, rows,
          kv_dim};
}

const float* LatentColumnsAsFloat(LatentPagesView pages, int64_t first_slot, int64_t rows,
                                  int64_t kv_dim, int64_t col, int64_t width, float* scratch,
                                  int64_t* ld) {
  if (pages.dtype != DType::kBF16) {
    *ld = kv_dim;
    return static_cast<const float*>(pages.data) + first_slot * kv_dim + col;
  }
  const uint16_t* src = static_cast<const uint16_t*>(pages.data) + first_slot * kv_dim + col;
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < width; ++c) scratch[r * width + c] = Bf16ToFloat(src[r * kv_dim + c]);
  }
  *ld = width;
  return scratch;
}

}  // namespace moeserve::engine
