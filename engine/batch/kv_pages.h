// The memory of the paged latent KV cache on the CPU backend.
//
// Per layer [num_blocks, kKvBlockSize, kv_dim] (kv_dim = 576 = [c_kv | k_pe]) of fp32 or BF16
// (latent_cache.h says which kernel set uses which). Owned by the model runner
// (ARCHITECTURE.md §3); block ids are handed out by the KV cache manager and mean the same
// thing here.
#pragma once

#include <cstdint>
#include <vector>

#include "engine/batch/forward_batch.h"
#include "engine/ops/attention/latent_cache.h"
#include "engine/ops/dtype.h"

namespace moeserve::engine {

class KvPages {
 public:
  // dtype: DType::kF32 or DType::kBF16.
  KvPages(int64_t num_layers, int64_t num_blocks, int64_t kv_dim, DType dtype = DType::kF32)
      : num_layers_(num_layers),
        num_blocks_(num_blocks),
        kv_dim_(kv_dim),
        dtype_(dtype),
        // Held as floats (aligned for either element type), enough for the bytes needed.
        data_(static_cast<size_t>((num_layers * layer_bytes() + 3) / 4)) {}

  int64_t num_layers() const { return num_layers_; }
  int64_t num_blocks() const { return num_blocks_; }
  int64_t kv_dim() const { return kv_dim_; }
  DType dtype() const { return dtype_; }
  int64_t element_bytes() const { return dtype_ == DType::kBF16 ? 2 : 4; }
  int64_t layer_bytes() const { return num_blocks_ * kKvBlockSize * kv_dim_ * element_bytes(); }
  LatentPages layer(int64_t l) {
    return {dtype_, reinterpret_cast<char*>(data_.data()) + l * layer_bytes()};
  }
  LatentPagesView layer(int64_t l) const {
    return {dtype_, reinterpret_cast<const char*>(data_.data()) + l * layer_bytes()};
  }

 private:
  int64_t num_layers_;
  int64_t num_blocks_;
  int64_t kv_dim_;
  DType dtype_;
  std::vector<float> data_;
};

}  // namespace moeserve::engine
