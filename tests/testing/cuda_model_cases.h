// What the whole-model CUDA tests (deepseek_model_cuda_test, mtp_cuda_test) share: the models
// they run, block tables over shuffled pages, and the argmax of a logits row.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <ostream>
#include <string>
#include <vector>

#include "absl/types/span.h"
#include "tests/testing/test_checkpoints.h"

namespace moeserve::engine::testing {

// A model a parameterised test runs on; the test's name suffix is `name`.
struct ModelCase {
  const char* name;
  std::string (*dir)();
};
inline void PrintTo(const ModelCase& c, std::ostream* os) { *os << c.name; }

inline std::string TinyV2LiteDir() {
  return moeserve::testing::TestCheckpointDir("tiny-v2-lite", false);
}
inline std::string TinyV3Dir() { return moeserve::testing::TestCheckpointDir("tiny-v3", false); }
// The bundled model, under $MOESERVE_SOURCE_DIR when set: the binary may run on a GPU host with
// the checkout elsewhere.
inline std::string KjvV3TinyDir() {
  const char* root = std::getenv("MOESERVE_SOURCE_DIR");
  return std::string(root != nullptr && *root != 0 ? root : MOESERVE_SOURCE_DIR) +
         "/models/kjv-v3-tiny";
}

// Sequence `seq`'s table of `blocks` pages, taken from the top of a `pool_blocks` pool and
// interleaved with the other sequences' (seq < 8), so that no sequence's pages are contiguous.
inline std::vector<int32_t> ShuffledBlockTable(int64_t seq, int64_t blocks, int64_t pool_blocks) {
  std::vector<int32_t> table;
  for (int64_t b = 0; b < blocks; ++b) {
    table.push_back(static_cast<int32_t>(pool_blocks - 1 - (b * 8 + seq)));
  }
  return table;
}

inline int32_t Argmax(absl::Span<const float> row) {
  return static_cast<int32_t>(std::max_element(row.begin(), row.end()) - row.begin());
}

}  // namespace moeserve::engine::testing
