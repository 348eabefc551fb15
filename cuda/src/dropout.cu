// Dropout: x (any shape) -> y (same shape); Dropout2d: x (N,C,H,W) -> y (N,C,H,W)
//
// A training forward is two launches: a one-thread kernel that advances the step in the
// layer's rng_state (device memory, so a replayed CUDA graph draws a new mask every step),
// then the mask kernel, which reads (seed, step) from the same memory. The masks are those of
// the CPU (philox.h, shared): bit-identical for the same (seed, step, index).
#include <cstdint>
#include <cstring>

#include "check.h"
#include "launch.h"
#include "ops_cuda.h"
#include "heterocnn/dropout.h"
#include "heterocnn/philox.h"

namespace hc {

namespace {

__global__ void dropout_advance_kernel(int64_t* state) { ++state[1]; }

// Dropout: thread t takes the 4 elements of Philox block t (one generator call for four).
__global__ void dropout_elements_kernel(int64_t n, const float* __restrict__ x,
                                        float* __restrict__ y, const int64_t* __restrict__ state,
                                        uint64_t stream_key, uint32_t keep_below, float scale) {
  const uint64_t seed = (uint64_t)state[0] ^ stream_key, step = (uint64_t)state[1];
  const int64_t blocks = (n + 3) / 4;
  for (int64_t b = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; b < blocks;
       b += (int64_t)gridDim.x * blockDim.x) {
    const Philox4 r = philox_block(seed, step, (uint64_t)b);
#pragma unroll
    for (int k = 0; k < 4; ++k) {
      const int64_t i = 4 * b + k;
      if (i < n) y[i] = x[i] * (philox_keep(r.v[k], keep_below) ? scale : 0.f);
    }
  }
}

// Dropout2d: one draw per plane of `group` values (recomputed per element: cheap next to
// the memory traffic, and no second pass).
__global__ void dropout_planes_kernel(int64_t n, int64_t group, const float* __restrict__ x,
                                      float* __restrict__ y, const int64_t* __restrict__ state,
                                      uint64_t stream_key, uint32_t keep_below, float scale) {
  const uint64_t seed = (uint64_t)state[0] ^ stream_key, step = (uint64_t)state[1];
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n;
       i += (int64_t)gridDim.x * blockDim.x) {
    const bool keep = philox_keep(philox_word(seed, step, (uint64_t)(i / group)), keep_below);
    y[i] = x[i] * (keep ? scale : 0.f);
  }
}

}  // namespace

void dropout_forward_cuda(int64_t n, int64_t group, const float* x, float* y,
                          const int64_t* state, uint64_t stream_key, uint32_t keep_below,
                          float scale, cudaStream_t stream) {
  if (n <= 0) return;
  if (group == 1) {
    dropout_elements_kernel<<<op_blocks((n + 3) / 4), kOpThreads, 0, stream>>>(
        n, x, y, state, stream_key, keep_below, scale);
    HC_CUDA_CHECK_LAUNCH("dropout_elements_kernel");
  } else {
    dropout_planes_kernel<<<op_blocks(n), kOpThreads, 0, stream>>>(n, group, x, y, state,
                                                                   stream_key, keep_below, scale);
    HC_CUDA_CHECK_LAUNCH("dropout_planes_kernel");
  }
}

void dropout_advance_cuda(int64_t* state, cudaStream_t stream) {
  dropout_advance_kernel<<<1, 1, 0, stream>>>(state);
  HC_CUDA_CHECK_LAUNCH("dropout_advance_kernel");
}

// The layer on its CUDA device (the CPU side is in core/src/dropout.cpp).

void Dropout::forward_cuda(const Tensor& x, Tensor& y, float*, cudaStream_t stream) {
  const int64_t n = x.numel();
  if (!training_) {
    if (y.data != x.data && n > 0)
      HC_CUDA_CHECK(cudaMemcpyAsync(y.data, x.data, sizeof(float) * n, cudaMemcpyDeviceToDevice,
                                    stream));
    return;
  }
  dropout_advance_cuda(state(), stream);
  dropout_forward_cuda(n, group(x.shape), x.data, y.data, state(), stream_key_, keep_below_,
                       scale_, stream);
}

void Dropout::backward_cuda(const Tensor& x, const Tensor&, const Tensor& dy, Tensor* dx, float*,
                            cudaStream_t stream) {
  if (!dx) return;
  const int64_t n = dy.numel();
  if (!training_) {
    if (n > 0)
      HC_CUDA_CHECK(cudaMemcpyAsync(dx->data, dy.data, sizeof(float) * n,
                                    cudaMemcpyDeviceToDevice, stream));
    return;
  }
  dropout_forward_cuda(n, group(x.shape), dy.data, dx->data, state(), stream_key_, keep_below_,
                       scale_, stream);
}

}  // namespace hc
