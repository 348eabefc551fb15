// x (N,C,H,W) -> y (N,C,Ho,Wo)
#include <string>

#include "check.h"
#include "launch.h"
#include "ops_cuda.h"
#include "heterocnn/maxpool2d.h"

namespace hc {

namespace {

// Index arithmetic runs in I: 32-bit integers whenever the tensor allows (64-bit division is
// many instructions on a GPU), 64-bit otherwise.

// Index in the plane of the window's first maximum; a NaN wins (maxpool2d.cpp's rule).
template <typename I>
__device__ __forceinline__ I window_argmax(const float* plane, I W, I K, I stride, I oh, I ow) {
  I best = oh * stride * W + ow * stride;
  float v = plane[best];
  for (I kh = 0; kh < K; ++kh) {
    const I row = (oh * stride + kh) * W + ow * stride;
    for (I kw = 0; kw < K; ++kw) {
      const float u = plane[row + kw];
      const bool take = (u > v) | ((u != u) & (v == v));
      best = take ? row + kw : best;
      v = take ? u : v;
    }
  }
  return best;
}

template <typename I>
__global__ void maxpool_forward_kernel(I P, I H, I W, I K, I stride, I Ho, I Wo,
                                       const float* __restrict__ x, float* __restrict__ y) {
  const I total = P * Ho * Wo;
  for (I idx = blockIdx.x * (I)blockDim.x + threadIdx.x; idx < total;
       idx += (I)gridDim.x * blockDim.x) {
    const I ow = idx % Wo, oh = (idx / Wo) % Ho, p = idx / (Wo * Ho);
    const float* plane = x + static_cast<int64_t>(p) * H * W;
    y[idx] = plane[window_argmax<I>(plane, W, K, stride, oh, ow)];
  }
}

// One thread per input pixel: the sum, over the windows that hold it in (oh, ow) order, of the
// gradients of those whose first maximum it is (for overlapping windows). With `mask`, 0 where
// x is not > 0 (the backward of a ReLU whose output x is).
template <typename I>
__global__ void maxpool_backward_kernel(I P, I H, I W, I K, I stride, I Ho, I Wo,
                                        const float* __restrict__ x,
                                        const float* __restrict__ dy, bool mask,
                                        float* __restrict__ dx) {
  const I total = P * H * W;
  for (I idx = blockIdx.x * (I)blockDim.x + threadIdx.x; idx < total;
       idx += (I)gridDim.x * blockDim.x) {
    const I iw = idx % W, ih = (idx / W) % H, p = idx / (W * H);
    const float* plane = x + static_cast<int64_t>(p) * H * W;
    const I me = ih * W + iw;
    // windows oh with oh*stride <= ih < oh*stride + K
    const I oh_lo = ih >= K ? (ih - K) / stride + 1 : 0, oh_hi = min(Ho - 1, ih / stride);
    const I ow_lo = iw >= K ? (iw - K) / stride + 1 : 0, ow_hi = min(Wo - 1, iw / stride);
    float s = 0.f;
    for (I oh = oh_lo; oh <= oh_hi; ++oh)
      for (I ow = ow_lo; ow <= ow_hi; ++ow)
        if (window_argmax<I>(plane, W, K, stride, oh, ow) == me) s += dy[(p * Ho + oh) * Wo + ow];
    dx[idx] = (!mask || plane[me] > 0.f) ? s : 0.f;
  }
}

// Windows that tile the plane (stride == K): one thread per window writes all its K*K
// gradients (dy at the first maximum, 0 elsewhere), and the window at the end of a row or
// column also zeroes the pixels past the last window there. KT: K at compile time (0: K).
template <int KT, typename I>
__global__ void maxpool_backward_tiled_kernel(I P, I H, I W, I Kr, I Ho, I Wo,
                                              const float* __restrict__ x,
                                              const float* __restrict__ dy, bool mask,
                                              float* __restrict__ dx) {
  const I K = KT > 0 ? I(KT) : Kr;
  const I total = P * Ho * Wo;
  for (I idx = blockIdx.x * (I)blockDim.x + threadIdx.x; idx < total;
       idx += (I)gridDim.x * blockDim.x) {
    const I ow = idx % Wo, q = idx / Wo, oh = q % Ho, p = q / Ho;
    const int64_t plane = static_cast<int64_t>(p) * H * W;
    const float* xp = x + plane;
    float* dp = dx + plane;
    const I best = window_argmax<I>(xp, W, K, K, oh, ow);
    const float g = dy[idx];
    const I h0 = oh * K, w0 = ow * K;
    const I h1 = oh == Ho - 1 ? H : h0 + K, w1 = ow == Wo - 1 ? W : w0 + K;
    for (I h = h0; h < h1; ++h) {
#pragma unroll
      for (I kw = 0; kw < K; ++kw) {
        const I at = h * W + w0 + kw;
        float v = (at == best) ? g : 0.f;
        if (mask && !(xp[at] > 0.f)) v = 0.f;
        dp[at] = v;
      }
      for (I w = w0 + K; w < w1; ++w) dp[h * W + w] = 0.f;
    }
  }
}

void check_window(const char* fn, int64_t H, int64_t W, int64_t K, int64_t stride) {
  if (K <= 0 || stride <= 0 || H < K || W < K)
    fail_value(std::string(fn) + ": window " + std::to_string(K) + " stride " +
               std::to_string(stride) + " does not fit " + std::to_string(H) + "x" +
               std::to_string(W));
}

}  // namespace

void maxpool2d_forward_cuda(int64_t P, int64_t H, int64_t W, int64_t K, int64_t stride,
                            const float* x, float* y, cudaStream_t stream) {
  check_window("maxpool2d_forward_cuda", H, W, K, stride);
  const int64_t Ho = (H - K) / stride + 1, Wo = (W - K) / stride + 1, total = P * Ho * Wo;
  if (total <= 0) return;
  if (fits_int32(P * H * W))
    maxpool_forward_kernel<int><<<op_blocks(total), kOpThreads, 0, stream>>>(
        int(P), int(H), int(W), int(K), int(stride), int(Ho), int(Wo), x, y);
  else
    maxpool_forward_kernel<int64_t><<<op_blocks(total), kOpThreads, 0, stream>>>(
        P, H, W, K, stride, Ho, Wo, x, y);
  HC_CUDA_CHECK_LAUNCH("maxpool_forward_kernel");
}

namespace {

void backward(int64_t P, int64_t H, int64_t W, int64_t K, int64_t stride, const float* x,
              const float* dy, bool mask, float* dx, cudaStream_t stream) {
  check_window("maxpool2d_backward_cuda", H, W, K, stride);
  const int64_t Ho = (H - K) / stride + 1, Wo = (W - K) / stride + 1, total = P * H * W;
  if (total <= 0) return;
  if (stride == K && fits_int32(total)) {
    const int64_t windows = P * Ho * Wo;
    const int p = int(P), h = int(H), w = int(W), k = int(K), ho = int(Ho), wo = int(Wo);
    if (K == 2)
      maxpool_backward_tiled_kernel<2, int><<<op_blocks(windows), kOpThreads, 0, stream>>>(
          p, h, w, k, ho, wo, x, dy, mask, dx);
    else
      maxpool_backward_tiled_kernel<0, int><<<op_blocks(windows), kOpThreads, 0, stream>>>(
          p, h, w, k, ho, wo, x, dy, mask, dx);
    HC_CUDA_CHECK_LAUNCH("maxpool_backward_tiled_kernel");
    return;
  }
  if (fits_int32(total))
    maxpool_backward_kernel<int><<<op_blocks(total), kOpThreads, 0, stream>>>(
        int(P), int(H), int(W), int(K), int(stride), int(Ho), int(Wo), x, dy, mask, dx);
  else
    maxpool_backward_kernel<int64_t><<<op_blocks(total), kOpThreads, 0, stream>>>(
        P, H, W, K, stride, Ho, Wo, x, dy, mask, dx);
  HC_CUDA_CHECK_LAUNCH("maxpool_backward_kernel");
}

}  // namespace

void maxpool2d_backward_cuda(int64_t P, int64_t H, int64_t W, int64_t K, int64_t stride,
                             const float* x, const float* dy, float* dx, bool relu_mask,
                             cudaStream_t stream) {
  backward(P, H, W, K, stride, x, dy, relu_mask, dx, stream);
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
                            x.data, dy.data, dx->data, masked_dx_, stream);
}

}  // namespace hc
