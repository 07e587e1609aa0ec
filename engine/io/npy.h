// NumPy .npy files (format version 1.0) of float32 C-order arrays.
//
// moeserve-logits writes its logits this way, and the golden tests read the oracle's logits
// written by numpy.save.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace moeserve::engine {

struct NpyArray {
  std::vector<int64_t> shape;
  std::vector<float> data;  // C order
};

absl::Status WriteNpyFloat32(const std::string& path, const std::vector<int64_t>& shape,
                             const std::vector<float>& data);
// Accepts '<f4' (little-endian float32), fortran_order False.
absl::StatusOr<NpyArray> ReadNpyFloat32(const std::string& path);

}  // namespace moeserve::engine
