// x (C,H,W) <-> col (C*K*K, Ho*Wo); x (C,H,W) -> row (Ho*Wo, C*K*K)
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

// im2col and col2im with the stride as a template argument when it is 1 (S = 1), so that the
// row copies and sums are plain unit-stride loops the compiler vectorises (short rows: no call
// to memcpy); S = 0 reads the stride from g.
template <int S>
void im2col_rows(const ConvGeom& g, const float* x, float* col, int64_t ld) {
  const int64_t K = g.K, s = S > 0 ? S : g.stride, p = g.pad;
  for (int64_t c = 0; c < g.C; ++c) {
    const float* xc = x + c * g.H * g.W;
    for (int64_t kh = 0; kh < K; ++kh) {
      for (int64_t kw = 0; kw < K; ++kw) {
        float* row = col + ((c * K + kh) * K + kw) * ld;
        int64_t lo, hi;
        valid_range(kw, p, s, g.W, g.Wo, lo, hi);
        for (int64_t oh = 0; oh < g.Ho; ++oh) {
          float* __restrict out = row + oh * g.Wo;
          const int64_t ih = oh * s - p + kh;
          if (ih < 0 || ih >= g.H) {
            for (int64_t ow = 0; ow < g.Wo; ++ow) out[ow] = 0.f;
            continue;
          }
          // Row ih shifted by kw - pad: in[ow*s] is x[c, ih, ow*s - pad + kw] for ow in [lo, hi).
          const float* __restrict in = xc + ih * g.W + (kw - p);
          for (int64_t ow = 0; ow < lo; ++ow) out[ow] = 0.f;
          for (int64_t ow = lo; ow < hi; ++ow) out[ow] = in[ow * s];
          for (int64_t ow = hi; ow < g.Wo; ++ow) out[ow] = 0.f;
        }
      }
    }
  }
}

template <int S>
void col2im_rows(const ConvGeom& g, const float* col, int64_t ld, float* x) {
  const int64_t K = g.K, s = S > 0 ? S : g.stride, p = g.pad;
  std::memset(x, 0, g.C * g.H * g.W * sizeof(float));
  for (int64_t c = 0; c < g.C; ++c) {
    float* xc = x + c * g.H * g.W;
    for (int64_t kh = 0; kh < K; ++kh) {
      for (int64_t kw = 0; kw < K; ++kw) {
        const float* row = col + ((c * K + kh) * K + kw) * ld;
        int64_t lo, hi;
        valid_range(kw, p, s, g.W, g.Wo, lo, hi);
        for (int64_t oh = 0; oh < g.Ho; ++oh) {
          const int64_t ih = oh * s - p + kh;
          if (ih < 0 || ih >= g.H) continue;
          const float* __restrict in = row + oh * g.Wo;
          float* __restrict out = xc + ih * g.W + kw - p;
          for (int64_t ow = lo; ow < hi; ++ow) out[ow * s] += in[ow];
        }
      }
    }
  }
}

}  // namespace

void im2col_cpu(const ConvGeom& g, const float* x, float* col, int64_t ld) {
  if (ld == 0) ld = g.col_cols();
  g.stride == 1 ? im2col_rows<1>(g, x, col, ld) : im2col_rows<0>(g, x, col, ld);
}

void col2im_cpu(const ConvGeom& g, const float* col, float* x, int64_t ld) {
  if (ld == 0) ld = g.col_cols();
  g.stride == 1 ? col2im_rows<1>(g, col, ld, x) : col2im_rows<0>(g, col, ld, x);
}

namespace {

// im2row with the kernel width as a template argument when it is small (KW > 0), so that each
// window row is a run of straight moves; KW = 0 reads it from g. Walks the input row by row:
// for each (c, kh, oh) the input row is checked once, and the output columns whose window
// hangs over the left or right padding are split off, so the interior needs no checks.
template <int KW>
void im2row_rows(const ConvGeom& g, const float* x, float* row) {
  const int64_t K = KW > 0 ? KW : g.K, s = g.stride, p = g.pad, ckk = g.col_rows();
  // Interior columns [lo, hi): ow * s - p >= 0 and ow * s - p + K <= W.
  const int64_t lo = std::min(g.Wo, (p + s - 1) / s);
  const int64_t hi = std::max(lo, std::min(g.Wo, g.W + p - K < 0 ? 0 : (g.W + p - K) / s + 1));
  for (int64_t c = 0; c < g.C; ++c) {
    for (int64_t kh = 0; kh < K; ++kh) {
      for (int64_t oh = 0; oh < g.Ho; ++oh) {
        float* out = row + oh * g.Wo * ckk + (c * K + kh) * K;
        const int64_t ih = oh * s - p + kh;
        if (ih < 0 || ih >= g.H) {
          for (int64_t ow = 0; ow < g.Wo; ++ow)
            for (int64_t kw = 0; kw < K; ++kw) out[ow * ckk + kw] = 0.f;
          continue;
        }
        const float* in = x + (c * g.H + ih) * g.W;
        auto edge = [&](int64_t ow) {  // a window that hangs over the padding
          for (int64_t kw = 0; kw < K; ++kw) {
            const int64_t iw = ow * s - p + kw;
            out[ow * ckk + kw] = iw >= 0 && iw < g.W ? in[iw] : 0.f;
          }
        };
        for (int64_t ow = 0; ow < lo; ++ow) edge(ow);
        for (int64_t ow = lo; ow < hi; ++ow)
          for (int64_t kw = 0; kw < K; ++kw) out[ow * ckk + kw] = in[ow * s - p + kw];
        for (int64_t ow = hi; ow < g.Wo; ++ow) edge(ow);
      }
    }
  }
}

}  // namespace

void im2row_cpu(const ConvGeom& g, const float* x, float* row) {
  switch (g.K) {
    case 3: return im2row_rows<3>(g, x, row);
    case 5: return im2row_rows<5>(g, x, row);
    default: return im2row_rows<0>(g, x, row);
  }
}

}  // namespace hc
