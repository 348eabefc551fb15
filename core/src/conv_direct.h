// Internal to conv2d.cpp: direct convolution kernels for small stride-1 convolutions of narrow
// images (the first layers of small CNNs), which never unroll the windows into a matrix.
//   forward:     x (n,C,H,W), wt (C*K*K, M), b (M,) -> y (n,M,Ho,Wo)
//   weight_grad: x (n,C,H,W), dy (n,M,Ho,Wo) -> dw (M,C*K*K) +=
// Each output row is one or two 16-float vectors (Wo <= 32), or, where the input rows are as
// wide as the output's (W == Wo), the whole output plane is one run of vectors; the taps that
// fall on the padding are masked-off lanes of the input loads, so the input is read in place.
// Narrow outputs with 16k channels instead hold 16 channels of one position in a vector
// (channels_fit below; a padded one reads a copy of each sample with its border). AVX-512F
// only (conv_direct_avx512.cpp, conv_channels_avx512.cpp); conv2d.cpp checks the CPU and the
// geometry before calling.
#pragma once
#include <cstdint>

#include "heterocnn/im2col.h"

namespace hc::conv_direct {

// Largest output (and input) width the kernels take, and the other limits of the geometry.
constexpr int64_t kMaxWidth = 32;
inline bool fits(const ConvGeom& g) {
  return g.stride == 1 && (g.K == 3 || g.K == 5) && g.pad < g.K && g.Wo <= kMaxWidth &&
         g.W <= kMaxWidth;
}

// The channel-vector kernels (conv_channels_avx512.cpp): convolutions of outputs up to
// kMaxChannelWidth wide with a multiple of 16 output channels, which forward and weight_grad
// hand to forward_channels and weight_grad_channels (same contracts).
constexpr int64_t kMaxChannelWidth = 12;
inline bool channels_fit(const ConvGeom& g, int64_t M) {
  return fits(g) && g.Wo <= kMaxChannelWidth && M % 16 == 0;
}
void forward_channels(const ConvGeom& g, int64_t M, int64_t count, const float* x,
                      const float* wt, const float* b, float* y, bool relu);
void weight_grad_channels(const ConvGeom& g, int64_t M, int64_t count, const float* x,
                          const float* dy, float* dw);

// For each of `count` samples, y = wt^T * windows(x) (+ b when b is not null), then max(., 0)
// when relu (NaN kept). wt holds the weights k-major: wt[k * M + m] for k = (c*K + kh)*K + kw.
void forward(const ConvGeom& g, int64_t M, int64_t count, const float* x, const float* wt,
             const float* b, float* y, bool relu);

// dw[m, k] += the sum over `count` samples and every output position of
// dy[n, m, oh, ow] * x[n, c, oh + kh - pad, ow + kw - pad], k = (c*K + kh)*K + kw. The samples
// go in chunks whose dy fits the L1, summed in registers per chunk, then over the chunks; each
// dw entry is reduced once per call.
void weight_grad(const ConvGeom& g, int64_t M, int64_t count, const float* x, const float* dy,
                 float* dw);

}  // namespace hc::conv_direct
