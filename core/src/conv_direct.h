// Internal to conv2d.cpp: direct convolution kernels for small stride-1 convolutions of narrow
// images (the first layers of small CNNs), which never unroll the windows into a matrix.
//   forward:     x (n,C,H,W), wt (C*K*K, M), b (M,) -> y (n,M,Ho,Wo)
//   weight_grad: x (n,C,H,W), dy (n,M,Ho,Wo) -> dw (M,C*K*K) +=
// Each output row is up to 32 / L vectors of L floats (L = lanes(): 16 with AVX-512, 8 with
// AVX2), or, where the input rows are as wide as the output's (W == Wo), the whole output plane
// is one run of vectors; the taps that fall on the padding are masked-off lanes of the input
// loads, so the input is read in place. Narrow outputs (Wo <= kMaxChannelWidth) with a multiple
// of L output channels instead hold L channels of one position in a vector (a padded one reads
// a copy of each sample with its border). Built for AVX-512F and for AVX2 + FMA
// (conv_direct_kernels.h); conv2d.cpp checks available() and the geometry (fits) before calling.
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

// The widest output the channel-vector kernels take.
constexpr int64_t kMaxChannelWidth = 12;

// Whether this CPU runs one of the kernels' instruction sets (AVX-512F, or AVX2 with FMA).
bool available();

// Floats a vector of the kernels in use holds (16 or 8; 0 where none is available).
int lanes();

// Test hook: run the kernels built for this instruction set ("avx512", "avx2") if this CPU
// runs it (returns whether it does); nullptr: the widest this CPU runs, as at start.
bool force_kernels(const char* name);

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
