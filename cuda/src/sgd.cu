// p (n,), g (n,), v (n,) -> p, v updated in place, for every parameter tensor in one launch
#include <string>

#include "check.h"
#include "launch.h"
#include "ops_cuda.h"

namespace hc {

namespace {

// blockIdx.y picks the tensor; the x blocks stride over its elements.
__global__ void sgd_update_kernel(const SgdTensorCuda* __restrict__ tensors,
                                  const SgdConfig* __restrict__ cfg) {
  const SgdTensorCuda t = tensors[blockIdx.y];
  const float lr = cfg->lr, mu = cfg->momentum, wd = cfg->weight_decay;
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < t.n;
       i += (int64_t)gridDim.x * blockDim.x) {
    const float p = t.p[i], g = t.g[i] + wd * p;
    if (mu == 0.f) {
      t.p[i] = p - lr * g;
    } else {
      const float v = mu * t.v[i] + g;
      t.v[i] = v;
      t.p[i] = p - lr * v;
    }
  }
}

}  // namespace

void sgd_update_cuda(int count, const SgdTensorCuda* tensors, int64_t max_n,
                     const SgdConfig* cfg, cudaStream_t stream) {
  if (count < 0 || count > 65535)
    fail_value("sgd_update_cuda: " + std::to_string(count) + " tensors (at most 65535)");
  if (count == 0 || max_n <= 0) return;
  const dim3 grid(std::min(op_blocks(max_n), 1024u), static_cast<unsigned>(count));
  sgd_update_kernel<<<grid, kOpThreads, 0, stream>>>(tensors, cfg);
  HC_CUDA_CHECK_LAUNCH("sgd_update_kernel");
}

}  // namespace hc
