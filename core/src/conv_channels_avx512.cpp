// x (n,C,H,W), wt (C*K*K,M), b (M,) -> y (n,M,Ho,Wo);  x (n,C,H,W), dy (n,M,Ho,Wo) -> dw (M,C*K*K)
// Direct kernels for stride-1 convolutions of narrow outputs (Wo <= 12) with a multiple of 16
// output channels (conv_direct.h, channels_fit): a vector holds 16 output channels of one
// output position instead of a row of positions, so every lane works however narrow the row
// (on lenet5's 10-wide conv2 the row kernels keep 10 of a vector's 16 lanes busy). Each input
// value is broadcast and multiplied into the 16 channels' weights; a padded convolution reads a
// copy of each sample with its zero border, so no tap is masked. AVX-512F only.
#include <immintrin.h>

#include <algorithm>
#include <array>
#include <utility>
#include <vector>

#include "conv_direct.h"
#include "conv_direct_avx512.h"

namespace hc::conv_direct {
namespace {

// Forward of channels [m0, m0 + 16) over `rows` (<= R) output rows from oh0, each all P = Wo
// positions wide: R*P accumulators (R = 24 / P), each a vector of the 16 channels; each tap
// loads the 16 channels' weight once and broadcasts R*P inputs.
template <int K, int P>
struct ChannelForward {
  static constexpr int R = 24 / P;
  static void tile(const ConvGeom& g, int64_t M, const float* x, const float* wt, const float* b,
                   float* y, bool relu_out, int64_t m0, int64_t oh0, int64_t rows) {
    __m512 acc[R][P];
    const __m512 init = b ? _mm512_loadu_ps(b + m0) : _mm512_setzero_ps();
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
          const __m512 wv = _mm512_loadu_ps(wk);
          #pragma GCC unroll 32
          for (int r = 0; r < R; ++r)
            #pragma GCC unroll 32
            for (int j = 0; j < P; ++j)
              acc[r][j] = _mm512_fmadd_ps(wv, _mm512_set1_ps(row[r][j + kw]), acc[r][j]);
        }
      }
    // Transposed into y's planes through a small buffer: position-major to channel-major.
    alignas(64) float out[R * P * 16];
    #pragma GCC unroll 32
    for (int r = 0; r < R; ++r)
      #pragma GCC unroll 32
      for (int j = 0; j < P; ++j)
        _mm512_store_ps(out + (r * P + j) * 16, relu_out ? relu(acc[r][j]) : acc[r][j]);
    const int64_t plane = g.Ho * g.Wo;
    for (int i = 0; i < 16; ++i) {
      float* yi = y + (m0 + i) * plane + oh0 * P;
      for (int64_t q = 0; q < rows * P; ++q) yi[q] = out[q * 16 + i];
    }
  }
};

// dL/dw of channels [m0, m0 + 16) and the KH kernel rows from kh0 of input channel c, over one
// sample: KH*K accumulators, each the 16 channels' weight gradient at one tap, summed over the
// sample's positions and then added to dwt (C*K*K, 16), so that no float sum runs over more
// than one sample's positions (a sum carried on through every sample of the batch was 5x
// further from the exact one than the GEMM path's); each output position loads its 16
// channels' dy (from dyt, the sample's dy transposed to (Ho*Wo, 16)) once and broadcasts KH*K
// inputs.
template <int K, int KH>
void channel_weight_grad_rows(const ConvGeom& g, const float* xc, const float* dyt, float* dwt,
                              int64_t c, int kh0) {
  __m512 acc[KH][K];
  float* dk = dwt + ((c * K + kh0) * K) * 16;
  #pragma GCC unroll 32
  for (int kh = 0; kh < KH; ++kh)
    #pragma GCC unroll 32
    for (int kw = 0; kw < K; ++kw) acc[kh][kw] = _mm512_setzero_ps();
  for (int64_t oh = 0; oh < g.Ho; ++oh) {
    const float* row[KH];
    #pragma GCC unroll 32
    for (int kh = 0; kh < KH; ++kh) row[kh] = xc + (oh + kh0 + kh) * g.W;
    for (int64_t ow = 0; ow < g.Wo; ++ow) {
      const __m512 dv = _mm512_loadu_ps(dyt + (oh * g.Wo + ow) * 16);
      #pragma GCC unroll 32
      for (int kh = 0; kh < KH; ++kh)
        #pragma GCC unroll 32
        for (int kw = 0; kw < K; ++kw)
          acc[kh][kw] = _mm512_fmadd_ps(dv, _mm512_set1_ps(row[kh][ow + kw]), acc[kh][kw]);
    }
  }
  #pragma GCC unroll 32
  for (int kh = 0; kh < KH; ++kh)
    #pragma GCC unroll 32
    for (int kw = 0; kw < K; ++kw) {
      float* d = dk + (kh * K + kw) * 16;
      _mm512_storeu_ps(d, _mm512_add_ps(_mm512_loadu_ps(d), acc[kh][kw]));
    }
}

template <int K, int... P>
constexpr auto forward_table(std::integer_sequence<int, P...>) {
  return std::array<decltype(&ChannelForward<K, 1>::tile), sizeof...(P)>{
      &ChannelForward<K, P + 1>::tile...};
}

// x (C,H,W) -> xp (C, H + 2*pad, W + 2*pad): the sample with its zero border, so that the
// kernels read every tap in place. Returns the geometry of xp, unpadded, with the same output.
ConvGeom pad_into(const ConvGeom& g, const float* x, std::vector<float>& xp) {
  const ConvGeom u = make_conv_geom(g.C, g.H + 2 * g.pad, g.W + 2 * g.pad, g.K, 1, 0);
  xp.assign(static_cast<size_t>(u.C * u.H * u.W), 0.f);
  for (int64_t c = 0; c < g.C; ++c)
    for (int64_t h = 0; h < g.H; ++h)
      std::copy(x + (c * g.H + h) * g.W, x + (c * g.H + h + 1) * g.W,
                xp.data() + (c * u.H + h + g.pad) * u.W + g.pad);
  return u;
}

template <int K>
void channel_forward_k(const ConvGeom& g, int64_t M, int64_t count, const float* x,
                       const float* wt, const float* b, float* y, bool relu_out) {
  static constexpr auto table =
      forward_table<K>(std::make_integer_sequence<int, kMaxChannelWidth>{});
  const auto tile = table[g.Wo - 1];
  const int64_t R = 24 / g.Wo;
  thread_local std::vector<float> xp;  // this thread's padded sample
  for (int64_t n = 0; n < count; ++n, x += g.C * g.H * g.W, y += M * g.Ho * g.Wo) {
    const ConvGeom u = g.pad ? pad_into(g, x, xp) : g;
    const float* xu = g.pad ? xp.data() : x;
    for (int64_t oh0 = 0; oh0 < g.Ho; oh0 += R)
      for (int64_t m0 = 0; m0 < M; m0 += 16)
        tile(u, M, xu, wt, b, y, relu_out, m0, oh0, std::min(R, g.Ho - oh0));
  }
}

template <int K>
void channel_weight_grad_k(const ConvGeom& g, int64_t M, int64_t count, const float* x,
                           const float* dy, float* dw) {
  constexpr int KH = K == 5 ? 4 : 3;  // 20 or 9 accumulators
  const int64_t plane = g.Ho * g.Wo, ckk = g.C * K * K, in_n = g.C * g.H * g.W;
  // This thread's padded sample, its dy of 16 channels transposed, and every block of 16
  // channels' dw at every tap (M/16 blocks of (C*K*K, 16)).
  thread_local std::vector<float> xp, dyt, dwt;
  dyt.resize(static_cast<size_t>(plane * 16));
  dwt.assign(static_cast<size_t>(ckk * M), 0.f);
  for (int64_t n = 0; n < count; ++n) {
    const ConvGeom u = g.pad ? pad_into(g, x + n * in_n, xp) : g;
    const float* xu = g.pad ? xp.data() : x + n * in_n;
    for (int64_t m0 = 0; m0 < M; m0 += 16) {
      const float* dyn = dy + (n * M + m0) * plane;
      for (int i = 0; i < 16; ++i)
        for (int64_t p = 0; p < plane; ++p) dyt[p * 16 + i] = dyn[i * plane + p];
      float* dwb = dwt.data() + m0 * ckk;
      for (int64_t c = 0; c < g.C; ++c) {
        const float* xc = xu + c * u.H * u.W;
        int kh0 = 0;
        for (; kh0 + KH <= K; kh0 += KH)
          channel_weight_grad_rows<K, KH>(u, xc, dyt.data(), dwb, c, kh0);
        for (; kh0 < K; ++kh0) channel_weight_grad_rows<K, 1>(u, xc, dyt.data(), dwb, c, kh0);
      }
    }
  }
  for (int64_t m0 = 0; m0 < M; m0 += 16)
    for (int i = 0; i < 16; ++i)
      for (int64_t k = 0; k < ckk; ++k) dw[(m0 + i) * ckk + k] += dwt[m0 * ckk + k * 16 + i];
}

}  // namespace

void forward_channels(const ConvGeom& g, int64_t M, int64_t count, const float* x,
                      const float* wt, const float* b, float* y, bool relu_out) {
  (g.K == 3 ? channel_forward_k<3> : channel_forward_k<5>)(g, M, count, x, wt, b, y, relu_out);
}

void weight_grad_channels(const ConvGeom& g, int64_t M, int64_t count, const float* x,
                          const float* dy, float* dw) {
  (g.K == 3 ? channel_weight_grad_k<3> : channel_weight_grad_k<5>)(g, M, count, x, dy, dw);
}

}  // namespace hc::conv_direct
