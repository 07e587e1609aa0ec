// Which backend runs the model: the answer to the server's `--device auto|cpu|cuda`.
//
// The CPU backend always exists. A CUDA build (MOESERVE_CUDA) can see GPUs through the CUDA
// runtime; what it finds (or why it finds none) is read here once at start, so the server can
// refuse `--device cuda` with the reason ("no CUDA device: cudaGetDeviceCount failed: ...")
// instead of silently running on the CPU. Called by the server's main() and the tools.
#pragma once

#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace moeserve::engine {

enum class DeviceKind { kCpu, kCuda };

struct DeviceSelection {
  DeviceKind kind = DeviceKind::kCpu;
  std::string name;  // "cpu" or "cuda:0"
  // One line for the startup log: what was found and why this backend was chosen.
  std::string description;
};

// `requested` is "auto", "cpu" or "cuda". "cuda" fails with FailedPrecondition when the build
// has no CUDA backend or the machine has no usable GPU; "auto" then falls back to the CPU and
// says why.
absl::StatusOr<DeviceSelection> SelectDevice(std::string_view requested);

// True when this binary was built with the CUDA backend (MOESERVE_CUDA).
bool BuiltWithCuda();

}  // namespace moeserve::engine
