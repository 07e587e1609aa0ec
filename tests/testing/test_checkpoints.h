// Random-weight checkpoints for tests, generated once per build tree and shared.
//
// CTest runs each test case as its own process (possibly in parallel), so a checkpoint is
// written into a private temporary directory and renamed into place atomically; whoever
// loses the race discards its copy.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

namespace moeserve::testing {

// Directory of the `preset` checkpoint (moeserve-make-model presets) with the given seed, under
// $MOESERVE_TEST_CHECKPOINT_DIR when set (binaries carried to a GPU host), else under the build
// tree's test_checkpoints/.
// `mtp_layers` overrides the preset's num_nextn_predict_layers (moeserve-make-model
// --mtp-layers). Aborts the test binary with a message if it cannot be written.
std::string TestCheckpointDir(const std::string& preset, bool fp8, uint64_t seed = 1234,
                              std::optional<int64_t> mtp_layers = std::nullopt);

}  // namespace moeserve::testing
