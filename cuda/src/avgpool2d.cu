// AvgPool2d: x (N,C,H,W) -> y (N,C,Ho,Wo); AdaptiveAvgPool2d: x (N,C,H,W) -> y (N,C,out,out)
#include <string>

#include "check.h"
#include "launch.h"
#include "ops_cuda.h"
#include "heterocnn/avgpool2d.h"

namespace hc {

namespace {

// Index arithmetic of AvgPool2d runs in I, as in maxpool2d.cu: 32-bit integers whenever the
// tensor allows, 64-bit otherwise. Sums and divisions are the CPU's (avgpool2d.cpp), in the
// same order, so the two give the same floats.

// One thread per output: the window's taps in row-major order, over K*K.
template <typename I>
__global__ void avgpool_forward_kernel(I P, I H, I W, I K, I stride, I pad, I Ho, I Wo,
                                       const float* __restrict__ x, float* __restrict__ y) {
  const I total = P * Ho * Wo;
  const float area = static_cast<float>(K * K);
  for (I idx = blockIdx.x * (I)blockDim.x + threadIdx.x; idx < total;
       idx += (I)gridDim.x * blockDim.x) {
    const I ow = idx % Wo, oh = (idx / Wo) % Ho, p = idx / (Wo * Ho);
    const float* plane = x + static_cast<int64_t>(p) * H * W;
    const I h0 = oh * stride - pad, w0 = ow * stride - pad;
    const I hs = max(h0, I(0)), he = min(h0 + K, H), ws = max(w0, I(0)), we = min(w0 + K, W);
    float s = 0.f;
    for (I h = hs; h < he; ++h)
      for (I w = ws; w < we; ++w) s += plane[h * W + w];
    y[idx] = s / area;
  }
}

// One thread per input pixel: dy / (K*K) of each window that holds it, in (oh, ow) order.
template <typename I>
__global__ void avgpool_backward_kernel(I P, I H, I W, I K, I stride, I pad, I Ho, I Wo,
                                        const float* __restrict__ x,
                                        const float* __restrict__ dy, bool mask,
                                        float* __restrict__ dx) {
  const I total = P * H * W;
  const float area = static_cast<float>(K * K);
  for (I idx = blockIdx.x * (I)blockDim.x + threadIdx.x; idx < total;
       idx += (I)gridDim.x * blockDim.x) {
    const I iw = idx % W, ih = (idx / W) % H, p = idx / (W * H);
    // windows oh with oh*stride <= ih + pad < oh*stride + K
    const I ph = ih + pad, pw = iw + pad;
    const I oh_lo = ph >= K ? (ph - K) / stride + 1 : 0, oh_hi = min(Ho - 1, ph / stride);
    const I ow_lo = pw >= K ? (pw - K) / stride + 1 : 0, ow_hi = min(Wo - 1, pw / stride);
    const float* g = dy + static_cast<int64_t>(p) * Ho * Wo;
    float s = 0.f;
    for (I oh = oh_lo; oh <= oh_hi; ++oh)
      for (I ow = ow_lo; ow <= ow_hi; ++ow) s += g[oh * Wo + ow] / area;
    dx[idx] = (!mask || x[idx] > 0.f) ? s : 0.f;
  }
}

// Global average pooling: one warp per plane, its lanes reading the plane in coalesced strides
// and their sums added by a fixed butterfly (deterministic).
__global__ void global_avgpool_forward_kernel(int64_t P, int64_t HW, const float* __restrict__ x,
                                              float* __restrict__ y) {
  const int lane = threadIdx.x % 32;
  const int64_t warps = (int64_t)gridDim.x * (blockDim.x / 32);
  for (int64_t p = blockIdx.x * (int64_t)(blockDim.x / 32) + threadIdx.x / 32; p < P;
       p += warps) {
    const float* plane = x + p * HW;
    float s = 0.f;
    for (int64_t i = lane; i < HW; i += 32) s += plane[i];
#pragma unroll
    for (int off = 16; off > 0; off /= 2) s += __shfl_xor_sync(0xffffffffu, s, off);
    if (lane == 0) y[p] = s / static_cast<float>(HW);
  }
}

__global__ void global_avgpool_backward_kernel(int64_t P, int64_t HW, const float* __restrict__ x,
                                               const float* __restrict__ dy, bool mask,
                                               float* __restrict__ dx) {
  const int64_t total = P * HW;
  for (int64_t idx = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; idx < total;
       idx += (int64_t)gridDim.x * blockDim.x) {
    const float v = dy[idx / HW] / static_cast<float>(HW);
    dx[idx] = (!mask || x[idx] > 0.f) ? v : 0.f;
  }
}

// Adaptive windows of other sizes (rare; 64-bit arithmetic): one thread per output.
__global__ void adaptive_avgpool_forward_kernel(int64_t P, int64_t H, int64_t W, int64_t out,
                                                const float* __restrict__ x,
                                                float* __restrict__ y) {
  const int64_t total = P * out * out;
  for (int64_t idx = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; idx < total;
       idx += (int64_t)gridDim.x * blockDim.x) {
    const int64_t ow = idx % out, oh = (idx / out) % out, p = idx / (out * out);
    const float* plane = x + p * H * W;
    const int64_t hs = adaptive_start(oh, H, out), he = adaptive_end(oh, H, out);
    const int64_t ws = adaptive_start(ow, W, out), we = adaptive_end(ow, W, out);
    float s = 0.f;
    for (int64_t h = hs; h < he; ++h)
      for (int64_t w = ws; w < we; ++w) s += plane[h * W + w];
    y[idx] = s / static_cast<float>((he - hs) * (we - ws));
  }
}

// One thread per input pixel: windows oh with start(oh) <= ih < end(oh), i.e. from
// floor(ih*out/H) while start(oh) <= ih, in (oh, ow) order.
__global__ void adaptive_avgpool_backward_kernel(int64_t P, int64_t H, int64_t W, int64_t out,
                                                 const float* __restrict__ x,
                                                 const float* __restrict__ dy, bool mask,
                                                 float* __restrict__ dx) {
  const int64_t total = P * H * W;
  for (int64_t idx = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; idx < total;
       idx += (int64_t)gridDim.x * blockDim.x) {
    const int64_t iw = idx % W, ih = (idx / W) % H, p = idx / (W * H);
    const float* g = dy + p * out * out;
    float s = 0.f;
    for (int64_t oh = ih * out / H; oh < out && adaptive_start(oh, H, out) <= ih; ++oh) {
      const int64_t rows = adaptive_end(oh, H, out) - adaptive_start(oh, H, out);
      for (int64_t ow = iw * out / W; ow < out && adaptive_start(ow, W, out) <= iw; ++ow) {
        const int64_t cols = adaptive_end(ow, W, out) - adaptive_start(ow, W, out);
        s += g[oh * out + ow] / static_cast<float>(rows * cols);
      }
    }
    dx[idx] = (!mask || x[idx] > 0.f) ? s : 0.f;
  }
}

void check_pool(const char* fn, int64_t H, int64_t W, int64_t K, int64_t stride, int64_t pad) {
  if (K <= 0 || stride <= 0 || pad < 0 || pad > K / 2 || H + 2 * pad < K || W + 2 * pad < K)
    fail_value(std::string(fn) + ": window " + std::to_string(K) + " stride " +
               std::to_string(stride) + " padding " + std::to_string(pad) + " does not fit " +
               std::to_string(H) + "x" + std::to_string(W));
}

void check_adaptive(const char* fn, int64_t H, int64_t W, int64_t out) {
  if (out <= 0 || H <= 0 || W <= 0)
    fail_value(std::string(fn) + ": output " + std::to_string(out) + " of " +
               std::to_string(H) + "x" + std::to_string(W));
}

}  // namespace

void avgpool2d_forward_cuda(int64_t P, int64_t H, int64_t W, int64_t K, int64_t stride,
                            int64_t pad, const float* x, float* y, cudaStream_t stream) {
  check_pool("avgpool2d_forward_cuda", H, W, K, stride, pad);
  const int64_t Ho = (H + 2 * pad - K) / stride + 1, Wo = (W + 2 * pad - K) / stride + 1;
  const int64_t total = P * Ho * Wo;
  if (total <= 0) return;
  if (fits_int32(P * H * W) && fits_int32(total))
    avgpool_forward_kernel<int><<<op_blocks(total), kOpThreads, 0, stream>>>(
        int(P), int(H), int(W), int(K), int(stride), int(pad), int(Ho), int(Wo), x, y);
  else
    avgpool_forward_kernel<int64_t><<<op_blocks(total), kOpThreads, 0, stream>>>(
        P, H, W, K, stride, pad, Ho, Wo, x, y);
  HC_CUDA_CHECK_LAUNCH("avgpool_forward_kernel");
}

void avgpool2d_backward_cuda(int64_t P, int64_t H, int64_t W, int64_t K, int64_t stride,
                             int64_t pad, const float* x, const float* dy, float* dx,
                             bool relu_mask, cudaStream_t stream) {
  check_pool("avgpool2d_backward_cuda", H, W, K, stride, pad);
  const int64_t Ho = (H + 2 * pad - K) / stride + 1, Wo = (W + 2 * pad - K) / stride + 1;
  const int64_t total = P * H * W;
  if (total <= 0) return;
  if (fits_int32(total) && fits_int32(P * Ho * Wo))
    avgpool_backward_kernel<int><<<op_blocks(total), kOpThreads, 0, stream>>>(
        int(P), int(H), int(W), int(K), int(stride), int(pad), int(Ho), int(Wo), x, dy,
        relu_mask, dx);
  else
    avgpool_backward_kernel<int64_t><<<op_blocks(total), kOpThreads, 0, stream>>>(
        P, H, W, K, stride, pad, Ho, Wo, x, dy, relu_mask, dx);
  HC_CUDA_CHECK_LAUNCH("avgpool_backward_kernel");
}

void adaptive_avgpool2d_forward_cuda(int64_t P, int64_t H, int64_t W, int64_t out,
                                     const float* x, float* y, cudaStream_t stream) {
  check_adaptive("adaptive_avgpool2d_forward_cuda", H, W, out);
  if (P <= 0) return;
  if (out == 1) {
    // a warp per plane: op_blocks of 32 threads per plane
    global_avgpool_forward_kernel<<<op_blocks(P * 32), kOpThreads, 0, stream>>>(P, H * W, x, y);
    HC_CUDA_CHECK_LAUNCH("global_avgpool_forward_kernel");
    return;
  }
  const int64_t total = P * out * out;
  adaptive_avgpool_forward_kernel<<<op_blocks(total), kOpThreads, 0, stream>>>(P, H, W, out, x,
                                                                               y);
  HC_CUDA_CHECK_LAUNCH("adaptive_avgpool_forward_kernel");
}

void adaptive_avgpool2d_backward_cuda(int64_t P, int64_t H, int64_t W, int64_t out,
                                      const float* x, const float* dy, float* dx,
                                      bool relu_mask, cudaStream_t stream) {
  check_adaptive("adaptive_avgpool2d_backward_cuda", H, W, out);
  const int64_t total = P * H * W;
  if (total <= 0) return;
  if (out == 1) {
    global_avgpool_backward_kernel<<<op_blocks(total), kOpThreads, 0, stream>>>(P, H * W, x, dy,
                                                                                relu_mask, dx);
    HC_CUDA_CHECK_LAUNCH("global_avgpool_backward_kernel");
    return;
  }
  adaptive_avgpool_backward_kernel<<<op_blocks(total), kOpThreads, 0, stream>>>(
      P, H, W, out, x, dy, relu_mask, dx);
  HC_CUDA_CHECK_LAUNCH("adaptive_avgpool_backward_kernel");
}

// The layers on their CUDA device (the CPU side is in core/src/avgpool2d.cpp).

void AvgPool2d::forward_cuda(const Tensor& x, Tensor& y, float*, cudaStream_t stream) {
  avgpool2d_forward_cuda(x.shape[0] * x.shape[1], x.shape[2], x.shape[3], K_, stride_, pad_,
                         x.data, y.data, stream);
}

void AvgPool2d::backward_cuda(const Tensor& x, const Tensor&, const Tensor& dy, Tensor* dx,
                              float*, cudaStream_t stream) {
  if (dx)
    avgpool2d_backward_cuda(x.shape[0] * x.shape[1], x.shape[2], x.shape[3], K_, stride_, pad_,
                            x.data, dy.data, dx->data, masked_dx_, stream);
}

void AdaptiveAvgPool2d::forward_cuda(const Tensor& x, Tensor& y, float*, cudaStream_t stream) {
  adaptive_avgpool2d_forward_cuda(x.shape[0] * x.shape[1], x.shape[2], x.shape[3], out_, x.data,
                                  y.data, stream);
}

void AdaptiveAvgPool2d::backward_cuda(const Tensor& x, const Tensor&, const Tensor& dy,
                                      Tensor* dx, float*, cudaStream_t stream) {
  if (dx)
    adaptive_avgpool2d_backward_cuda(x.shape[0] * x.shape[1], x.shape[2], x.shape[3], out_,
                                     x.data, dy.data, dx->data, masked_dx_, stream);
}

}  // namespace hc
