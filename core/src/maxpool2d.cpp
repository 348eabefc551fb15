// x (N,C,H,W) -> y (N,C,Ho,Wo)
#include "heterocnn/maxpool2d.h"

#include <algorithm>
#include <cstring>

#include "heterocnn/error.h"

namespace hc {

namespace {

// The larger of v and u, where a NaN wins (as in PyTorch, so it propagates instead of
// vanishing); written as selects, which random data cannot mispredict.
// (Bitwise | and &: a short-circuit || compiles to a branch.)
inline bool replaces(float u, float v) { return (u > v) | ((u != u) & (v == v)); }

// Windows are visited tap by tap: for each (kh, kw), one pass along a row of outputs. The
// inner loops then run over outputs, which vectorises, and random data cannot mispredict.
constexpr int64_t kChunk = 64;  // outputs handled together in backward (stack arrays)

// Maximum of each window of output row oh, columns [ow0, ow0 + n), into v; with `arg`, also
// the offset (kh * W + kw) of each window's first maximum.
inline void row_max(const float* plane, int64_t W, int64_t K, int64_t stride, int64_t oh,
                    int64_t ow0, int64_t n, float* v, int32_t* arg) {
  const float* base = plane + oh * stride * W + ow0 * stride;
  for (int64_t j = 0; j < n; ++j) v[j] = base[j * stride];
  if (arg)
    for (int64_t j = 0; j < n; ++j) arg[j] = 0;
  for (int64_t kh = 0; kh < K; ++kh) {
    for (int64_t kw = 0; kw < K; ++kw) {
      const float* tap = base + kh * W + kw;
      const int32_t offset = static_cast<int32_t>(kh * W + kw);
      for (int64_t j = 0; j < n; ++j) {
        const float u = tap[j * stride];
        const bool take = replaces(u, v[j]);
        v[j] = take ? u : v[j];
        if (arg) arg[j] = take ? offset : arg[j];
      }
    }
  }
}

// The common 2x2, stride-2 window, with the taps in the same order as row_max (so the same
// maximum wins): the two input rows of output row `oh` are read once, contiguously.
// Returns in v the maxima and, with `arg`, the tap (0..3, kh * 2 + kw) of each first maximum.
inline void row_max_2x2(const float* plane, int64_t W, int64_t oh, int64_t Wo, float* v,
                        int32_t* arg) {
  const float* r0 = plane + 2 * oh * W;
  const float* r1 = r0 + W;
  for (int64_t j = 0; j < Wo; ++j) {
    const float a = r0[2 * j], b = r0[2 * j + 1], c = r1[2 * j], d = r1[2 * j + 1];
    float m = a;
    int32_t t = 0;
    bool take = replaces(b, m);
    m = take ? b : m, t = take ? 1 : t;
    take = replaces(c, m);
    m = take ? c : m, t = take ? 2 : t;
    take = replaces(d, m);
    m = take ? d : m, t = take ? 3 : t;
    v[j] = m;
    if (arg) arg[j] = t;
  }
}

}  // namespace

void maxpool2d_forward_cpu(int64_t P, int64_t H, int64_t W, int64_t K, int64_t stride,
                           const float* x, float* y) {
  const int64_t Ho = (H - K) / stride + 1, Wo = (W - K) / stride + 1;
#pragma omp parallel for schedule(static) if (P * H * W > (1 << 15))
  for (int64_t p = 0; p < P; ++p)
    for (int64_t oh = 0; oh < Ho; ++oh) {
      float* out = y + (p * Ho + oh) * Wo;
      if (K == 2 && stride == 2)
        row_max_2x2(x + p * H * W, W, oh, Wo, out, nullptr);
      else
        row_max(x + p * H * W, W, K, stride, oh, 0, Wo, out, nullptr);
    }
}

void maxpool2d_backward_cpu(int64_t P, int64_t H, int64_t W, int64_t K, int64_t stride,
                            const float* x, const float* dy, float* dx) {
  const int64_t Ho = (H - K) / stride + 1, Wo = (W - K) / stride + 1;
#pragma omp parallel for schedule(static) if (P * H * W > (1 << 15))
  for (int64_t p = 0; p < P; ++p) {
    float* dplane = dx + p * H * W;
    if (K == 2 && stride == 2) {
      // Disjoint windows: each one's four dx entries are written (the gradient or 0) in one
      // pass; only what the floor mode leaves uncovered (an odd last row or column) is zeroed.
      float v[kChunk];
      int32_t arg[kChunk];
      for (int64_t oh = 0; oh < Ho; ++oh) {
        float* d0 = dplane + 2 * oh * W;
        float* d1 = d0 + W;
        for (int64_t ow0 = 0; ow0 < Wo; ow0 += kChunk) {
          const int64_t n = std::min(kChunk, Wo - ow0);
          row_max_2x2(x + p * H * W + 2 * ow0, W, oh, n, v, arg);
          const float* g = dy + (p * Ho + oh) * Wo + ow0;
          float* e0 = d0 + 2 * ow0;
          float* e1 = d1 + 2 * ow0;
          for (int64_t j = 0; j < n; ++j) {
            const float gj = g[j];
            const int32_t t = arg[j];
            e0[2 * j] = t == 0 ? gj : 0.f;
            e0[2 * j + 1] = t == 1 ? gj : 0.f;
            e1[2 * j] = t == 2 ? gj : 0.f;
            e1[2 * j + 1] = t == 3 ? gj : 0.f;
          }
        }
        for (int64_t w = 2 * Wo; w < W; ++w) d0[w] = d1[w] = 0.f;
      }
      for (int64_t h = 2 * Ho; h < H; ++h) std::memset(dplane + h * W, 0, W * sizeof(float));
      continue;
    }
    std::memset(dplane, 0, H * W * sizeof(float));
    float v[kChunk];
    int32_t arg[kChunk];
    for (int64_t oh = 0; oh < Ho; ++oh) {
      for (int64_t ow0 = 0; ow0 < Wo; ow0 += kChunk) {
        const int64_t n = std::min(kChunk, Wo - ow0);
        row_max(x + p * H * W, W, K, stride, oh, ow0, n, v, arg);
        const float* g = dy + (p * Ho + oh) * Wo + ow0;
        float* d = dplane + oh * stride * W + ow0 * stride;
        for (int64_t j = 0; j < n; ++j) d[j * stride + arg[j]] += g[j];
      }
    }
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
