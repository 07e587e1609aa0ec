// Writer for safetensors files and the HF shard index (reference §2.1).
//
// moeserve-make-model uses it to produce synthetic DeepSeek-shaped checkpoints for tests and
// benchmarks, and tests use it to build fixtures. The output is what the Rust/Python writer
// produces in the respects readers care about: a header padded with spaces to a multiple of 8
// bytes (so the data buffer starts 8-aligned), packed tensors, "__metadata__" with
// "format": "pt". Files are written to "<path>.tmp", fsync'ed and renamed, so a crash never
// leaves a half-written file under the final name for the reader to trip over.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/types/span.h"
#include "engine/ops/dtype.h"

namespace moeserve::engine {

struct TensorToWrite {
  std::string name;
  DType dtype = DType::kU8;
  std::vector<int64_t> shape;
  absl::Span<const uint8_t> bytes;  // C-order, little-endian; numel * DTypeSize(dtype) bytes
};

// Writes tensors in the given order (data_offsets follow that order, packed without gaps).
// "__metadata__" is {"format":"pt"} merged with `metadata` (entries in `metadata` win).
// InvalidArgument if a shape has a negative dim, bytes.size() != numel * dtype size, a name
// repeats or is "__metadata__", or a name is not valid UTF-8; the message names the tensor.
absl::Status WriteSafetensors(const std::string& path, const std::vector<TensorToWrite>& tensors,
                              const std::map<std::string, std::string>& metadata = {});

// Writes "<dir>/model.safetensors.index.json" in the HF layout:
// {"metadata": {"total_size": total_size}, "weight_map": {tensor name: shard file name}}.
// Shard names are relative to dir. Checkpoint::Open reads it back.
absl::Status WriteSafetensorsIndex(const std::string& dir,
                                   const std::map<std::string, std::string>& weight_map,
                                   uint64_t total_size);

}  // namespace moeserve::engine
