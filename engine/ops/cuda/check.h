// Turning CUDA runtime and cuBLAS(Lt) error codes into absl::Status that name the call.
//
// Host code (.cc, C++20) wraps every CUDA and cuBLAS call in MOESERVE_CUDA_RETURN_IF_ERROR or
// MOESERVE_CUBLAS_RETURN_IF_ERROR so a failure reads "cudaMalloc(&data, 4096) failed:
// cudaErrorMemoryAllocation (2): out of memory". Kernel launchers in .cu files return the
// cudaError_t of their launch (as int) and callers pass it through CudaLaunchStatus.
// Kept out of .cu files: nvcc compiles those as C++17 without Abseil.
#pragma once

#include <cublasLt.h>
#include <cuda_runtime_api.h>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace moeserve::engine {

inline absl::Status CudaStatus(cudaError_t error, const char* call) {
  if (error == cudaSuccess) return absl::OkStatus();
  const absl::StatusCode code = error == cudaErrorMemoryAllocation
                                    ? absl::StatusCode::kResourceExhausted
                                    : absl::StatusCode::kInternal;
  return absl::Status(code, absl::StrCat(call, " failed: ", cudaGetErrorName(error), " (",
                                         static_cast<int>(error), "): ",
                                         cudaGetErrorString(error)));
}

// A kernel launcher's result (a cudaError_t returned as int by the *_cuda.h launchers).
inline absl::Status CudaLaunchStatus(int error, const char* launcher) {
  return CudaStatus(static_cast<cudaError_t>(error), launcher);
}

inline absl::Status CublasStatus(cublasStatus_t status, const char* call) {
  if (status == CUBLAS_STATUS_SUCCESS) return absl::OkStatus();
  const absl::StatusCode code = status == CUBLAS_STATUS_NOT_SUPPORTED
                                    ? absl::StatusCode::kUnimplemented
                                    : absl::StatusCode::kInternal;
  return absl::Status(code, absl::StrCat(call, " failed: ", cublasLtGetStatusName(status), " (",
                                         static_cast<int>(status), "): ",
                                         cublasLtGetStatusString(status)));
}

}  // namespace moeserve::engine

#define MOESERVE_CUDA_RETURN_IF_ERROR(call)                                 \
  do {                                                                      \
    if (absl::Status _cuda_status = ::moeserve::engine::CudaStatus((call), #call); \
        !_cuda_status.ok()) {                                               \
      return _cuda_status;                                                  \
    }                                                                       \
  } while (0)

#define MOESERVE_CUBLAS_RETURN_IF_ERROR(call)                                 \
  do {                                                                        \
    if (absl::Status _cublas_status = ::moeserve::engine::CublasStatus((call), #call); \
        !_cublas_status.ok()) {                                               \
      return _cublas_status;                                                  \
    }                                                                         \
  } while (0)
