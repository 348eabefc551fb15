// x (C,H,W) <-> col (C*K*K, Ho*Wo)
#include "heterocnn/im2col.h"

#include <algorithm>
#include <cstring>

namespace hc {

ConvGeom make_conv_geom(int64_t C, int64_t H, int64_t W, int64_t K, int64_t stride, int64_t pad) {
  ConvGeom g{C, H, W, K, stride, pad, 0, 0};
  g.Ho = (H + 2 * pad - K) / stride + 1;
  g.Wo = (W + 2 * pad - K) / stride + 1;
  return g;
}

namespace {

// Output columns ow whose input column ow*stride - pad + kw lies inside [0, W): [lo, hi).
inline void valid_range(int64_t kw, int64_t pad, int64_t stride, int64_t W, int64_t Wo,
                        int64_t& lo, int64_t& hi) {
  const int64_t first = pad - kw;  // smallest ow*stride that lands on column 0
  lo = first <= 0 ? 0 : (first + stride - 1) / stride;
  const int64_t last = W - 1 + pad - kw;  // largest ow*stride that lands on column W-1
  hi = last < 0 ? 0 : std::min(Wo, last / stride + 1);
  lo = std::min(lo, hi);
}

}  // namespace

void im2col_cpu(const ConvGeom& g, const float* x, float* col) {
  const int64_t K = g.K, s = g.stride, p = g.pad;
  for (int64_t c = 0; c < g.C; ++c) {
    const float* xc = x + c * g.H * g.W;
    for (int64_t kh = 0; kh < K; ++kh) {
      for (int64_t kw = 0; kw < K; ++kw) {
        float* row = col + ((c * K + kh) * K + kw) * g.Ho * g.Wo;
        int64_t lo, hi;
        valid_range(kw, p, s, g.W, g.Wo, lo, hi);
        for (int64_t oh = 0; oh < g.Ho; ++oh) {
          float* out = row + oh * g.Wo;
          const int64_t ih = oh * s - p + kh;
          if (ih < 0 || ih >= g.H) {
            std::memset(out, 0, g.Wo * sizeof(float));
            continue;
          }
          // Row ih shifted by kw - pad: in[ow*s] is x[c, ih, ow*s - pad + kw] for ow in [lo, hi).
          const float* in = xc + ih * g.W + (kw - p);
          for (int64_t ow = 0; ow < lo; ++ow) out[ow] = 0.f;
          if (s == 1) {
            if (hi > lo) std::memcpy(out + lo, in + lo, (hi - lo) * sizeof(float));
          } else {
            for (int64_t ow = lo; ow < hi; ++ow) out[ow] = in[ow * s];
          }
          for (int64_t ow = hi; ow < g.Wo; ++ow) out[ow] = 0.f;
        }
      }
    }
  }
}

void col2im_cpu(const ConvGeom& g, const float* col, float* x) {
  const int64_t K = g.K, s = g.stride, p = g.pad;
  std::memset(x, 0, g.C * g.H * g.W * sizeof(float));
  for (int64_t c = 0; c < g.C; ++c) {
    float* xc = x + c * g.H * g.W;
    for (int64_t kh = 0; kh < K; ++kh) {
      for (int64_t kw = 0; kw < K; ++kw) {
        const float* row = col + ((c * K + kh) * K + kw) * g.Ho * g.Wo;
        int64_t lo, hi;
        valid_range(kw, p, s, g.W, g.Wo, lo, hi);
        for (int64_t oh = 0; oh < g.Ho; ++oh) {
          const int64_t ih = oh * s - p + kh;
          if (ih < 0 || ih >= g.H) continue;
          const float* in = row + oh * g.Wo;
          float* out = xc + ih * g.W + kw - p;
          for (int64_t ow = lo; ow < hi; ++ow) out[ow * s] += in[ow];
        }
      }
    }
  }
}

}  // namespace hc
