// Internal to the direct convolution kernels: the channel-vector kernels, one copy per
// instruction set (built with the row and flat kernels of conv_direct_kernels.h, whose vector
// policy Isa they take).
//   forward:     x (n,C,H,W), wt (C*K*K, M), b (M,) -> y (n,M,Ho,Wo)
//   weight_grad: x (n,C,H,W), dy (n,M,Ho,Wo) -> dw (M,C*K*K) +=
// For stride-1 convolutions of narrow outputs (Wo <= kMaxChannelWidth) with a multiple of L
// output channels (L, a vector's lanes): a vector holds L output channels of one output position
// instead of a row of positions, so every lane works however narrow the row (on lenet5's
// 10-wide conv2 the row kernels keep 10 of a 16-lane vector's lanes busy). Each input value is
// broadcast and multiplied into the L channels' weights; a padded convolution reads a copy of
// each sample with its zero border, so no tap is masked.
#pragma once
#include <algorithm>
#include <array>
#include <cstdint>
#include <utility>

#include "conv_direct_kernels.h"

namespace hc::conv_direct {
namespace {

// Forward of channels [m0, m0 + L) over `rows` (<= R) output rows from oh0, each all P = Wo
// positions wide: R*P accumulators (R = kAccs / P), each a vector of the L channels; each tap
// loads the L channels' weight once and broadcasts R*P inputs.
template <class Isa, int K, int P>
struct ChannelForward {
  using Vec = typename Isa::Vec;
  static constexpr int L = Isa::kLanes, R = std::max(1, kAccs<Isa> / P);
  static void tile(const ConvGeom& g, int64_t M, const float* x, const float* wt, const float* b,
                   float* y, bool relu_out, int64_t m0, int64_t oh0, int64_t rows) {
    Vec acc[R][P];
    const Vec init = b ? Isa::loadu(b + m0) : Isa::zero();
    #pragma GCC unroll 32
    for (int r = 0; r < R; ++r)
      #pragma GCC unroll 32
      for (int j = 0; j < P; ++j) acc[r][j] = init;
    const float* wk = wt + m0;
    for (int64_t c = 0; c < g.C; ++c)
      for (int kh = 0; kh < K; ++kh) {
        const float* row[R];
        #pragma GCC unroll 32
        for (int r = 0; r < R; ++r)  // rows past the tile's last read its first row's inputs
          row[r] = x + (c * g.H + oh0 + (r < rows ? r : 0) + kh) * g.W;
        for (int kw = 0; kw < K; ++kw, wk += M) {
          const Vec wv = Isa::loadu(wk);
          #pragma GCC unroll 32
          for (int r = 0; r < R; ++r)
            #pragma GCC unroll 32
            for (int j = 0; j < P; ++j)
              acc[r][j] = Isa::fmadd(wv, Isa::set1(row[r][j + kw]), acc[r][j]);
        }
      }
    // Transposed into y's planes through a small buffer: position-major to channel-major.
    alignas(64) float out[R * P * L];
    #pragma GCC unroll 32
    for (int r = 0; r < R; ++r)
      #pragma GCC unroll 32
      for (int j = 0; j < P; ++j)
        Isa::storeu(out + (r * P + j) * L, relu_out ? Isa::relu(acc[r][j]) : acc[r][j]);
    const int64_t plane = g.Ho * g.Wo;
    for (int i = 0; i < L; ++i) {
      float* yi = y + (m0 + i) * plane + oh0 * P;
      for (int64_t q = 0; q < rows * P; ++q) yi[q] = out[q * L + i];
    }
  }
};

// dL/dw of channels [m0, m0 + L) and the KH kernel rows from kh0 of input channel c, over one
// sample: KH*K accumulators, each the L channels' weight gradient at one tap, summed over the
// sample's positions and then added to dwt (C*K*K, L), so that no float sum runs over more
// than one sample's positions (a sum carried on through every sample of the batch was 5x
// further from the exact one than the GEMM path's); each output position loads its L
// channels' dy (from dyt, the sample's dy transposed to (Ho*Wo, L)) once and broadcasts KH*K
// inputs.
template <class Isa, int K, int KH>
void channel_weight_grad_rows(const ConvGeom& g, const float* xc, const float* dyt, float* dwt,
                              int64_t c, int kh0) {
  using Vec = typename Isa::Vec;
  constexpr int L = Isa::kLanes;
  Vec acc[KH][K];
  float* dk = dwt + ((c * K + kh0) * K) * L;
  #pragma GCC unroll 32
  for (int kh = 0; kh < KH; ++kh)
    #pragma GCC unroll 32
    for (int kw = 0; kw < K; ++kw) acc[kh][kw] = Isa::zero();
  for (int64_t oh = 0; oh < g.Ho; ++oh) {
    const float* row[KH];
    #pragma GCC unroll 32
    for (int kh = 0; kh < KH; ++kh) row[kh] = xc + (oh + kh0 + kh) * g.W;
    for (int64_t ow = 0; ow < g.Wo; ++ow) {
      const Vec dv = Isa::loadu(dyt + (oh * g.Wo + ow) * L);
      #pragma GCC unroll 32
      for (int kh = 0; kh < KH; ++kh)
        #pragma GCC unroll 32
        for (int kw = 0; kw < K; ++kw)
          acc[kh][kw] = Isa::fmadd(dv, Isa::set1(row[kh][ow + kw]), acc[kh][kw]);
    }
  }
  #pragma GCC unroll 32
  for (int kh = 0; kh < KH; ++kh)
    #pragma GCC unroll 32
    for (int kw = 0; kw < K; ++kw) {
      float* d = dk + (kh * K + kw) * L;
      Isa::storeu(d, Isa::add(Isa::loadu(d), acc[kh][kw]));
    }
}

template <class Isa, int K, int... P>
constexpr auto channel_forward_table(std::integer_sequence<int, P...>) {
  return std::array<decltype(&ChannelForward<Isa, K, 1>::tile), sizeof...(P)>{
      &ChannelForward<Isa, K, P + 1>::tile...};
}

// x (C,H,W) -> xp (C, H + 2*pad, W + 2*pad): the sample with its zero border, so that the
// kernels read every tap in place; xp from this thread's `buffer`. Returns the geometry of xp,
// unpadded, with the same output. (Plain loops, as everywhere in these kernels: a standard
// container or algorithm instantiated here would be compiled for this instruction set with
// external linkage, and the linker could pick that copy for code that runs on any CPU.)
inline ConvGeom pad_into(const ConvGeom& g, const float* x, ScratchBuffer& buffer,
                         const float*& xp) {
  const ConvGeom u = make_conv_geom(g.C, g.H + 2 * g.pad, g.W + 2 * g.pad, g.K, 1, 0);
  float* p = buffer.get(u.C * u.H * u.W);
  for (int64_t i = 0, n = u.C * u.H * u.W; i < n; ++i) p[i] = 0.f;
  for (int64_t c = 0; c < g.C; ++c)
    for (int64_t h = 0; h < g.H; ++h)
      for (int64_t w = 0; w < g.W; ++w)
        p[(c * u.H + h + g.pad) * u.W + g.pad + w] = x[(c * g.H + h) * g.W + w];
  xp = p;
  return u;
}

// This thread's padded sample (pad_into), and the channel dw's transposed dy and dw blocks.
thread_local ScratchBuffer padded, dy_transposed, dw_blocks;

template <class Isa, int K>
void channel_forward_k(const ConvGeom& g, int64_t M, int64_t count, const float* x,
                       const float* wt, const float* b, float* y, bool relu_out) {
  constexpr int L = Isa::kLanes;
  static constexpr auto table =
      channel_forward_table<Isa, K>(std::make_integer_sequence<int, kMaxChannelWidth>{});
  const auto tile = table[g.Wo - 1];
  const int64_t R = std::max<int64_t>(1, kAccs<Isa> / g.Wo);  // the tile's R
  for (int64_t n = 0; n < count; ++n, x += g.C * g.H * g.W, y += M * g.Ho * g.Wo) {
    const float* xu = x;
    const ConvGeom u = g.pad ? pad_into(g, x, padded, xu) : g;
    for (int64_t oh0 = 0; oh0 < g.Ho; oh0 += R)
      for (int64_t m0 = 0; m0 < M; m0 += L)
        tile(u, M, xu, wt, b, y, relu_out, m0, oh0, std::min(R, g.Ho - oh0));
  }
}

// KH kernel rows a sweep: KH*K accumulators within kAccs (24: 4 rows of K = 5, 3 of K = 3).
template <class Isa, int K>
void channel_weight_grad_k(const ConvGeom& g, int64_t M, int64_t count, const float* x,
                           const float* dy, float* dw) {
  constexpr int L = Isa::kLanes, KH = std::min(K, kAccs<Isa> / K);
  const int64_t plane = g.Ho * g.Wo, ckk = g.C * K * K, in_n = g.C * g.H * g.W;
  // A sample's dy of L channels transposed, and every block of L channels' dw at every tap
  // (M/L blocks of (C*K*K, L)).
  float* dyt = dy_transposed.get(plane * L);
  float* dwt = dw_blocks.get(ckk * M);
  for (int64_t i = 0; i < ckk * M; ++i) dwt[i] = 0.f;
  for (int64_t n = 0; n < count; ++n) {
    const float* xu = x + n * in_n;
    const ConvGeom u = g.pad ? pad_into(g, xu, padded, xu) : g;
    for (int64_t m0 = 0; m0 < M; m0 += L) {
      const float* dyn = dy + (n * M + m0) * plane;
      for (int i = 0; i < L; ++i)
        for (int64_t p = 0; p < plane; ++p) dyt[p * L + i] = dyn[i * plane + p];
      float* dwb = dwt + m0 * ckk;
      for (int64_t c = 0; c < g.C; ++c) {
        const float* xc = xu + c * u.H * u.W;
        int kh0 = 0;
        for (; kh0 + KH <= K; kh0 += KH)
          channel_weight_grad_rows<Isa, K, KH>(u, xc, dyt, dwb, c, kh0);
        for (; kh0 < K; ++kh0) channel_weight_grad_rows<Isa, K, 1>(u, xc, dyt, dwb, c, kh0);
      }
    }
  }
  for (int64_t m0 = 0; m0 < M; m0 += L)
    for (int i = 0; i < L; ++i)
      for (int64_t k = 0; k < ckk; ++k) dw[(m0 + i) * ckk + k] += dwt[m0 * ckk + k * L + i];
}

template <class Isa>
void forward_channels(const ConvGeom& g, int64_t M, int64_t count, const float* x,
                      const float* wt, const float* b, float* y, bool relu_out) {
  (g.K == 3 ? channel_forward_k<Isa, 3> : channel_forward_k<Isa, 5>)(g, M, count, x, wt, b, y,
                                                                     relu_out);
}

template <class Isa>
void weight_grad_channels(const ConvGeom& g, int64_t M, int64_t count, const float* x,
                          const float* dy, float* dw) {
  (g.K == 3 ? channel_weight_grad_k<Isa, 3> : channel_weight_grad_k<Isa, 5>)(g, M, count, x, dy,
                                                                             dw);
}

// The instruction set's table (Kernels, conv_direct_kernels.h).
template <class Isa>
constexpr Kernels kernels_of{Isa::kLanes, &forward<Isa>, &forward_channels<Isa>,
                             &weight_grad<Isa>, &weight_grad_channels<Isa>};

}  // namespace
}  // namespace hc::conv_direct
