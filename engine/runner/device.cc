#include "engine/runner/device.h"

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

#ifdef MOESERVE_HAVE_CUDA
#include "engine/ops/cuda/cuda_context.h"
#endif

namespace moeserve::engine {
namespace {

// A CUDA build has the whole-model runner (engine/runner/cuda_runner.h) as well as the kernels.
constexpr bool kCudaModelRunnerAvailable = true;

DeviceSelection Cpu(std::string description) {
  return {.kind = DeviceKind::kCpu, .name = "cpu", .description = std::move(description)};
}

// Why the CUDA backend cannot run the model, or OK with the device's description.
absl::StatusOr<std::string> ProbeCuda() {
#ifdef MOESERVE_HAVE_CUDA
  if (absl::Status available = CudaDeviceAvailable(); !available.ok()) return available;
  absl::StatusOr<CudaDeviceInfo> device = QueryCudaDevice(0);
  if (!device.ok()) return device.status();
  return device->ToString();
#else
  return absl::FailedPreconditionError(
      "this build has no CUDA backend (configure with -DMOESERVE_CUDA=ON where nvcc is "
      "installed)");
#endif
}

}  // namespace

bool BuiltWithCuda() {
#ifdef MOESERVE_HAVE_CUDA
  return true;
#else
  return false;
#endif
}

absl::StatusOr<DeviceSelection> SelectDevice(std::string_view requested) {
  if (requested == "cpu") return Cpu("cpu (asked for with --device cpu)");
  if (requested != "auto" && requested != "cuda") {
    return absl::InvalidArgumentError(
        absl::StrCat("--device must be auto, cpu or cuda, got '", std::string(requested), "'"));
  }
  absl::StatusOr<std::string> gpu = ProbeCuda();
  if (requested == "cuda") {
    if (!gpu.ok()) {
      return absl::FailedPreconditionError(
          absl::StrCat("--device cuda: ", gpu.status().message(), "; use --device cpu (or auto)"));
    }
    if (!kCudaModelRunnerAvailable) {
      return absl::UnimplementedError(absl::StrCat(
          "--device cuda: found ", *gpu,
          ", but the end-to-end CUDA model runner is not implemented yet; use --device cpu"));
    }
    return DeviceSelection{.kind = DeviceKind::kCuda, .name = "cuda:0", .description = *gpu};
  }
  if (!gpu.ok()) {
    return Cpu(absl::StrCat("cpu (--device auto: no GPU: ", gpu.status().message(), ")"));
  }
  if (!kCudaModelRunnerAvailable) {
    return Cpu(absl::StrCat("cpu (--device auto: found ", *gpu,
                            ", but the CUDA model runner is not implemented yet)"));
  }
  return DeviceSelection{.kind = DeviceKind::kCuda, .name = "cuda:0", .description = *gpu};
}

}  // namespace moeserve::engine
