// Internal to the direct convolution kernels (conv_direct.h; conv_direct.cpp calls them through
// the CPU's instruction set's table): the row and flat kernels, one copy per instruction set.
//   forward:     x (n,C,H,W), wt (C*K*K, M), b (M,) -> y (n,M,Ho,Wo)
//   weight_grad: x (n,C,H,W), dy (n,M,Ho,Wo) -> dw (M,C*K*K) +=
// An output row of Wo <= 32 is V vectors of L lanes (L = 16 for AVX-512, 8 for AVX2); input row
// segments are loaded with masks that drop the lanes whose tap falls on the padding or past the
// row (masked loads do not touch masked-off memory), so the input is read in place. Planes whose
// rows are as wide as their output's run as one run of vectors (the flat kernels below); narrow
// outputs with a multiple of L output channels go to the channel-vector kernels
// (conv_channels_kernels.h).
//
// The loops are written once, over an instruction set's vector policy Isa, and built into each
// instruction set's translation unit (conv_direct_avx512.cpp, conv_direct_avx2.cpp, compiled
// with its flags), which defines the policy:
//   Vec, a vector of kLanes floats; Mask, an unsigned integer of kLanes bits (bit j: lane j);
//   kAll, every lane; kRegs, the vector registers;
//   zero(), set1(f), loadu(p), load(mask, p) (masked-off lanes read as 0 and their memory is
//   not touched), storeu(p, v), store(mask, p, v) (masked-off lanes' memory not touched),
//   fmadd(a, b, c) = a*b + c, add(a, b), relu(v) (max(v, 0), NaN kept), sum(v) (of the lanes).
// The tiles' sizes follow from the registers: kAccs accumulators (3/4 of them), the rest for
// the vectors loaded and broadcast. The kernels have internal linkage (an unnamed namespace),
// so that the linker never mixes the copies of two instruction sets; so do the helpers they use
// (cpu_features.h, scratch.h), and no standard container or algorithm that would be compiled
// with external linkage is used (a std::vector<float> here once made AVX2 code call the AVX-512
// copy of its fill: an illegal instruction on a CPU without AVX-512).
#pragma once
#include <algorithm>
#include <array>
#include <cstdint>
#include <utility>

#include "conv_direct.h"
#include "cpu_features.h"
#include "scratch.h"

namespace hc::conv_direct {

// One instruction set's kernels (contracts: conv_direct.h's forward and weight_grad), and its
// vectors' lanes: the row and flat kernels (this file), and the channel-vector ones
// (conv_channels_kernels.h), for outputs of up to kMaxChannelWidth with a multiple of `lanes`
// output channels.
struct Kernels {
  using ForwardFn = void (*)(const ConvGeom& g, int64_t M, int64_t count, const float* x,
                             const float* wt, const float* b, float* y, bool relu);
  using WeightGradFn = void (*)(const ConvGeom& g, int64_t M, int64_t count, const float* x,
                                const float* dy, float* dw);
  int lanes;
  ForwardFn forward, forward_channels;
  WeightGradFn weight_grad, weight_grad_channels;
};

const Kernels& kernels_avx512();  // conv_direct_avx512.cpp: AVX-512F
const Kernels& kernels_avx2();    // conv_direct_avx2.cpp: AVX2 + FMA

namespace {

template <class Isa>
constexpr int kAccs = Isa::kRegs * 3 / 4;

// Lanes [lo, hi) of a vector, clamped to [0, kLanes).
template <class Isa>
typename Isa::Mask lanes_between(int64_t lo, int64_t hi) {
  lo = std::max<int64_t>(lo, 0);
  hi = std::min<int64_t>(hi, Isa::kLanes);
  if (hi <= lo) return 0;
  return static_cast<typename Isa::Mask>(((uint32_t{1} << hi) - 1u) & ~((uint32_t{1} << lo) - 1u));
}

// For tap kw and output vector v: lanes j whose output column ow = L*v + j is < Wo and whose
// input column ow + kw - pad lies in [0, W). out[v]: lanes with ow < Wo.
template <class Isa, int K, int V>
struct Masks {
  using Mask = typename Isa::Mask;
  static constexpr int L = Isa::kLanes;
  Mask tap[K][V], out[V];
  explicit Masks(const ConvGeom& g) {
    #pragma GCC unroll 16
    for (int v = 0; v < V; ++v) {
      out[v] = lanes_between<Isa>(0, g.Wo - L * v);
      #pragma GCC unroll 16
      for (int kw = 0; kw < K; ++kw)
        tap[kw][v] = out[v] & lanes_between<Isa>(g.pad - kw - L * v, g.W + g.pad - kw - L * v);
    }
  }
};

// Forward of MB output channels [m0, m0 + MB) and R output rows [oh0, oh0 + R): MB*R*V
// accumulators; each tap loads R*V input vectors and broadcasts MB weights.
template <class Isa, int K, int V, int R>
struct Forward {
  using Vec = typename Isa::Vec;
  using Mask = typename Isa::Mask;
  static constexpr int L = Isa::kLanes;
  template <int MB>
  static void tile(const ConvGeom& g, int64_t M, const float* x, const float* wt, const float* b,
                   float* y, bool relu_out, const Masks<Isa, K, V>& mk, int64_t m0, int64_t oh0) {
    Vec acc[MB][R][V];
    #pragma GCC unroll 16
    for (int i = 0; i < MB; ++i) {
      const Vec init = b ? Isa::set1(b[m0 + i]) : Isa::zero();
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
        Mask on[R];
        #pragma GCC unroll 16
        for (int r = 0; r < R; ++r) {
          const int64_t ih = oh0 + r + kh - g.pad;
          const bool valid = ih >= 0 && ih < g.H && oh0 + r < g.Ho;
          on[r] = valid ? Isa::kAll : 0;
          row[r] = xc + (valid ? ih : 0) * g.W - g.pad;
        }
        bool any = false;
#pragma GCC unroll 16
        for (int r = 0; r < R; ++r) any |= on[r] != 0;
        if (!any) continue;  // every row of the tile is on the padding for this kernel row
        for (int kw = 0; kw < K; ++kw) {
          Vec xv[R][V];
          #pragma GCC unroll 16
          for (int r = 0; r < R; ++r)
            #pragma GCC unroll 16
            for (int v = 0; v < V; ++v)
              xv[r][v] = Isa::load(on[r] & mk.tap[kw][v], row[r] + L * v + kw);
          const float* w = wk + kw * M;
          #pragma GCC unroll 16
          for (int i = 0; i < MB; ++i) {
            const Vec wi = Isa::set1(w[i]);
            #pragma GCC unroll 16
            for (int r = 0; r < R; ++r)
              #pragma GCC unroll 16
              for (int v = 0; v < V; ++v) acc[i][r][v] = Isa::fmadd(wi, xv[r][v], acc[i][r][v]);
          }
        }
      }
    }
    #pragma GCC unroll 16
    for (int i = 0; i < MB; ++i)
      for (int r = 0; r < R && oh0 + r < g.Ho; ++r)
        #pragma GCC unroll 16
        for (int v = 0; v < V; ++v) {
          float* out = y + ((m0 + i) * g.Ho + oh0 + r) * g.Wo + L * v;
          Isa::store(mk.out[v], out, relu_out ? Isa::relu(acc[i][r][v]) : acc[i][r][v]);
        }
  }
};

// A dw tile's MB*K accumulators start from zero for each chunk of samples and are then added
// to the tile's sums over the chunks before it (weight_grad_blocks), acc[i][kw] to
// state[i * K + kw]: each lane sums a chunk's products, then the chunks' sums, so a float sum
// carried over many samples does not drift (two levels, as a pairwise sum's first two).
template <class Isa, int MB, int K>
inline void zero_tile(typename Isa::Vec (&acc)[MB][K]) {
  #pragma GCC unroll 16
  for (int i = 0; i < MB; ++i)
    #pragma GCC unroll 16
    for (int kw = 0; kw < K; ++kw) acc[i][kw] = Isa::zero();
}

template <class Isa, int MB, int K>
inline void add_tile(const typename Isa::Vec (&acc)[MB][K], typename Isa::Vec* state) {
  #pragma GCC unroll 16
  for (int i = 0; i < MB; ++i)
    #pragma GCC unroll 16
    for (int kw = 0; kw < K; ++kw) state[i * K + kw] = Isa::add(state[i * K + kw], acc[i][kw]);
}

// dL/dw of MB output channels [m0, m0 + MB) and the K taps of kernel row (c, kh), over
// `count` samples: MB*K accumulators held in registers over every output position of every
// sample, then added to `state`; each position vector loads MB dy vectors and K input vectors.
template <class Isa, int K, int V>
struct WeightGrad {
  using Vec = typename Isa::Vec;
  static constexpr int L = Isa::kLanes;
  template <int MB>
  static void tile(const ConvGeom& g, int64_t M, int64_t count, const float* x, const float* dy,
                   Vec* state, const Masks<Isa, K, V>& mk, int64_t m0, int64_t c, int kh) {
    Vec acc[MB][K];
    zero_tile<Isa, MB, K>(acc);
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
          Vec dv[MB];
          #pragma GCC unroll 16
          for (int i = 0; i < MB; ++i) dv[i] = Isa::load(mk.out[v], d + i * plane + L * v);
          for (int kw = 0; kw < K; ++kw) {
            const Vec xv = Isa::load(mk.tap[kw][v], row + L * v + kw);
            #pragma GCC unroll 16
            for (int i = 0; i < MB; ++i) acc[i][kw] = Isa::fmadd(dv[i], xv, acc[i][kw]);
          }
        }
      }
    }
    add_tile<Isa, MB, K>(acc, state);
  }
};

// The flat kernels, for convolutions whose input rows are as wide as their output rows (W == Wo:
// stride 1 and padding (K-1)/2). There position p = oh * Wo + ow of an output plane reads input
// p + (kh - pad) * W + kw - pad for tap (kh, kw) wherever that tap is inside the image, so a
// vector of L consecutive positions of the plane, crossing its rows, reads L consecutive
// inputs: the plane is J = ceil(Ho*Wo / L) vectors with every lane at work but the last one's
// tail (14 x 14 and 16 lanes: 13 vectors for 196 positions, 94% of their lanes, where one
// vector a row uses 88%; 28 x 28: 49 full vectors, where two a row use 88%).
constexpr int64_t kMaxFlatPositions = 1024;
template <class Isa>
constexpr int64_t kMaxFlatVectors = kMaxFlatPositions / Isa::kLanes;
inline bool flat_fits(const ConvGeom& g) {
  return g.W == g.Wo && g.Ho * g.Wo <= kMaxFlatPositions;
}

// For vector j of the plane and each kernel row kh / column kw: the lanes whose tap lies inside
// the image's rows (row) and inside its row (col); tap (kh, kw) reads lanes row & col. out: the
// lanes inside the plane. One spare vector of empty masks past the end, for a tile that
// overhangs it.
template <class Isa, int K>
struct FlatMasks {
  using Mask = typename Isa::Mask;
  static constexpr int L = Isa::kLanes;
  static constexpr int64_t kVectors = kMaxFlatVectors<Isa>;
  int64_t J;
  Mask row[kVectors + 1][K], col[kVectors + 1][K], out[kVectors + 1];
  explicit FlatMasks(const ConvGeom& g) : J((g.Ho * g.Wo + L - 1) / L) {
    const int64_t plane = g.Ho * g.Wo;
    // The lanes of tap column k over positions p0 .. p0 + L - 1 are bits (p0 mod W) .. + L - 1
    // of that column's valid row bits repeated: W <= 32, so 64 bits hold any L from any start.
    uint64_t repeated[K];
    for (int k = 0; k < K; ++k) {
      const int64_t lo = std::max<int64_t>(0, g.pad - k), hi = std::min(g.W, g.W + g.pad - k);
      const uint64_t one_row = hi > lo ? ((uint64_t{1} << hi) - 1) & ~((uint64_t{1} << lo) - 1) : 0;
      repeated[k] = 0;
      for (int64_t at = 0; at < 64; at += g.W) repeated[k] |= one_row << at;
    }
    for (int64_t j = 0, start = 0; j <= J; ++j, start = (start + L) % g.W) {
      const int64_t p0 = L * j;
      out[j] = j < J ? lanes_between<Isa>(0, plane - p0) : 0;
      for (int k = 0; k < K; ++k) {
        row[j][k] =
            out[j] & lanes_between<Isa>((g.pad - k) * g.W - p0, (g.H + g.pad - k) * g.W - p0);
        col[j][k] = out[j] & static_cast<Mask>(repeated[k] >> start);
      }
    }
  }
};

// Forward of MB output channels [m0, m0 + MB) and R vectors [j0, j0 + R) of the plane: MB*R
// accumulators; each tap loads R input vectors and broadcasts MB weights.
template <class Isa, int K, int R>
struct FlatForward {
  using Vec = typename Isa::Vec;
  static constexpr int L = Isa::kLanes;
  template <int MB>
  static void tile(const ConvGeom& g, int64_t M, const float* x, const float* wt, const float* b,
                   float* y, bool relu_out, const FlatMasks<Isa, K>& mk, int64_t m0, int64_t j0) {
    Vec acc[MB][R];
    #pragma GCC unroll 32
    for (int i = 0; i < MB; ++i) {
      const Vec init = b ? Isa::set1(b[m0 + i]) : Isa::zero();
      #pragma GCC unroll 16
      for (int r = 0; r < R; ++r) acc[i][r] = init;
    }
    const int64_t plane = g.H * g.W;
    const float* wk = wt + m0;
    for (int64_t c = 0; c < g.C; ++c) {
      const float* xc = x + c * plane + L * j0;
      for (int kh = 0; kh < K; ++kh)
        for (int kw = 0; kw < K; ++kw, wk += M) {
          const int64_t off = (kh - g.pad) * g.W + kw - g.pad;
          Vec xv[R];
          #pragma GCC unroll 16
          for (int r = 0; r < R; ++r)
            xv[r] = Isa::load(mk.row[j0 + r][kh] & mk.col[j0 + r][kw], xc + L * r + off);
          #pragma GCC unroll 32
          for (int i = 0; i < MB; ++i) {
            const Vec wi = Isa::set1(wk[i]);
            #pragma GCC unroll 16
            for (int r = 0; r < R; ++r) acc[i][r] = Isa::fmadd(wi, xv[r], acc[i][r]);
          }
        }
    }
    #pragma GCC unroll 32
    for (int i = 0; i < MB; ++i)
      #pragma GCC unroll 16
      for (int r = 0; r < R; ++r)
        Isa::store(mk.out[j0 + r], y + (m0 + i) * plane + L * (j0 + r),
                   relu_out ? Isa::relu(acc[i][r]) : acc[i][r]);
  }
};

// dL/dw of MB output channels [m0, m0 + MB) and the K taps of kernel row (c, kh), over `count`
// samples: MB*K accumulators, then added to `state`; each vector of the plane loads K input
// vectors (held) and MB dy vectors (one at a time).
template <class Isa, int K>
struct FlatWeightGrad {
  using Vec = typename Isa::Vec;
  static constexpr int L = Isa::kLanes;
  template <int MB>
  static void tile(const ConvGeom& g, int64_t M, int64_t count, const float* x, const float* dy,
                   Vec* state, const FlatMasks<Isa, K>& mk, int64_t m0, int64_t c, int kh) {
    Vec acc[MB][K];
    zero_tile<Isa, MB, K>(acc);
    const int64_t plane = g.H * g.W, in_n = g.C * plane, out_n = M * plane;
    const int64_t off = (kh - g.pad) * g.W - g.pad;
    for (int64_t n = 0; n < count; ++n) {
      const float* xn = x + n * in_n + c * plane + off;
      const float* dyn = dy + n * out_n + m0 * plane;
      for (int64_t j = 0; j < mk.J; ++j) {
        Vec xv[K];
        #pragma GCC unroll 16
        for (int kw = 0; kw < K; ++kw)
          xv[kw] = Isa::load(mk.row[j][kh] & mk.col[j][kw], xn + L * j + kw);
        #pragma GCC unroll 16
        for (int i = 0; i < MB; ++i) {
          const Vec dv = Isa::load(mk.out[j], dyn + i * plane + L * j);
          #pragma GCC unroll 16
          for (int kw = 0; kw < K; ++kw) acc[i][kw] = Isa::fmadd(dv, xv[kw], acc[i][kw]);
        }
      }
    }
    add_tile<Isa, MB, K>(acc, state);
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
template <class Isa, class T, int MB, int K, class Mk>
void weight_grad_blocks(const ConvGeom& g, int64_t M, int64_t count, const float* x,
                        const float* dy, float* dw, const Mk& mk) {
  using Vec = typename Isa::Vec;
  using F = decltype(&T::template tile<1>);
  static constexpr auto table = by_block_table<T, F>(std::make_integer_sequence<int, MB>{});
  const int64_t plane = g.Ho * g.Wo, in_n = g.C * g.H * g.W, out_n = M * plane;
  const int64_t chunk = std::max<int64_t>(
      1, cpu_l1d_bytes() / 2 / (MB * plane * static_cast<int64_t>(sizeof(float))));
  const int64_t tiles = g.C * K, ckk = g.C * K * K, per_tile = MB * K;
  Vec* state = reinterpret_cast<Vec*>(tile_states.get(tiles * per_tile * Isa::kLanes));
  for (int64_t m0 = 0; m0 < M; m0 += MB) {
    const int64_t mb = std::min<int64_t>(MB, M - m0);
    for (int64_t i = 0; i < tiles * per_tile; ++i) state[i] = Isa::zero();
    for (int64_t n0 = 0; n0 < count; n0 += chunk)
      for (int64_t c = 0; c < g.C; ++c)
        for (int kh = 0; kh < K; ++kh)
          table[mb - 1](g, M, std::min(chunk, count - n0), x + n0 * in_n, dy + n0 * out_n,
                        state + (c * K + kh) * per_tile, mk, m0, c, kh);
    for (int64_t t = 0; t < tiles; ++t)
      for (int64_t i = 0; i < mb; ++i)
        for (int kw = 0; kw < K; ++kw)
          dw[(m0 + i) * ckk + t * K + kw] += Isa::sum(state[t * per_tile + i * K + kw]);
  }
}

// Rows of V vectors: R = 2 rows a tile where their inputs leave room (V <= 2 with 32 registers,
// V = 1 with 16), and as many channels MB as fill kAccs accumulators and the registers left
// after the R*V inputs and one broadcast weight (24 accumulators of 32 registers: MB = 12 for
// V = 1, 6 for V = 2).
template <class Isa, int K, int V>
void forward_kv(const ConvGeom& g, int64_t M, int64_t count, const float* x, const float* wt,
                const float* b, float* y, bool relu_out) {
  constexpr int R = V <= Isa::kRegs / 16 ? 2 : 1;
  constexpr int RV = R * V, MB = std::max(1, std::min((Isa::kRegs - 1 - RV) / RV, kAccs<Isa> / RV));
  using T = Forward<Isa, K, V, R>;
  using F = decltype(&T::template tile<1>);
  static constexpr auto table = by_block_table<T, F>(std::make_integer_sequence<int, MB>{});
  const Masks<Isa, K, V> mk(g);
  for (int64_t n = 0; n < count; ++n, x += g.C * g.H * g.W, y += M * g.Ho * g.Wo)
    for (int64_t oh0 = 0; oh0 < g.Ho; oh0 += R)
      for (int64_t m0 = 0; m0 < M; m0 += MB)
        table[std::min<int64_t>(MB, M - m0) - 1](g, M, x, wt, b, y, relu_out, mk, m0, oh0);
}

// MB channels' K accumulators and MB dy vectors within kAccs (24: MB = 4 for K = 5, 6 for K = 3).
template <class Isa, int K, int V>
void weight_grad_kv(const ConvGeom& g, int64_t M, int64_t count, const float* x, const float* dy,
                    float* dw) {
  constexpr int MB = kAccs<Isa> / (K + 1);
  weight_grad_blocks<Isa, WeightGrad<Isa, K, V>, MB, K>(g, M, count, x, dy, dw,
                                                       Masks<Isa, K, V>(g));
}

// R vectors of the plane by kAccs / R channels (R = 3 by 8 with 32 registers, 2 by 6 with 16),
// then the plane's last vectors, fewer than R, by kAccs / (those vectors) channels.
template <class Isa, int K>
void flat_forward_k(const ConvGeom& g, int64_t M, int64_t count, const float* x,
                    const float* wt, const float* b, float* y, bool relu_out) {
  constexpr int R = Isa::kRegs >= 32 ? 3 : 2;
  const FlatMasks<Isa, K> mk(g);
  auto sweep = [&](auto rows, int64_t j0) {
    constexpr int r = decltype(rows)::value, MB = kAccs<Isa> / r;
    using T = FlatForward<Isa, K, r>;
    static constexpr auto tiles = by_block_table<T, decltype(&T::template tile<1>)>(
        std::make_integer_sequence<int, MB>{});
    for (int64_t m0 = 0; m0 < M; m0 += MB)
      tiles[std::min<int64_t>(MB, M - m0) - 1](g, M, x, wt, b, y, relu_out, mk, m0, j0);
  };
  for (int64_t n = 0; n < count; ++n, x += g.C * g.H * g.W, y += M * g.Ho * g.Wo) {
    int64_t j0 = 0;
    for (; j0 + R <= mk.J; j0 += R) sweep(std::integral_constant<int, R>{}, j0);
    if constexpr (R > 2)
      if (mk.J - j0 == 2) sweep(std::integral_constant<int, 2>{}, j0);
    if (mk.J - j0 == 1) sweep(std::integral_constant<int, 1>{}, j0);
  }
}

// MB channels' K accumulators within kAccs, with the K inputs and one dy vector within the
// registers (32: MB = 4 for K = 5, 8 for K = 3; 16: 2 and 4).
template <class Isa, int K>
void flat_weight_grad_k(const ConvGeom& g, int64_t M, int64_t count, const float* x,
                        const float* dy, float* dw) {
  constexpr int MB = std::min((Isa::kRegs - K - 1) / K, kAccs<Isa> / K);
  weight_grad_blocks<Isa, FlatWeightGrad<Isa, K>, MB, K>(g, M, count, x, dy, dw,
                                                        FlatMasks<Isa, K>(g));
}

// The rows of Wo outputs as V = ceil(Wo / L) vectors, V <= kMaxWidth / L.
template <class Isa, int K, int V = 1>
void forward_rows(const ConvGeom& g, int64_t M, int64_t count, const float* x, const float* wt,
                  const float* b, float* y, bool relu_out) {
  if constexpr (V < kMaxWidth / Isa::kLanes)
    if (g.Wo > V * Isa::kLanes)
      return forward_rows<Isa, K, V + 1>(g, M, count, x, wt, b, y, relu_out);
  forward_kv<Isa, K, V>(g, M, count, x, wt, b, y, relu_out);
}

template <class Isa, int K, int V = 1>
void weight_grad_rows(const ConvGeom& g, int64_t M, int64_t count, const float* x,
                      const float* dy, float* dw) {
  if constexpr (V < kMaxWidth / Isa::kLanes)
    if (g.Wo > V * Isa::kLanes) return weight_grad_rows<Isa, K, V + 1>(g, M, count, x, dy, dw);
  weight_grad_kv<Isa, K, V>(g, M, count, x, dy, dw);
}

// The row and flat kernels' forward and weight_grad (Kernels' forward_rows, weight_grad_rows).
template <class Isa>
void forward(const ConvGeom& g, int64_t M, int64_t count, const float* x, const float* wt,
             const float* b, float* y, bool relu_out) {
  if (flat_fits(g))
    return (g.K == 3 ? flat_forward_k<Isa, 3> : flat_forward_k<Isa, 5>)(g, M, count, x, wt, b, y,
                                                                        relu_out);
  (g.K == 3 ? forward_rows<Isa, 3> : forward_rows<Isa, 5>)(g, M, count, x, wt, b, y, relu_out);
}

template <class Isa>
void weight_grad(const ConvGeom& g, int64_t M, int64_t count, const float* x, const float* dy,
                 float* dw) {
  if (flat_fits(g))
    return (g.K == 3 ? flat_weight_grad_k<Isa, 3> : flat_weight_grad_k<Isa, 5>)(g, M, count, x,
                                                                                dy, dw);
  (g.K == 3 ? weight_grad_rows<Isa, 3> : weight_grad_rows<Isa, 5>)(g, M, count, x, dy, dw);
}

}  // namespace

}  // namespace hc::conv_direct
