// LoadCudaRunner in a build without the CUDA backend (MOESERVE_CUDA=OFF).
#include "engine/runner/cuda_runner.h"

namespace moeserve::engine {

absl::StatusOr<CudaRunner> LoadCudaRunner(const std::string&, const CudaRunnerOptions&) {
  return absl::FailedPreconditionError(
      "this build has no CUDA backend (configure with -DMOESERVE_CUDA=ON where nvcc is "
      "installed)");
}

}  // namespace moeserve::engine
