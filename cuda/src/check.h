// One way to check CUDA: every runtime call and every launch goes through HC_CUDA_CHECK or
// HC_CUDA_CHECK_LAUNCH, which turn a failure into an hc::Error (never an abort):
//   cudaErrorMemoryAllocation -> ErrorKind::OutOfMemory, with the bytes asked for and free;
//   anything else             -> ErrorKind::Device, "<what>: <cudaGetErrorName>: <string>".
#pragma once
#include <cuda_runtime.h>

#include <string>

#include "heterocnn/error.h"

namespace hc {

// `what` names the call that was made; `bytes` is the allocation size when it was one (0 else).
inline void cuda_check(cudaError_t err, const char* what, size_t bytes = 0) {
  if (err == cudaSuccess) return;
  if (err == cudaErrorMemoryAllocation) {
    cudaGetLastError();  // allocation failures are not sticky: clear it so the device stays usable
    size_t free_b = 0, total_b = 0;
    std::string free_s = "unknown";
    if (cudaMemGetInfo(&free_b, &total_b) == cudaSuccess)
      free_s = std::to_string(free_b);
    else
      cudaGetLastError();
    fail(ErrorKind::OutOfMemory, std::string(what) + ": out of device memory: asked for " +
                                     std::to_string(bytes) + " bytes, " + free_s +
                                     " bytes free of " + std::to_string(total_b));
  }
  fail(ErrorKind::Device, std::string(what) + ": " + cudaGetErrorName(err) + ": " +
                              cudaGetErrorString(err));
}

}  // namespace hc

// HC_CUDA_CHECK(cudaMemcpyAsync(...)) ; HC_CUDA_CHECK_BYTES(cudaMalloc(&p, n), n)
#define HC_CUDA_CHECK(call) ::hc::cuda_check((call), #call)
#define HC_CUDA_CHECK_BYTES(call, bytes) ::hc::cuda_check((call), #call, (bytes))
// After a kernel launch: reports a bad launch configuration (or an earlier sticky error).
#define HC_CUDA_CHECK_LAUNCH(name) ::hc::cuda_check(cudaGetLastError(), "launch of " name)
