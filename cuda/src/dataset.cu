// images (N, S) uint8 or float32, labels (N,), idx (n,) -> x (n, S) float32, y (n,) int64:
// a training batch gathered on the device from a DeviceDataset.
#include "check.h"
#include "launch.h"
#include "ops_cuda.h"

namespace hc {

namespace {

template <typename T>
__global__ void gather_kernel(const T* __restrict__ images, float scale, int64_t S,
                              const int64_t* __restrict__ labels,
                              const int64_t* __restrict__ idx, int64_t n, float* __restrict__ x,
                              int64_t* __restrict__ y) {
  const int64_t total = n * S;
  for (int64_t t = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; t < total;
       t += (int64_t)gridDim.x * blockDim.x) {
    const int64_t i = t / S, j = t - i * S;
    x[t] = static_cast<float>(images[idx[i] * S + j]) * scale;
    if (j == 0) y[i] = labels[idx[i]];
  }
}

}  // namespace

void gather_batch_cuda(const void* images, bool uint8, int64_t S, const int64_t* labels,
                       const int64_t* idx, int64_t n, float* x, int64_t* y,
                       cudaStream_t stream) {
  if (n <= 0 || S <= 0) return;
  const unsigned blocks = op_blocks(n * S);
  if (uint8)  // scaled as the host path scales uint8 images: v * float32(1/255)
    gather_kernel<<<blocks, kOpThreads, 0, stream>>>(static_cast<const unsigned char*>(images),
                                                     1.f / 255.f, S, labels, idx, n, x, y);
  else
    gather_kernel<<<blocks, kOpThreads, 0, stream>>>(static_cast<const float*>(images), 1.f, S,
                                                     labels, idx, n, x, y);
  HC_CUDA_CHECK_LAUNCH("gather_kernel");
}

}  // namespace hc
