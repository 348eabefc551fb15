// x (N,C,H,W) -> y (N,C,Ho,Wo)
#include <string>

#include "check.h"
#include "launch.h"
#include "ops_cuda.h"
#include "heterocnn/maxpool2d.h"

namespace hc {

namespace {

// Index in the plane of the window's first maximum; a NaN wins (maxpool2d.cpp's rule).
__device__ __forceinline__ int64_t window_argmax(const float* plane, int64_t W, int64_t K,
                                                 int64_t stride, int64_t oh, int64_t ow) {
  int64_t best = oh * stride * W + ow * stride;
  float v = plane[best];
  for (int64_t kh = 0; kh < K; ++kh) {
    const int64_t row = (oh * stride + kh) * W + ow * stride;
    for (int64_t kw = 0; kw < K; ++kw) {
      const float u = plane[row + kw];
      if (u > v || (u != u && v == v)) {
        v = u;
        best = row + kw;
      }
    }
  }
  return best;
}

__global__ void maxpool_forward_kernel(int64_t P, int64_t H, int64_t W, int64_t K,
                                       int64_t stride, int64_t Ho, int64_t Wo,
                                       const float* __restrict__ x, float* __restrict__ y) {
  const int64_t total = P * Ho * Wo;
  for (int64_t idx = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; idx < total;
       idx += (int64_t)gridDim.x * blockDim.x) {
    const int64_t ow = idx % Wo, oh = (idx / Wo) % Ho, p = idx / (Wo * Ho);
    const float* plane = x + p * H * W;
    y[idx] = plane[window_argmax(plane, W, K, stride, oh, ow)];
  }
}

// One thread per input pixel: the sum, over the windows that hold it in (oh, ow) order, of the
// gradients of those whose first maximum it is.
__global__ void maxpool_backward_kernel(int64_t P, int64_t H, int64_t W, int64_t K,
                                        int64_t stride, int64_t Ho, int64_t Wo,
                                        const float* __restrict__ x,
                                        const float* __restrict__ dy, float* __restrict__ dx) {
  const int64_t total = P * H * W;
  for (int64_t idx = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; idx < total;
       idx += (int64_t)gridDim.x * blockDim.x) {
    const int64_t iw = idx % W, ih = (idx / W) % H, p = idx / (W * H);
    const float* plane = x + p * H * W;
    const int64_t me = ih * W + iw;
    // windows oh with oh*stride <= ih < oh*stride + K
    const int64_t oh_lo = ih >= K ? (ih - K) / stride + 1 : 0, oh_hi = min(Ho - 1, ih / stride);
    const int64_t ow_lo = iw >= K ? (iw - K) / stride + 1 : 0, ow_hi = min(Wo - 1, iw / stride);
    float s = 0.f;
    for (int64_t oh = oh_lo; oh <= oh_hi; ++oh)
      for (int64_t ow = ow_lo; ow <= ow_hi; ++ow)
        if (window_argmax(plane, W, K, stride, oh, ow) == me) s += dy[(p * Ho + oh) * Wo + ow];
    dx[idx] = s;
  }
}

}  // namespace

void maxpool2d_forward_cuda(int64_t P, int64_t H, int64_t W, int64_t K, int64_t stride,
                            const float* x, float* y, cudaStream_t stream) {
  if (K <= 0 || stride <= 0 || H < K || W < K)
    fail_value("maxpool2d_forward_cuda: window " + std::to_string(K) + " stride " +
               std::to_string(stride) + " does not fit " + std::to_string(H) + "x" +
               std::to_string(W));
  const int64_t Ho = (H - K) / stride + 1, Wo = (W - K) / stride + 1, total = P * Ho * Wo;
  if (total <= 0) return;
  maxpool_forward_kernel<<<op_blocks(total), kOpThreads, 0, stream>>>(P, H, W, K, stride, Ho,
                                                                        Wo, x, y);
  HC_CUDA_CHECK_LAUNCH("maxpool_forward_kernel");
}

void maxpool2d_backward_cuda(int64_t P, int64_t H, int64_t W, int64_t K, int64_t stride,
                             const float* x, const float* dy, float* dx, cudaStream_t stream) {
  if (K <= 0 || stride <= 0 || H < K || W < K)
    fail_value("maxpool2d_backward_cuda: window " + std::to_string(K) + " stride " +
               std::to_string(stride) + " does not fit " + std::to_string(H) + "x" +
               std::to_string(W));
  const int64_t Ho = (H - K) / stride + 1, Wo = (W - K) / stride + 1, total = P * H * W;
  if (total <= 0) return;
  maxpool_backward_kernel<<<op_blocks(total), kOpThreads, 0, stream>>>(P, H, W, K, stride, Ho,
                                                                         Wo, x, dy, dx);
  HC_CUDA_CHECK_LAUNCH("maxpool_backward_kernel");
}

// The layer on its CUDA device (the CPU side is in core/src/maxpool2d.cpp).

void MaxPool2d::forward_cuda(const Tensor& x, Tensor& y, float*, cudaStream_t stream) {
  maxpool2d_forward_cuda(x.shape[0] * x.shape[1], x.shape[2], x.shape[3], K_, stride_, x.data,
                         y.data, stream);
}

void MaxPool2d::backward_cuda(const Tensor& x, const Tensor&, const Tensor& dy, Tensor* dx,
                              float*, cudaStream_t stream) {
  if (dx)
    maxpool2d_backward_cuda(x.shape[0] * x.shape[1], x.shape[2], x.shape[3], K_, stride_,
                            x.data, dy.data, dx->data, stream);
}

}  // namespace hc
