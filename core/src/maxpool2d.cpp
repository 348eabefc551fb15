// x (N,C,H,W) -> y (N,C,Ho,Wo)
#include "heterocnn/maxpool2d.h"

#include <cstring>

#include "heterocnn/error.h"

namespace hc {

namespace {

// Index (within the plane) of the first maximum of the window at output (oh, ow); a NaN wins,
// as in PyTorch, so it propagates instead of vanishing.
inline int64_t window_argmax(const float* plane, int64_t W, int64_t K, int64_t stride,
                             int64_t oh, int64_t ow) {
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

}  // namespace

void maxpool2d_forward_cpu(int64_t P, int64_t H, int64_t W, int64_t K, int64_t stride,
                           const float* x, float* y) {
  const int64_t Ho = (H - K) / stride + 1, Wo = (W - K) / stride + 1;
#pragma omp parallel for schedule(static) if (P * H * W > (1 << 15))
  for (int64_t p = 0; p < P; ++p) {
    const float* plane = x + p * H * W;
    float* out = y + p * Ho * Wo;
    for (int64_t oh = 0; oh < Ho; ++oh)
      for (int64_t ow = 0; ow < Wo; ++ow)
        out[oh * Wo + ow] = plane[window_argmax(plane, W, K, stride, oh, ow)];
  }
}

void maxpool2d_backward_cpu(int64_t P, int64_t H, int64_t W, int64_t K, int64_t stride,
                            const float* x, const float* dy, float* dx) {
  const int64_t Ho = (H - K) / stride + 1, Wo = (W - K) / stride + 1;
#pragma omp parallel for schedule(static) if (P * H * W > (1 << 15))
  for (int64_t p = 0; p < P; ++p) {
    const float* plane = x + p * H * W;
    float* dplane = dx + p * H * W;
    std::memset(dplane, 0, H * W * sizeof(float));
    for (int64_t oh = 0; oh < Ho; ++oh)
      for (int64_t ow = 0; ow < Wo; ++ow)
        dplane[window_argmax(plane, W, K, stride, oh, ow)] += dy[p * Ho * Wo + oh * Wo + ow];
  }
}

MaxPool2d::MaxPool2d(int64_t kernel, int64_t stride) : K_(kernel), stride_(stride) {
  if (K_ <= 0 || stride_ <= 0)
    fail_value("MaxPool2d(kernel_size=" + std::to_string(K_) + ", stride=" +
               std::to_string(stride_) + "): both must be positive");
}

Shape MaxPool2d::output_shape(const Shape& in) const {
  if (in.ndim != 4)
    fail_shape("MaxPool2d expects input (N, C, H, W), got " + in.str());
  if (in[2] < K_ || in[3] < K_)
    fail_shape("MaxPool2d window " + std::to_string(K_) + " is larger than input " + in.str());
  return Shape{in[0], in[1], (in[2] - K_) / stride_ + 1, (in[3] - K_) / stride_ + 1};
}

void MaxPool2d::forward_cpu(const Tensor& x, Tensor& y, float*) {
  maxpool2d_forward_cpu(x.shape[0] * x.shape[1], x.shape[2], x.shape[3], K_, stride_, x.data,
                        y.data);
}

void MaxPool2d::backward_cpu(const Tensor& x, const Tensor&, const Tensor& dy, Tensor* dx,
                             float*) {
  if (dx)
    maxpool2d_backward_cpu(x.shape[0] * x.shape[1], x.shape[2], x.shape[3], K_, stride_, x.data,
                           dy.data, dx->data);
}

}  // namespace hc
