// x (N,C,H,W) -> y (N,C,Ho,Wo)
#include "heterocnn/maxpool2d.h"

#include <algorithm>
#include <cstring>
#include <string>

#include "cpu_features.h"
#include "heterocnn/activation.h"
#include "heterocnn/error.h"
#include "maxpool2d_kernels.h"

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
                    int64_t ow0, int64_t n, float* v, int64_t* arg) {
  const float* base = plane + oh * stride * W + ow0 * stride;
  for (int64_t j = 0; j < n; ++j) v[j] = base[j * stride];
  if (arg)
    for (int64_t j = 0; j < n; ++j) arg[j] = 0;
  for (int64_t kh = 0; kh < K; ++kh) {
    for (int64_t kw = 0; kw < K; ++kw) {
      const float* tap = base + kh * W + kw;
      const int64_t offset = kh * W + kw;  // 64-bit: K * W may exceed 2^31
      for (int64_t j = 0; j < n; ++j) {
        const float u = tap[j * stride];
        const bool take = replaces(u, v[j]);
        v[j] = take ? u : v[j];
        if (arg) arg[j] = take ? offset : arg[j];
      }
    }
  }
}

// The common 2x2, stride-2 window. The first maximum of taps (a, b, c, d) in row_max's order is
// the first maximum of the top pair's and the bottom pair's first maxima (NaN included: the
// first NaN wins either way), so each input row is reduced by pairs on its own: loops of one
// stride-2 stream that the compiler vectorises (one loop over both rows is not vectorised, and
// its branches mispredict on real activations).
inline void pair_max(const float* __restrict r, int64_t n, float* __restrict v,
                     int32_t* __restrict second) {
  for (int64_t j = 0; j < n; ++j) {
    const float a = r[2 * j], b = r[2 * j + 1];
    const bool take = replaces(b, a);
    v[j] = take ? b : a;
    second[j] = take;
  }
}

// Maxima of the windows of output row oh, columns [0, n) with n <= kChunk, into v; with `arg`,
// the tap (kh * 2 + kw) of each first maximum.
inline void row_max_2x2(const float* plane, int64_t W, int64_t oh, int64_t n, float* v,
                        int32_t* arg) {
  float top[kChunk], bottom[kChunk];
  int32_t kt[kChunk], kb[kChunk];
  pair_max(plane + 2 * oh * W, n, top, kt);
  pair_max(plane + (2 * oh + 1) * W, n, bottom, kb);
  for (int64_t j = 0; j < n; ++j) {
    const bool take = replaces(bottom[j], top[j]);
    v[j] = take ? bottom[j] : top[j];
  }
  if (arg)
    for (int64_t j = 0; j < n; ++j)
      arg[j] = replaces(bottom[j], top[j]) ? 2 + kb[j] : kt[j];
}

// Backward of one dx row of 2x2 windows: e[2j + kw] = g[j] where window j's maximum is tap
// row_tap + kw, else 0 (one dx row per call: a loop the compiler vectorises). With Mask, also 0
// where the input row r is not > 0 (the backward of a ReLU before the pooling).
template <bool Mask>
inline void spread_row(const float* __restrict g, const int32_t* __restrict arg, int32_t row_tap,
                       int64_t n, const float* __restrict r, float* __restrict e) {
  for (int64_t j = 0; j < n; ++j) {
    const float gj = g[j];  // loaded unconditionally, so the selects need no branch
    float e0 = arg[j] == row_tap ? gj : 0.f, e1 = arg[j] == row_tap + 1 ? gj : 0.f;
    if (Mask) {
      e0 = r[2 * j] > 0.f ? e0 : 0.f;
      e1 = r[2 * j + 1] > 0.f ? e1 : 0.f;
    }
    e[2 * j] = e0;
    e[2 * j + 1] = e1;
  }
}

// The 2x2, stride-2 backward of plane p (see maxpool2d_backward_cpu).
template <bool Mask>
void backward_plane_2x2(int64_t H, int64_t W, const float* xp, const float* dyp, float* dplane) {
  const int64_t Ho = H / 2, Wo = W / 2;
  // Disjoint windows: each one's four dx entries are written (the gradient or 0) in one pass;
  // only what the floor mode leaves uncovered (an odd last row or column) is zeroed.
  float v[kChunk];
  int32_t arg[kChunk];
  for (int64_t oh = 0; oh < Ho; ++oh) {
    float* d0 = dplane + 2 * oh * W;
    float* d1 = d0 + W;
    const float* x0 = xp + 2 * oh * W;
    for (int64_t ow0 = 0; ow0 < Wo; ow0 += kChunk) {
      const int64_t n = std::min(kChunk, Wo - ow0);
      row_max_2x2(xp + 2 * ow0, W, oh, n, v, arg);
      const float* g = dyp + oh * Wo + ow0;
      spread_row<Mask>(g, arg, 0, n, x0 + 2 * ow0, d0 + 2 * ow0);
      spread_row<Mask>(g, arg, 2, n, x0 + W + 2 * ow0, d1 + 2 * ow0);
    }
    for (int64_t w = 2 * Wo; w < W; ++w) d0[w] = d1[w] = 0.f;
  }
  for (int64_t h = 2 * Ho; h < H; ++h) std::memset(dplane + h * W, 0, W * sizeof(float));
}

// The vector kernels for this pooling where there are some (2x2, stride 2, rows up to
// maxpool_2x2::kMaxWidth), else null: the portable loops above.
const maxpool_2x2::Kernels* vector_kernels(int64_t W, int64_t K, int64_t stride) {
  return K == 2 && stride == 2 && W <= maxpool_2x2::kMaxWidth ? maxpool_2x2::kernels() : nullptr;
}

}  // namespace

namespace maxpool_2x2 {

namespace {

// The kernels of the widest instruction set this CPU runs, or those force_kernels chose. (The
// AVX2 ones need no FMA; they are taken where the other AVX2 kernels are, AVX2 with FMA.)
constexpr IsaTables<Kernels> kTables{&kernels_avx512, &kernels_avx2};

}  // namespace

const Kernels* kernels() { return kTables.active(); }

bool force_kernels(const char* name) {
  if (name && std::string(name) == "portable") return kTables.active() = nullptr, true;
  return kTables.force(name);
}

}  // namespace maxpool_2x2

void maxpool2d_forward_cpu(int64_t P, int64_t H, int64_t W, int64_t K, int64_t stride,
                           const float* x, float* y) {
  const int64_t Ho = (H - K) / stride + 1, Wo = (W - K) / stride + 1;
  const maxpool_2x2::Kernels* vector_2x2 = vector_kernels(W, K, stride);
#pragma omp parallel for schedule(static) if (P * H * W > (1 << 15))
  for (int64_t p = 0; p < P; ++p) {
    if (vector_2x2) {
      vector_2x2->forward(H, W, x + p * H * W, y + p * Ho * Wo);
      continue;
    }
    for (int64_t oh = 0; oh < Ho; ++oh) {
      float* out = y + (p * Ho + oh) * Wo;
      if (K == 2 && stride == 2)
        for (int64_t ow0 = 0; ow0 < Wo; ow0 += kChunk)
          row_max_2x2(x + p * H * W + 2 * ow0, W, oh, std::min(kChunk, Wo - ow0), out + ow0,
                      nullptr);
      else
        row_max(x + p * H * W, W, K, stride, oh, 0, Wo, out, nullptr);
    }
  }
}

void maxpool2d_backward_cpu(int64_t P, int64_t H, int64_t W, int64_t K, int64_t stride,
                            const float* x, const float* dy, float* dx, bool relu_mask) {
  const int64_t Ho = (H - K) / stride + 1, Wo = (W - K) / stride + 1;
  const maxpool_2x2::Kernels* vector_2x2 = vector_kernels(W, K, stride);
#pragma omp parallel for schedule(static) if (P * H * W > (1 << 15))
  for (int64_t p = 0; p < P; ++p) {
    float* dplane = dx + p * H * W;
    const float* xp = x + p * H * W;
    if (vector_2x2) {
      vector_2x2->backward(H, W, xp, dy + p * Ho * Wo, dplane, relu_mask);
      continue;
    }
    if (K == 2 && stride == 2) {
      (relu_mask ? backward_plane_2x2<true> : backward_plane_2x2<false>)(H, W, xp, dy + p * Ho * Wo,
                                                                         dplane);
      continue;
    }
    std::memset(dplane, 0, H * W * sizeof(float));
    float v[kChunk];
    int64_t arg[kChunk];
    for (int64_t oh = 0; oh < Ho; ++oh) {
      for (int64_t ow0 = 0; ow0 < Wo; ow0 += kChunk) {
        const int64_t n = std::min(kChunk, Wo - ow0);
        row_max(xp, W, K, stride, oh, ow0, n, v, arg);
        const float* g = dy + (p * Ho + oh) * Wo + ow0;
        float* d = dplane + oh * stride * W + ow0 * stride;
        for (int64_t j = 0; j < n; ++j) d[j * stride + arg[j]] += g[j];
      }
    }
    if (relu_mask) relu_backward_cpu(H * W, xp, dplane, dplane);
  }
}

MaxPool2d::MaxPool2d(int64_t kernel, int64_t stride) : K_(kernel), stride_(stride) {
  if (K_ <= 0 || stride_ <= 0)
    fail_value("MaxPool2d(kernel_size=" + std::to_string(K_) + ", stride=" +
               std::to_string(stride_) + "): both must be positive");
  if (K_ > kMaxNumel || stride_ > kMaxNumel)
    fail_value("MaxPool2d(kernel_size=" + std::to_string(K_) + ", stride=" +
               std::to_string(stride_) + "): both must be at most 2^40");
}

Shape MaxPool2d::output_shape(const Shape& in) const {
  if (in.ndim != 4)
    fail_shape("MaxPool2d expects input (N, C, H, W), got " + in.str());
  in.check();
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
                           dy.data, dx->data, masked_dx_);
}

}  // namespace hc
