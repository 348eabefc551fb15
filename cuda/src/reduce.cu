// y (n) += x (n)
#include "check.h"
#include "heterocnn/cuda_api.h"
#include "launch.h"
#include "ops_cuda.h"

namespace hc {

namespace {

__global__ void add_into_kernel(int64_t n, float* __restrict__ y, const float* __restrict__ x) {
  const int64_t stride = (int64_t)gridDim.x * blockDim.x;
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += stride) y[i] += x[i];
}

}  // namespace

void add_into_cuda(int64_t n, float* y, const float* x, cudaStream_t stream) {
  if (n <= 0) return;
  add_into_kernel<<<std::min(op_blocks(n), 1024u), kOpThreads, 0, stream>>>(n, y, x);
  HC_CUDA_CHECK_LAUNCH("add_into_kernel");
}

namespace cuda {

void add_into(int64_t n, float* y, const float* x, int device) {
  use_device(device);
  cudaStream_t s = static_cast<cudaStream_t>(stream(device));
  add_into_cuda(n, y, x, s);
  HC_CUDA_CHECK(cudaStreamSynchronize(s));
}

}  // namespace cuda

}  // namespace hc
