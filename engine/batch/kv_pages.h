// The memory of the paged latent KV cache on the CPU backend.
//
// Per layer [num_blocks, kKvBlockSize, kv_dim] fp32 (kv_dim = 576 = [c_kv | k_pe]). Owned by
// the model runner (ARCHITECTURE.md §3); block ids are handed out by the KV cache manager and
// mean the same thing here. fp32 rather than bf16 keeps CPU results equal to the fp32 oracle.
#pragma once

#include <cstdint>
#include <vector>

#include "engine/batch/forward_batch.h"

namespace moeserve::engine {

class KvPages {
 public:
  KvPages(int64_t num_layers, int64_t num_blocks, int64_t kv_dim)
      : num_layers_(num_layers),
        num_blocks_(num_blocks),
        kv_dim_(kv_dim),
        data_(static_cast<size_t>(num_layers * num_blocks * kKvBlockSize * kv_dim)) {}

  int64_t num_layers() const { return num_layers_; }
  int64_t num_blocks() const { return num_blocks_; }
  int64_t kv_dim() const { return kv_dim_; }
  int64_t layer_floats() const { return num_blocks_ * kKvBlockSize * kv_dim_; }
  float* layer(int64_t l) { return data_.data() + l * layer_floats(); }
  const float* layer(int64_t l) const { return data_.data() + l * layer_floats(); }

 private:
  int64_t num_layers_;
  int64_t num_blocks_;
  int64_t kv_dim_;
  std::vector<float> data_;
};

}  // namespace moeserve::engine
