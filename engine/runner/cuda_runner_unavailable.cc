// LoadCudaRunner and RunCudaFollowerNode in a build without the CUDA backend (MOESERVE_CUDA=OFF).
#include "engine/runner/cuda_runner.h"

namespace moeserve::engine {

namespace {
constexpr char kNoCuda[] =
    "this build has no CUDA backend (configure with -DMOESERVE_CUDA=ON where nvcc is installed)";
}  // namespace

absl::StatusOr<CudaRunner> LoadCudaRunner(const std::string&, const CudaRunnerOptions&) {
  return absl::FailedPreconditionError(kNoCuda);
}

absl::Status RunCudaFollowerNode(const std::string&, const CudaRunnerOptions&,
                                 const std::function<void(const std::string&)>&) {
  return absl::FailedPreconditionError(kNoCuda);
}

CudaExecutionCounts CudaExecutionCountsOf(const StepModel&) { return {}; }

}  // namespace moeserve::engine
