// x (n,C,H,W), wt (C*K*K,M), b (M,) -> y (n,M,Ho,Wo);  x (n,C,H,W), dy (n,M,Ho,Wo) -> dw (M,C*K*K)
// Direct stride-1 convolution kernels (conv_direct.h), AVX-512F. An output row of Wo <= 32 is
// V = 1 or 2 vectors of 16 lanes; input row segments are loaded with masks that drop the lanes
// whose tap falls on the padding or past the row (AVX-512 masked loads do not touch masked-off
// memory), so the input is read in place.
#include <immintrin.h>

#include <algorithm>
#include <array>
#include <utility>

#include "conv_direct.h"
#include "conv_direct_avx512.h"
#include "cpu_features.h"
#include "scratch.h"

namespace hc::conv_direct {
namespace {

// Lanes [lo, hi) of a vector, clamped to [0, 16).
__mmask16 lanes_between(int64_t lo, int64_t hi) {
  lo = std::max<int64_t>(lo, 0);
  hi = std::min<int64_t>(hi, 16);
  if (hi <= lo) return 0;
  return (__mmask16)(((1u << hi) - 1u) & ~((1u << lo) - 1u));
}

// For tap kw and output vector v: lanes j whose output column ow = 16v + j is < Wo and whose
// input column ow + kw - pad lies in [0, W). out[v]: lanes with ow < Wo.
template <int K, int V>
struct Masks {
  __mmask16 tap[K][V], out[V];
  explicit Masks(const ConvGeom& g) {
    #pragma GCC unroll 16
    for (int v = 0; v < V; ++v) {
      out[v] = lanes_between(0, g.Wo - 16 * v);
      #pragma GCC unroll 16
      for (int kw = 0; kw < K; ++kw)
        tap[kw][v] = out[v] & lanes_between(g.pad - kw - 16 * v, g.W + g.pad - kw - 16 * v);
    }
  }
};

// Forward of MB output channels [m0, m0 + MB) and R output rows [oh0, oh0 + R): MB*R*V
// accumulators; each tap loads R*V input vectors and broadcasts MB weights.
template <int K, int V, int R>
struct Forward {
  template <int MB>
  static void tile(const ConvGeom& g, int64_t M, const float* x, const float* wt, const float* b,
                   float* y, bool relu_out, const Masks<K, V>& mk, int64_t m0, int64_t oh0) {
    __m512 acc[MB][R][V];
    #pragma GCC unroll 16
    for (int i = 0; i < MB; ++i) {
      const __m512 init = b ? _mm512_set1_ps(b[m0 + i]) : _mm512_setzero_ps();
      #pragma GCC unroll 16
      for (int r = 0; r < R; ++r)
        #pragma GCC unroll 16
        for (int v = 0; v < V; ++v) acc[i][r][v] = init;
    }
    const float* wk = wt + m0;
    for (int64_t c = 0; c < g.C; ++c) {
      const float* xc = x + c * g.H * g.W;
      for (int kh = 0; kh < K; ++kh, wk += K * M) {
        const float* row[R];
        __mmask16 on[R];
        #pragma GCC unroll 16
        for (int r = 0; r < R; ++r) {
          const int64_t ih = oh0 + r + kh - g.pad;
          const bool valid = ih >= 0 && ih < g.H && oh0 + r < g.Ho;
          on[r] = valid ? 0xFFFF : 0;
          row[r] = xc + (valid ? ih : 0) * g.W - g.pad;
        }
        bool any = false;
#pragma GCC unroll 16
        for (int r = 0; r < R; ++r) any |= on[r] != 0;
        if (!any) continue;  // every row of the tile is on the padding for this kernel row
        for (int kw = 0; kw < K; ++kw) {
          __m512 xv[R][V];
          #pragma GCC unroll 16
          for (int r = 0; r < R; ++r)
            #pragma GCC unroll 16
            for (int v = 0; v < V; ++v)
              xv[r][v] = _mm512_maskz_loadu_ps(on[r] & mk.tap[kw][v], row[r] + 16 * v + kw);
          const float* w = wk + kw * M;
          #pragma GCC unroll 16
          for (int i = 0; i < MB; ++i) {
            const __m512 wi = _mm512_set1_ps(w[i]);
            #pragma GCC unroll 16
            for (int r = 0; r < R; ++r)
              #pragma GCC unroll 16
              for (int v = 0; v < V; ++v) acc[i][r][v] = _mm512_fmadd_ps(wi, xv[r][v], acc[i][r][v]);
          }
        }
      }
    }
    #pragma GCC unroll 16
    for (int i = 0; i < MB; ++i)
      for (int r = 0; r < R && oh0 + r < g.Ho; ++r)
        #pragma GCC unroll 16
        for (int v = 0; v < V; ++v) {
          float* out = y + ((m0 + i) * g.Ho + oh0 + r) * g.Wo + 16 * v;
          _mm512_mask_storeu_ps(out, mk.out[v], relu_out ? relu(acc[i][r][v]) : acc[i][r][v]);
        }
  }
};

// A dw tile's MB*K accumulators start from zero for each chunk of samples and are then added
// to the tile's sums over the chunks before it (weight_grad_blocks), acc[i][kw] to
// state[i * K + kw]: each lane sums a chunk's products, then the chunks' sums, so a float sum
// carried over many samples does not drift (two levels, as a pairwise sum's first two).
template <int MB, int K>
inline void zero_tile(__m512 (&acc)[MB][K]) {
  #pragma GCC unroll 16
  for (int i = 0; i < MB; ++i)
    #pragma GCC unroll 16
    for (int kw = 0; kw < K; ++kw) acc[i][kw] = _mm512_setzero_ps();
}

template <int MB, int K>
inline void add_tile(const __m512 (&acc)[MB][K], __m512* state) {
  #pragma GCC unroll 16
  for (int i = 0; i < MB; ++i)
    #pragma GCC unroll 16
    for (int kw = 0; kw < K; ++kw)
      state[i * K + kw] = _mm512_add_ps(_mm512_load_ps(state + i * K + kw), acc[i][kw]);
}

// dL/dw of MB output channels [m0, m0 + MB) and the K taps of kernel row (c, kh), over
// `count` samples: MB*K accumulators held in registers over every output position of every
// sample, then added to `state`; each position vector loads MB dy vectors and K input vectors.
template <int K, int V>
struct WeightGrad {
  template <int MB>
  static void tile(const ConvGeom& g, int64_t M, int64_t count, const float* x, const float* dy,
                   __m512* state, const Masks<K, V>& mk, int64_t m0, int64_t c, int kh) {
    __m512 acc[MB][K];
    zero_tile<MB, K>(acc);
    const int64_t plane = g.Ho * g.Wo, in_n = g.C * g.H * g.W, out_n = M * plane;
    const int64_t oh_lo = std::max<int64_t>(0, g.pad - kh);
    const int64_t oh_hi = std::min<int64_t>(g.Ho, g.H + g.pad - kh);
    for (int64_t n = 0; n < count; ++n) {
      const float* xn = x + n * in_n + c * g.H * g.W;
      const float* dyn = dy + n * out_n + m0 * plane;
      for (int64_t oh = oh_lo; oh < oh_hi; ++oh) {
        const float* row = xn + (oh + kh - g.pad) * g.W - g.pad;
        const float* d = dyn + oh * g.Wo;
        #pragma GCC unroll 16
        for (int v = 0; v < V; ++v) {
          __m512 dv[MB];
          #pragma GCC unroll 16
          for (int i = 0; i < MB; ++i)
            dv[i] = _mm512_maskz_loadu_ps(mk.out[v], d + i * plane + 16 * v);
          for (int kw = 0; kw < K; ++kw) {
            const __m512 xv = _mm512_maskz_loadu_ps(mk.tap[kw][v], row + 16 * v + kw);
            #pragma GCC unroll 16
            for (int i = 0; i < MB; ++i) acc[i][kw] = _mm512_fmadd_ps(dv[i], xv, acc[i][kw]);
          }
        }
      }
    }
    add_tile<MB, K>(acc, state);
  }
};

// The flat kernels, for convolutions whose input rows are as wide as their output rows (W == Wo:
// stride 1 and padding (K-1)/2). There position p = oh * Wo + ow of an output plane reads input
// p + (kh - pad) * W + kw - pad for tap (kh, kw) wherever that tap is inside the image, so a
// vector of 16 consecutive positions of the plane, crossing its rows, reads 16 consecutive
// inputs: the plane is J = ceil(Ho*Wo / 16) vectors with every lane at work but the last one's
// tail (14 x 14: 13 vectors for 196 positions, 94% of their lanes, where one vector a row uses
// 88%; 28 x 28: 49 full vectors, where two a row use 88%).
constexpr int64_t kMaxFlatVectors = 64;  // planes of up to 1024 positions
inline bool flat_fits(const ConvGeom& g) {
  return g.W == g.Wo && g.Ho * g.Wo <= 16 * kMaxFlatVectors;
}

// For vector j of the plane and each kernel row kh / column kw: the lanes whose tap lies inside
// the image's rows (row) and inside its row (col); tap (kh, kw) reads lanes row & col. out: the
// lanes inside the plane. One spare vector of empty masks past the end, for a tile that
// overhangs it.
template <int K>
struct FlatMasks {
  int64_t J;
  __mmask16 row[kMaxFlatVectors + 1][K], col[kMaxFlatVectors + 1][K], out[kMaxFlatVectors + 1];
  explicit FlatMasks(const ConvGeom& g) : J((g.Ho * g.Wo + 15) / 16) {
    const int64_t plane = g.Ho * g.Wo;
    // The lanes of tap column k over positions p0 .. p0 + 15 are bits (p0 mod W) .. + 15 of
    // that column's valid row bits repeated: W <= 32, so 64 bits hold any 16 from any start.
    uint64_t repeated[K];
    for (int k = 0; k < K; ++k) {
      const int64_t lo = std::max<int64_t>(0, g.pad - k), hi = std::min(g.W, g.W + g.pad - k);
      const uint64_t one_row = hi > lo ? ((uint64_t{1} << hi) - 1) & ~((uint64_t{1} << lo) - 1) : 0;
      repeated[k] = 0;
      for (int64_t at = 0; at < 64; at += g.W) repeated[k] |= one_row << at;
    }
    for (int64_t j = 0, start = 0; j <= J; ++j, start = (start + 16) % g.W) {
      const int64_t p0 = 16 * j;
      out[j] = j < J ? lanes_between(0, plane - p0) : 0;
      for (int k = 0; k < K; ++k) {
        row[j][k] = out[j] & lanes_between((g.pad - k) * g.W - p0, (g.H + g.pad - k) * g.W - p0);
        col[j][k] = out[j] & static_cast<__mmask16>(repeated[k] >> start);
      }
    }
  }
};

// Forward of MB output channels [m0, m0 + MB) and R vectors [j0, j0 + R) of the plane: MB*R
// accumulators; each tap loads R input vectors and broadcasts MB weights.
template <int K, int R>
struct FlatForward {
  template <int MB>
  static void tile(const ConvGeom& g, int64_t M, const float* x, const float* wt, const float* b,
                   float* y, bool relu_out, const FlatMasks<K>& mk, int64_t m0, int64_t j0) {
    __m512 acc[MB][R];
    #pragma GCC unroll 32
    for (int i = 0; i < MB; ++i) {
      const __m512 init = b ? _mm512_set1_ps(b[m0 + i]) : _mm512_setzero_ps();
      #pragma GCC unroll 16
      for (int r = 0; r < R; ++r) acc[i][r] = init;
    }
    const int64_t plane = g.H * g.W;
    const float* wk = wt + m0;
    for (int64_t c = 0; c < g.C; ++c) {
      const float* xc = x + c * plane + 16 * j0;
      for (int kh = 0; kh < K; ++kh)
        for (int kw = 0; kw < K; ++kw, wk += M) {
          const int64_t off = (kh - g.pad) * g.W + kw - g.pad;
          __m512 xv[R];
          #pragma GCC unroll 16
          for (int r = 0; r < R; ++r)
            xv[r] = _mm512_maskz_loadu_ps(mk.row[j0 + r][kh] & mk.col[j0 + r][kw],
                                          xc + 16 * r + off);
          #pragma GCC unroll 32
          for (int i = 0; i < MB; ++i) {
            const __m512 wi = _mm512_set1_ps(wk[i]);
            #pragma GCC unroll 16
            for (int r = 0; r < R; ++r) acc[i][r] = _mm512_fmadd_ps(wi, xv[r], acc[i][r]);
          }
        }
    }
    #pragma GCC unroll 32
    for (int i = 0; i < MB; ++i)
      #pragma GCC unroll 16
      for (int r = 0; r < R; ++r)
        _mm512_mask_storeu_ps(y + (m0 + i) * plane + 16 * (j0 + r), mk.out[j0 + r],
                              relu_out ? relu(acc[i][r]) : acc[i][r]);
  }
};

// dL/dw of MB output channels [m0, m0 + MB) and the K taps of kernel row (c, kh), over `count`
// samples: MB*K accumulators, then added to `state`; each vector of the plane loads K input
// vectors (held) and MB dy vectors (one at a time).
template <int K>
struct FlatWeightGrad {
  template <int MB>
  static void tile(const ConvGeom& g, int64_t M, int64_t count, const float* x, const float* dy,
                   __m512* state, const FlatMasks<K>& mk, int64_t m0, int64_t c, int kh) {
    __m512 acc[MB][K];
    zero_tile<MB, K>(acc);
    const int64_t plane = g.H * g.W, in_n = g.C * plane, out_n = M * plane;
    const int64_t off = (kh - g.pad) * g.W - g.pad;
    for (int64_t n = 0; n < count; ++n) {
      const float* xn = x + n * in_n + c * plane + off;
      const float* dyn = dy + n * out_n + m0 * plane;
      for (int64_t j = 0; j < mk.J; ++j) {
        __m512 xv[K];
        #pragma GCC unroll 16
        for (int kw = 0; kw < K; ++kw)
          xv[kw] = _mm512_maskz_loadu_ps(mk.row[j][kh] & mk.col[j][kw], xn + 16 * j + kw);
        #pragma GCC unroll 16
        for (int i = 0; i < MB; ++i) {
          const __m512 dv = _mm512_maskz_loadu_ps(mk.out[j], dyn + i * plane + 16 * j);
          #pragma GCC unroll 16
          for (int kw = 0; kw < K; ++kw) acc[i][kw] = _mm512_fmadd_ps(dv, xv[kw], acc[i][kw]);
        }
      }
    }
    add_tile<MB, K>(acc, state);
  }
};

// tile<MB> for MB = 1..N, so that a last, partial block of channels keeps its accumulators in
// registers too.
template <class T, class F, int... I>
constexpr auto by_block_table(std::integer_sequence<int, I...>) {
  return std::array<F, sizeof...(I)>{&T::template tile<I + 1>...};
}

// Each thread's dw tile states (scratch.h).
thread_local ScratchBuffer tile_states;

// The dw sweep of both kernel families (T: WeightGrad or FlatWeightGrad, MB channels a tile):
// for each block of MB output channels, the samples in chunks whose dy (MB planes a sample)
// fills half of this core's L1 data cache (read from the CPU at run time), and within a chunk
// every (c, kh) tile, so that the chunk's dy is read from L1 by all C*K tiles. (Sweeping all
// the samples once per tile, as before, streamed dy from the L2 at MB vectors per MB*K FMAs,
// near what an L2 gives a core: 6-25% slower, CPU_PERF.md, entry 18.) Each tile's chunk sums
// are added up in `tile_states`, then the lanes of each are summed into dw once:
// dw[m0 + i, (c*K + kh)*K + kw] += the lanes of the sum of acc[i][kw].
template <class T, int MB, int K, class Mk>
void weight_grad_blocks(const ConvGeom& g, int64_t M, int64_t count, const float* x,
                        const float* dy, float* dw, const Mk& mk) {
  using F = decltype(&T::template tile<1>);
  static constexpr auto table = by_block_table<T, F>(std::make_integer_sequence<int, MB>{});
  const int64_t plane = g.Ho * g.Wo, in_n = g.C * g.H * g.W, out_n = M * plane;
  const int64_t chunk = std::max<int64_t>(
      1, cpu_l1d_bytes() / 2 / (MB * plane * static_cast<int64_t>(sizeof(float))));
  const int64_t tiles = g.C * K, ckk = g.C * K * K, per_tile = MB * K;
  __m512* state = reinterpret_cast<__m512*>(tile_states.get(tiles * per_tile * 16));
  for (int64_t m0 = 0; m0 < M; m0 += MB) {
    const int64_t mb = std::min<int64_t>(MB, M - m0);
    std::fill(state, state + tiles * per_tile, _mm512_setzero_ps());
    for (int64_t n0 = 0; n0 < count; n0 += chunk)
      for (int64_t c = 0; c < g.C; ++c)
        for (int kh = 0; kh < K; ++kh)
          table[mb - 1](g, M, std::min(chunk, count - n0), x + n0 * in_n, dy + n0 * out_n,
                        state + (c * K + kh) * per_tile, mk, m0, c, kh);
    for (int64_t t = 0; t < tiles; ++t)
      for (int64_t i = 0; i < mb; ++i)
        for (int kw = 0; kw < K; ++kw)
          dw[(m0 + i) * ckk + t * K + kw] +=
              _mm512_reduce_add_ps(state[t * per_tile + i * K + kw]);
  }
}

template <int K, int V>
void forward_kv(const ConvGeom& g, int64_t M, int64_t count, const float* x, const float* wt,
                const float* b, float* y, bool relu_out) {
  constexpr int R = 2, MB = V == 2 ? 6 : 12;  // 24 accumulators
  using T = Forward<K, V, R>;
  using F = decltype(&T::template tile<1>);
  static constexpr auto table = by_block_table<T, F>(std::make_integer_sequence<int, MB>{});
  const Masks<K, V> mk(g);
  for (int64_t n = 0; n < count; ++n, x += g.C * g.H * g.W, y += M * g.Ho * g.Wo)
    for (int64_t oh0 = 0; oh0 < g.Ho; oh0 += R)
      for (int64_t m0 = 0; m0 < M; m0 += MB)
        table[std::min<int64_t>(MB, M - m0) - 1](g, M, x, wt, b, y, relu_out, mk, m0, oh0);
}

template <int K, int V>
void weight_grad_kv(const ConvGeom& g, int64_t M, int64_t count, const float* x, const float* dy,
                    float* dw) {
  constexpr int MB = K == 5 ? 4 : 6;  // 20 or 18 accumulators
  weight_grad_blocks<WeightGrad<K, V>, MB, K>(g, M, count, x, dy, dw, Masks<K, V>(g));
}

// R = 3 vectors of the plane by MB = 8 channels (24 accumulators), then the plane's last one
// or two vectors by 24 / R channels.
template <int K>
void flat_forward_k(const ConvGeom& g, int64_t M, int64_t count, const float* x,
                    const float* wt, const float* b, float* y, bool relu_out) {
  const FlatMasks<K> mk(g);
  auto sweep = [&](const auto& tiles, int64_t j0, int64_t mb) {
    for (int64_t m0 = 0; m0 < M; m0 += mb)
      tiles[std::min<int64_t>(mb, M - m0) - 1](g, M, x, wt, b, y, relu_out, mk, m0, j0);
  };
  using T3 = FlatForward<K, 3>;
  using T2 = FlatForward<K, 2>;
  using T1 = FlatForward<K, 1>;
  static constexpr auto t3 = by_block_table<T3, decltype(&T3::template tile<1>)>(
      std::make_integer_sequence<int, 8>{});
  static constexpr auto t2 = by_block_table<T2, decltype(&T2::template tile<1>)>(
      std::make_integer_sequence<int, 12>{});
  static constexpr auto t1 = by_block_table<T1, decltype(&T1::template tile<1>)>(
      std::make_integer_sequence<int, 24>{});
  for (int64_t n = 0; n < count; ++n, x += g.C * g.H * g.W, y += M * g.Ho * g.Wo) {
    int64_t j0 = 0;
    for (; j0 + 3 <= mk.J; j0 += 3) sweep(t3, j0, 8);
    if (mk.J - j0 == 2) sweep(t2, j0, 12);
    if (mk.J - j0 == 1) sweep(t1, j0, 24);
  }
}

template <int K>
void flat_weight_grad_k(const ConvGeom& g, int64_t M, int64_t count, const float* x,
                        const float* dy, float* dw) {
  constexpr int MB = K == 5 ? 4 : 8;  // 20 or 24 accumulators, K inputs and one dy vector
  weight_grad_blocks<FlatWeightGrad<K>, MB, K>(g, M, count, x, dy, dw, FlatMasks<K>(g));
}

}  // namespace

void forward(const ConvGeom& g, int64_t M, int64_t count, const float* x, const float* wt,
             const float* b, float* y, bool relu_out) {
  if (channels_fit(g, M)) return forward_channels(g, M, count, x, wt, b, y, relu_out);
  if (flat_fits(g))
    return (g.K == 3 ? flat_forward_k<3> : flat_forward_k<5>)(g, M, count, x, wt, b, y,
                                                              relu_out);
  const bool two = g.Wo > 16;
  if (g.K == 3)
    return (two ? forward_kv<3, 2> : forward_kv<3, 1>)(g, M, count, x, wt, b, y, relu_out);
  return (two ? forward_kv<5, 2> : forward_kv<5, 1>)(g, M, count, x, wt, b, y, relu_out);
}

void weight_grad(const ConvGeom& g, int64_t M, int64_t count, const float* x, const float* dy,
                 float* dw) {
  if (channels_fit(g, M)) return weight_grad_channels(g, M, count, x, dy, dw);
  if (flat_fits(g))
    return (g.K == 3 ? flat_weight_grad_k<3> : flat_weight_grad_k<5>)(g, M, count, x, dy, dw);
  const bool two = g.Wo > 16;
  if (g.K == 3)
    return (two ? weight_grad_kv<3, 2> : weight_grad_kv<3, 1>)(g, M, count, x, dy, dw);
  return (two ? weight_grad_kv<5, 2> : weight_grad_kv<5, 1>)(g, M, count, x, dy, dw);
}

}  // namespace hc::conv_direct
