// AvgPool2d: x (N,C,H,W) -> y (N,C,Ho,Wo); AdaptiveAvgPool2d: x (N,C,H,W) -> y (N,C,out,out)
#include "heterocnn/avgpool2d.h"

#include <algorithm>
#include <cstring>
#include <string>

#include "heterocnn/activation.h"
#include "heterocnn/error.h"

namespace hc {

namespace {

// Planes are independent: one per iteration, on the team when there is enough work.
constexpr int64_t kParallelElems = 1 << 15;

// The sum of plane[h0:h1, w0:w1] in row-major order.
inline float window_sum(const float* plane, int64_t W, int64_t h0, int64_t h1, int64_t w0,
                        int64_t w1) {
  float s = 0.f;
  for (int64_t h = h0; h < h1; ++h)
    for (int64_t w = w0; w < w1; ++w) s += plane[h * W + w];
  return s;
}

// dplane[h0:h1, w0:w1] += g.
inline void window_add(float* dplane, int64_t W, int64_t h0, int64_t h1, int64_t w0, int64_t w1,
                       float g) {
  for (int64_t h = h0; h < h1; ++h)
    for (int64_t w = w0; w < w1; ++w) dplane[h * W + w] += g;
}

}  // namespace

void avgpool2d_forward_cpu(int64_t P, int64_t H, int64_t W, int64_t K, int64_t stride,
                           int64_t pad, const float* x, float* y) {
  const int64_t Ho = (H + 2 * pad - K) / stride + 1, Wo = (W + 2 * pad - K) / stride + 1;
  const float area = static_cast<float>(K * K);
#pragma omp parallel for schedule(static) if (P * H * W > kParallelElems)
  for (int64_t p = 0; p < P; ++p) {
    const float* plane = x + p * H * W;
    float* out = y + p * Ho * Wo;
    for (int64_t oh = 0; oh < Ho; ++oh) {
      const int64_t h0 = oh * stride - pad;
      const int64_t hs = std::max<int64_t>(h0, 0), he = std::min(h0 + K, H);
      for (int64_t ow = 0; ow < Wo; ++ow) {
        const int64_t w0 = ow * stride - pad;
        out[oh * Wo + ow] =
            window_sum(plane, W, hs, he, std::max<int64_t>(w0, 0), std::min(w0 + K, W)) / area;
      }
    }
  }
}

void avgpool2d_backward_cpu(int64_t P, int64_t H, int64_t W, int64_t K, int64_t stride,
                            int64_t pad, const float* x, const float* dy, float* dx,
                            bool relu_mask) {
  const int64_t Ho = (H + 2 * pad - K) / stride + 1, Wo = (W + 2 * pad - K) / stride + 1;
  const float area = static_cast<float>(K * K);
#pragma omp parallel for schedule(static) if (P * H * W > kParallelElems)
  for (int64_t p = 0; p < P; ++p) {
    float* dplane = dx + p * H * W;
    const float* g = dy + p * Ho * Wo;
    std::memset(dplane, 0, H * W * sizeof(float));
    for (int64_t oh = 0; oh < Ho; ++oh) {
      const int64_t h0 = oh * stride - pad;
      const int64_t hs = std::max<int64_t>(h0, 0), he = std::min(h0 + K, H);
      for (int64_t ow = 0; ow < Wo; ++ow) {
        const int64_t w0 = ow * stride - pad;
        window_add(dplane, W, hs, he, std::max<int64_t>(w0, 0), std::min(w0 + K, W),
                   g[oh * Wo + ow] / area);
      }
    }
    if (relu_mask) relu_backward_cpu(H * W, x + p * H * W, dplane, dplane);
  }
}

void adaptive_avgpool2d_forward_cpu(int64_t P, int64_t H, int64_t W, int64_t out, const float* x,
                                    float* y) {
  const int64_t HW = H * W;
  if (out == 1) {  // global average pooling: one vectorised sum per plane
#pragma omp parallel for schedule(static) if (P * HW > kParallelElems)
    for (int64_t p = 0; p < P; ++p) {
      const float* plane = x + p * HW;
      float s = 0.f;
#pragma omp simd reduction(+ : s)
      for (int64_t i = 0; i < HW; ++i) s += plane[i];
      y[p] = s / static_cast<float>(HW);
    }
    return;
  }
#pragma omp parallel for schedule(static) if (P * HW > kParallelElems)
  for (int64_t p = 0; p < P; ++p) {
    const float* plane = x + p * HW;
    float* o = y + p * out * out;
    for (int64_t oh = 0; oh < out; ++oh) {
      const int64_t hs = adaptive_start(oh, H, out), he = adaptive_end(oh, H, out);
      for (int64_t ow = 0; ow < out; ++ow) {
        const int64_t ws = adaptive_start(ow, W, out), we = adaptive_end(ow, W, out);
        o[oh * out + ow] =
            window_sum(plane, W, hs, he, ws, we) / static_cast<float>((he - hs) * (we - ws));
      }
    }
  }
}

void adaptive_avgpool2d_backward_cpu(int64_t P, int64_t H, int64_t W, int64_t out,
                                     const float* x, const float* dy, float* dx,
                                     bool relu_mask) {
  const int64_t HW = H * W;
#pragma omp parallel for schedule(static) if (P * HW > kParallelElems)
  for (int64_t p = 0; p < P; ++p) {
    float* dplane = dx + p * HW;
    const float* g = dy + p * out * out;
    if (out == 1) {
      const float v = g[0] / static_cast<float>(HW);
      std::fill(dplane, dplane + HW, v);
    } else {
      std::memset(dplane, 0, HW * sizeof(float));
      for (int64_t oh = 0; oh < out; ++oh) {
        const int64_t hs = adaptive_start(oh, H, out), he = adaptive_end(oh, H, out);
        for (int64_t ow = 0; ow < out; ++ow) {
          const int64_t ws = adaptive_start(ow, W, out), we = adaptive_end(ow, W, out);
          window_add(dplane, W, hs, he, ws, we,
                     g[oh * out + ow] / static_cast<float>((he - hs) * (we - ws)));
        }
      }
    }
    if (relu_mask) relu_backward_cpu(HW, x + p * HW, dplane, dplane);
  }
}

AvgPool2d::AvgPool2d(int64_t kernel, int64_t stride, int64_t padding)
    : K_(kernel), stride_(stride), pad_(padding) {
  const std::string what = "AvgPool2d(kernel_size=" + std::to_string(K_) + ", stride=" +
                           std::to_string(stride_) + ", padding=" + std::to_string(pad_) + "): ";
  if (K_ <= 0 || stride_ <= 0 || pad_ < 0)
    fail_value(what + "kernel_size and stride must be positive and padding non-negative");
  if (K_ > kMaxNumel || stride_ > kMaxNumel)
    fail_value(what + "kernel_size and stride must be at most 2^40");
  if (pad_ > K_ / 2)  // as torch: padding at most half the kernel
    fail_value(what + "padding must be at most kernel_size / 2");
}

Shape AvgPool2d::output_shape(const Shape& in) const {
  if (in.ndim != 4) fail_shape("AvgPool2d expects input (N, C, H, W), got " + in.str());
  in.check();  // every dim <= 2^40, so H + 2 * pad cannot overflow
  if (in[2] + 2 * pad_ < K_ || in[3] + 2 * pad_ < K_)
    fail_shape("AvgPool2d window " + std::to_string(K_) + " with padding " +
               std::to_string(pad_) + " is larger than input " + in.str());
  return Shape{in[0], in[1], (in[2] + 2 * pad_ - K_) / stride_ + 1,
               (in[3] + 2 * pad_ - K_) / stride_ + 1};
}

void AvgPool2d::forward_cpu(const Tensor& x, Tensor& y, float*) {
  avgpool2d_forward_cpu(x.shape[0] * x.shape[1], x.shape[2], x.shape[3], K_, stride_, pad_,
                        x.data, y.data);
}

void AvgPool2d::backward_cpu(const Tensor& x, const Tensor&, const Tensor& dy, Tensor* dx,
                             float*) {
  if (dx)
    avgpool2d_backward_cpu(x.shape[0] * x.shape[1], x.shape[2], x.shape[3], K_, stride_, pad_,
                           x.data, dy.data, dx->data, masked_dx_);
}

AdaptiveAvgPool2d::AdaptiveAvgPool2d(int64_t output_size) : out_(output_size) {
  if (out_ <= 0 || out_ > kMaxNumel)
    fail_value("AdaptiveAvgPool2d(output_size=" + std::to_string(out_) +
               "): output_size must be from 1 to 2^40");
}

Shape AdaptiveAvgPool2d::output_shape(const Shape& in) const {
  if (in.ndim != 4) fail_shape("AdaptiveAvgPool2d expects input (N, C, H, W), got " + in.str());
  in.check();
  if (in[2] == 0 || in[3] == 0)
    fail_shape("AdaptiveAvgPool2d needs a non-empty image, got input " + in.str());
  if (!fits_numel({in[0], in[1], out_, out_}))
    fail_shape("AdaptiveAvgPool2d(" + std::to_string(out_) + ") on input " + in.str() +
               " gives an output of more than 2^40 elements");
  return Shape{in[0], in[1], out_, out_};
}

void AdaptiveAvgPool2d::forward_cpu(const Tensor& x, Tensor& y, float*) {
  adaptive_avgpool2d_forward_cpu(x.shape[0] * x.shape[1], x.shape[2], x.shape[3], out_, x.data,
                                 y.data);
}

void AdaptiveAvgPool2d::backward_cpu(const Tensor& x, const Tensor&, const Tensor& dy,
                                     Tensor* dx, float*) {
  if (dx)
    adaptive_avgpool2d_backward_cpu(x.shape[0] * x.shape[1], x.shape[2], x.shape[3], out_,
                                    x.data, dy.data, dx->data, masked_dx_);
}

}  // namespace hc
