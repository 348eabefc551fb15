// x (N,C,H,W), w (M,C,K,K), dy (N,M,Ho,Wo): forward, weight gradient and input gradient of a
// convolution as implicit GEMMs over sgemm_tiled_kernel (see conv_gemm_cuda.h).
//   forward: y (M, N*HoWo) = w (M, CKK) * col (CKK, N*HoWo), col gathered from x
//   wgrad:   dw (M, CKK) = dy (M, N*HoWo) * col^T and db = the row sums of dy, split over N*HoWo
//            into slices whose partials (slices, M, CKK+1) are summed in slice order
//   dgrad:   dx = forward of dy with wf (C, M, K, K), wf[c][m] = w[m][c] rotated 180 degrees
#include "conv_gemm_cuda.h"

#include <algorithm>
#include <string>

#include "check.h"
#include "column_sum.cuh"
#include "gemm_tile.cuh"
#include "heterocnn/activation.h"
#include "heterocnn/error.h"
#include "launch.h"

namespace hc {

namespace {

// n / d for 0 <= n < 2^31 by a multiply and a shift (d >= 1 fixed on the host).
struct FastDiv {
  uint32_t mul, shift;
  explicit FastDiv(uint32_t d = 1) : shift(0) {
    while ((1ull << shift) < d) ++shift;
    mul = static_cast<uint32_t>(((1ull << 32) * ((1ull << shift) - d)) / d + 1);
  }
  __device__ uint32_t div(uint32_t n) const { return (__umulhi(n, mul) + n) >> shift; }
};

// The geometry in the int form the kernels index with.
struct ConvShape {
  int H, W, K, stride, pad, Ho, Wo, HW, KK, CKK;
  int64_t CHW;
  FastDiv dKK, dK, dHW, dWo;
};

ConvShape make_shape(const ConvGeom& g) {
  ConvShape s;
  s.H = (int)g.H; s.W = (int)g.W; s.K = (int)g.K;
  s.stride = (int)g.stride; s.pad = (int)g.pad; s.Ho = (int)g.Ho; s.Wo = (int)g.Wo;
  s.HW = (int)(g.Ho * g.Wo); s.KK = (int)(g.K * g.K); s.CKK = (int)g.col_rows();
  s.CHW = g.C * g.H * g.W;
  s.dKK = FastDiv(s.KK); s.dK = FastDiv(s.K); s.dHW = FastDiv(s.HW); s.dWo = FastDiv(s.Wo);
  return s;
}

// The forward policy. B = col is read through a per-thread column cursor: each thread's 4 GEMM
// columns are decoded once into (pointer to the window's top-left input, ih0, iw0); a B load
// then decodes only its row r = (c, kh, kw) (warp-uniform) and per column adds, bounds-checks
// and loads.
struct ConvForwardAccess {
  ConvShape s;
  int M, N;  // N = images * HoWo
  const float* w;
  const float* x;
  float* y;
  const float* bias;
  const float* mask;  // null, or laid out as y: y = mask > 0 ? y : 0 (a ReLU's backward)
  int relu, vecW, vecY;

  __device__ int depth(int) const { return s.CKK; }

  template <bool TA>
  __device__ float4 load_a(int, int m, int k, int K) const {  // w (M, CKK), row-major
    if (vecW && m < M && k + 3 < K)
      return __ldg(reinterpret_cast<const float4*>(w + (int64_t)m * K + k));
    float v[4];
#pragma unroll
    for (int i = 0; i < 4; ++i) v[i] = (m < M && k + i < K) ? __ldg(w + (int64_t)m * K + k + i) : 0.f;
    return make_float4(v[0], v[1], v[2], v[3]);
  }

  __device__ float finish(float v, int m) const {
    if (bias) v += bias[m];
    if (relu) v = hc::relu(v);
    return v;
  }

  __device__ void store(int, int m, int n, float4 acc) const {
    int img = (int)s.dHW.div(n), p = n - img * s.HW;
    const int64_t at = ((int64_t)img * M + m) * s.HW + p;
    float* yp = y + at;
    if (vecY && n + 3 < N) {  // HoWo % 4 == 0: the 4 columns are in one image, 16-byte aligned
      float4 o = make_float4(finish(acc.x, m), finish(acc.y, m), finish(acc.z, m), finish(acc.w, m));
      if (mask) {
        const float4 q = __ldg(reinterpret_cast<const float4*>(mask + at));
        o.x = q.x > 0.f ? o.x : 0.f;
        o.y = q.y > 0.f ? o.y : 0.f;
        o.z = q.z > 0.f ? o.z : 0.f;
        o.w = q.w > 0.f ? o.w : 0.f;
      }
      *reinterpret_cast<float4*>(yp) = o;
      return;
    }
    const float v[4] = {acc.x, acc.y, acc.z, acc.w};
    const float* mp = mask ? mask + at : nullptr;
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      if (n + i >= N) break;
      const float o = finish(v[i], m);
      *yp = (!mp || __ldg(mp) > 0.f) ? o : 0.f;
      ++yp;
      if (mp) ++mp;
      if (++p == s.HW) {
        p = 0;
        yp += (int64_t)(M - 1) * s.HW;
        if (mp) mp += (int64_t)(M - 1) * s.HW;
      }
    }
  }

  struct ColCursor {
    const float* p[4];
    int ih[4], iw[4];
  };

  __device__ ColCursor col_cursor(int, int n) const {
    ColCursor cc;
    const int n0 = min(n, N - 1);
    int img = (int)s.dHW.div(n0), p = n0 - img * s.HW;
    int oh = (int)s.dWo.div(p), ow = p - oh * s.Wo;
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int ih = oh * s.stride - s.pad, iw = ow * s.stride - s.pad;
      const bool in = n + i < N;
      cc.ih[i] = in ? ih : -(1 << 29);  // a column past N never passes the bounds check
      cc.iw[i] = iw;
      cc.p[i] = x + (img * s.CHW + (int64_t)ih * s.W + iw);
      if (++ow == s.Wo) {
        ow = 0;
        if (++oh == s.Ho) { oh = 0; ++img; }
      }
    }
    return cc;
  }

  __device__ float4 load_b_cursor(const ColCursor& cc, int k, int K) const {
    if (k >= K) return make_float4(0.f, 0.f, 0.f, 0.f);
    const int c = (int)s.dKK.div(k), rem = k - c * s.KK;
    const int kh = (int)s.dK.div(rem), kw = rem - kh * s.K;
    const int off = (c * s.H + kh) * s.W + kw;
    float v[4];
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int ih = cc.ih[i] + kh, iw = cc.iw[i] + kw;
      v[i] = ((unsigned)ih < (unsigned)s.H && (unsigned)iw < (unsigned)s.W) ? __ldg(cc.p[i] + off)
                                                                            : 0.f;
    }
    return make_float4(v[0], v[1], v[2], v[3]);
  }
};

// The weight-gradient policy: dw (M, CKK) = dy (M, N*HoWo) * col^T per slice, with db as the
// row sums of dy (kRowSums). B = col^T is read through cursors: a thread's rows r (c, kh, kw)
// are decoded once; its 4 columns j = z*ks + k.. advance by a k-tile at a time without
// divisions. Partials go to part (slices, M, CKK + 1), db in the last column.
struct ConvWgradAccess {
  static constexpr bool kRowSums = true;
  ConvShape s;
  int M, N;   // N = CKK
  int ks, L;  // slice depth, total depth N*HoWo
  const float* x;
  const float* dy;
  float* part;  // (slices, M, N + 1)
  int vecDy;

  __device__ int depth(int z) const { return z == (int)gridDim.z - 1 ? L - z * ks : ks; }

  template <bool TA>
  __device__ float4 load_a(int z, int m, int k, int K) const {  // dy as (M, N*HoWo)
    float v[4] = {0.f, 0.f, 0.f, 0.f};
    if (m >= M || k >= K) return make_float4(0.f, 0.f, 0.f, 0.f);
    const int j = z * ks + k, count = min(4, K - k);
    const int img = (int)s.dHW.div(j);
    int p = j - img * s.HW;
    const float* d = dy + ((int64_t)img * M + m) * s.HW + p;
    if (vecDy && count == 4) return __ldg(reinterpret_cast<const float4*>(d));
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      if (i < count) {
        v[i] = __ldg(d);
        ++d;
        if (++p == s.HW) { p = 0; d += (int64_t)(M - 1) * s.HW; }
      }
    }
    return make_float4(v[0], v[1], v[2], v[3]);
  }

  __device__ void store(int z, int m, int n, float4 acc) const {
    float* o = part + ((int64_t)z * M + m) * (N + 1) + n;
    const float v[4] = {acc.x, acc.y, acc.z, acc.w};
#pragma unroll
    for (int i = 0; i < 4; ++i)
      if (n + i < N) o[i] = v[i];
  }

  __device__ void store_row_sum(int z, int m, float sum) const {
    part[((int64_t)z * M + m) * (N + 1) + N] = sum;
  }

  struct RowCursor {
    int off, dh, dw, in;  // in: 0 past the end of col's rows
  };
  struct KCursor {
    const float* xi;  // image img's first plane
    int oh, ow;
  };

  __device__ RowCursor row_cursor(int, int n) const {
    RowCursor r;
    r.in = n < s.CKK;
    const int nn = min(n, s.CKK - 1);
    const int c = (int)s.dKK.div(nn), rem = nn - c * s.KK;
    const int kh = (int)s.dK.div(rem), kw = rem - kh * s.K;
    r.off = c * s.H * s.W;
    r.dh = kh - s.pad;
    r.dw = kw - s.pad;
    return r;
  }

  __device__ KCursor k_cursor(int z, int k) const {
    const int j = min(z * ks + k, L - 1);
    const int img = (int)s.dHW.div(j), p = j - img * s.HW;
    KCursor c;
    c.oh = (int)s.dWo.div(p);
    c.ow = p - c.oh * s.Wo;
    c.xi = x + img * s.CHW;
    return c;
  }

  __device__ void k_advance(KCursor& c, int by) const {
    c.ow += by;
    while (c.ow >= s.Wo) {
      c.ow -= s.Wo;
      if (++c.oh == s.Ho) { c.oh = 0; c.xi += s.CHW; }
    }
  }

  __device__ float4 load_b_rows(const RowCursor& r, const KCursor& kc, int k, int K) const {
    if (k >= K || !r.in) return make_float4(0.f, 0.f, 0.f, 0.f);
    const int count = min(4, K - k);
    float v[4] = {0.f, 0.f, 0.f, 0.f};
    int oh = kc.oh, ow = kc.ow;
    const float* xc = kc.xi + r.off;
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      if (i < count) {
        const int ih = oh * s.stride + r.dh, iw = ow * s.stride + r.dw;
        if ((unsigned)ih < (unsigned)s.H && (unsigned)iw < (unsigned)s.W) v[i] = __ldg(xc + ih * s.W + iw);
        if (++ow == s.Wo) {
          ow = 0;
          if (++oh == s.Ho) { oh = 0; xc += s.CHW; }
        }
      }
    }
    return make_float4(v[0], v[1], v[2], v[3]);
  }
};

// part (S, M, CKK+1) summed over S (column_sum.cuh's fixed order) -> dw (M, CKK), db (M,)
__global__ void wgrad_reduce_kernel(int M, int CKK, int slices, const float* __restrict__ part,
                                    float* __restrict__ dw, float* __restrict__ db) {
  column_sums(slices, (int64_t)M * (CKK + 1), part, [&](int64_t idx, float s) {
    const int64_t m = idx / (CKK + 1), r = idx - m * (CKK + 1);
    if (r < CKK) dw[m * CKK + r] = s;
    else if (db) db[m] = s;  // no bias: its row sums are dropped
  });
}

// wf (C, M, K, K): wf[c][m][kh][kw] = w[m][c][K-1-kh][K-1-kw]
__global__ void flip_kernel(int M, int C, int K, const float* __restrict__ w,
                            float* __restrict__ wf) {
  const int64_t KK = (int64_t)K * K, total = (int64_t)M * C * KK;
  for (int64_t idx = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; idx < total;
       idx += (int64_t)gridDim.x * blockDim.x) {
    const int64_t q = idx % KK, c = (idx / KK) % C, m = idx / (KK * C);
    wf[(c * M + m) * KK + (KK - 1 - q)] = w[idx];
  }
}

void check_extent(const char* fn, const ConvGeom& g, int64_t N, int64_t M) {
  const int64_t lim = int64_t(1) << 31;
  if (N * g.Ho * g.Wo >= lim || N * g.H * g.W >= lim || g.col_rows() + 1 >= lim || M >= lim)
    fail_value(std::string(fn) + ": batch of " + std::to_string(N) +
               " images is too large for 32-bit GEMM columns");
}

// dw of a layer with few filters and a short CKK (a first layer: M <= 32, CKK + 1 <= 16) is no
// GEMM worth tiling: wgrad_small_kernel instead.
constexpr int kSmallCols = 16;  // CKK + 1 at most
bool wgrad_small(const ConvGeom& g, int64_t M) {
  return M <= 32 && g.col_rows() + 1 <= kSmallCols;
}

// The dw GEMM's tile: for 32 < M <= 64, 64 x 96 (4x12 register tiles) when slices >= 256
// deep still give 528 blocks (CKK = 9C for 3x3 kernels: no partial column tile for C % 32 ==
// 0, where 64 x 64 tiles waste 10%); otherwise (few blocks: 64 x 96 was slower) launch_tiled's.
bool wgrad_wide64(const ConvGeom& g, int64_t N, int64_t M) {
  const int64_t L = N * g.Ho * g.Wo;
  return M > 32 && M <= 64 && (g.col_rows() + 95) / 96 * (L / 256) >= 528;
}

// Slices of the N*HoWo sum, each a multiple of 32 deep (whole k-tiles, 16-byte aligned dy
// rows): for the GEMM, enough blocks for ~4 per SM, each slice >= 256 deep; for the small
// kernel, 2 blocks per SM (its occupancy) on 132 SMs, each slice >= 128 deep (4 pixels a lane).
void wgrad_slices(const ConvGeom& g, int64_t N, int64_t M, int& slices, int64_t& ks) {
  const int64_t L = N * g.Ho * g.Wo;
  int64_t want;
  if (wgrad_small(g, M)) {
    want = std::max<int64_t>(1, std::min<int64_t>(264, L / 128));
  } else {
    int bm = 64, bn = 96;
    if (!wgrad_wide64(g, N, M)) tile_extent(pick_tile_shape(M, g.col_rows(), 1), bm, bn);
    const int64_t tiles = ((M + bm - 1) / bm) * ((g.col_rows() + bn - 1) / bn);
    want = std::max<int64_t>(1, std::min<int64_t>((528 + tiles - 1) / tiles, L / 256));
  }
  ks = std::max<int64_t>(32, ((L + want - 1) / want + 31) / 32 * 32);
  slices = (int)std::max<int64_t>(1, (L + ks - 1) / ks);
}

// [dw | db] partials of slice z = blockIdx.x for a short CKK (wgrad_small): warp w sums the
// rows of filters 4w..4w+3 over the slice, a lane per pixel (pixels lane, lane + 32, ... in
// ascending order), each pixel's im2col column (at most kSmallCols entries, the ones row for db
// last) gathered once for the 4 filters; then the 32 lanes' sums are added by a fixed butterfly.
// COLS: CKK + 1 rounded up to 10 (a 3x3 kernel on one channel) or kSmallCols.
template <int COLS>
__global__ void __launch_bounds__(256, 2)
    wgrad_small_kernel(const ConvShape s, int M, int L, int ks, const float* __restrict__ x,
                       const float* __restrict__ dy, float* __restrict__ part) {
  __shared__ int4 rows[COLS];  // (offset of plane c, kh - pad, kw - pad, kind)
  const int z = blockIdx.x, warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int cols = s.CKK + 1;
  if (threadIdx.x < COLS) {
    const int r = threadIdx.x, rr = min(r, s.CKK - 1);
    const int c = rr / s.KK, kh = (rr % s.KK) / s.K, kw = rr % s.K;
    rows[r] = make_int4(c * s.H * s.W, kh - s.pad, kw - s.pad, r < s.CKK ? 0 : r == s.CKK ? 1 : 2);
  }
  __syncthreads();
  const int m0 = warp * 4;
  if (m0 >= M) return;
  float acc[4][COLS];
#pragma unroll
  for (int i = 0; i < 4; ++i)
#pragma unroll
    for (int r = 0; r < COLS; ++r) acc[i][r] = 0.f;
  const int j1 = min(L, (z + 1) * ks);
#pragma unroll(COLS <= 10 ? 2 : 1)
  for (int j = z * ks + lane; j < j1; j += 32) {
    const int img = (int)s.dHW.div(j), p = j - img * s.HW;
    const int oh = (int)s.dWo.div(p), ow = p - oh * s.Wo;
    const float* xi = x + (int64_t)img * s.CHW;
    float cv[COLS];
#pragma unroll
    for (int r = 0; r < COLS; ++r) {
      const int4 t = rows[r];
      const int ih = oh * s.stride + t.y, iw = ow * s.stride + t.z;
      const bool in = t.w == 0 && (unsigned)ih < (unsigned)s.H && (unsigned)iw < (unsigned)s.W;
      cv[r] = in ? __ldg(xi + t.x + ih * s.W + iw) : (t.w == 1 ? 1.f : 0.f);
    }
    const float* d = dy + ((int64_t)img * M + m0) * s.HW + p;
    float dv[4];
#pragma unroll
    for (int i = 0; i < 4; ++i) dv[i] = m0 + i < M ? __ldg(d + i * s.HW) : 0.f;
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
      for (int r = 0; r < COLS; ++r) acc[i][r] = fmaf(dv[i], cv[r], acc[i][r]);
  }
#pragma unroll
  for (int i = 0; i < 4; ++i)
#pragma unroll
    for (int r = 0; r < COLS; ++r)
#pragma unroll
      for (int off = 16; off > 0; off /= 2) acc[i][r] += __shfl_xor_sync(0xffffffffu, acc[i][r], off);
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    if (m0 + i >= M) break;
    float* o = part + ((int64_t)z * M + m0 + i) * cols;
#pragma unroll
    for (int r = 0; r < COLS; ++r)
      if (lane == r && r < cols) o[r] = acc[i][r];
  }
}

void forward_masked(const ConvGeom& g, int64_t N, int64_t M, const float* x, const float* w,
                    const float* b, bool relu, const float* mask, float* y, cudaStream_t stream) {
  check_extent("conv2d_implicit_forward_cuda", g, N, M);
  ConvForwardAccess a;
  a.s = make_shape(g);
  a.M = (int)M;
  a.N = (int)(N * g.Ho * g.Wo);
  a.w = w; a.x = x; a.y = y; a.bias = b; a.mask = mask;
  a.relu = relu ? 1 : 0;
  a.vecW = aligned16(w) && a.s.CKK % 4 == 0;
  a.vecY = aligned16(y) && (!mask || aligned16(mask)) && a.s.HW % 4 == 0;
  if (a.M > 32 && a.M <= 64) {  // 32 < M <= 64: 64-row tiles of 8x8 register tiles, or, with
    // too few 128-column tiles to fill the device twice over (a small batch of small images),
    // 64 x 32 tiles of 4x4: four times the blocks (batch 64 at 14x14: 392, about 3 per SM, where
    // 64 x 64 tiles gave 196, 1 or 2 per SM), the same gather per row.
    if (few_blocks(tile_count(a.M, a.N, 1, 64, 128)))
      launch_tile<64, 32, 16, 32, 16, 4, 4, 4, 1, false, false>(a, 1, stream);
    else
      launch_tile<64, 128, 16, 32, 64, 8, 8, 3, 1, false, false>(a, 1, stream);
  } else {
    launch_tiled<false, false>(a, 1, stream);
  }
}

}  // namespace

void conv2d_implicit_forward_cuda(const ConvGeom& g, int64_t N, int64_t M, const float* x,
                                  const float* w, const float* b, bool relu, float* y,
                                  cudaStream_t stream) {
  forward_masked(g, N, M, x, w, b, relu, nullptr, y, stream);
}

size_t conv2d_implicit_wgrad_workspace(const ConvGeom& g, int64_t N, int64_t M) {
  int slices;
  int64_t ks;
  wgrad_slices(g, N, M, slices, ks);
  return static_cast<size_t>(slices) * M * (g.col_rows() + 1);
}

void conv2d_implicit_wgrad_cuda(const ConvGeom& g, int64_t N, int64_t M, const float* x,
                                const float* dy, float* dw, float* db, float* ws,
                                cudaStream_t stream) {
  check_extent("conv2d_implicit_wgrad_cuda", g, N, M);
  int slices;
  int64_t ks;
  wgrad_slices(g, N, M, slices, ks);
  if (slices > 65535) fail_value("conv2d_implicit_wgrad_cuda: too many slices");
  ConvWgradAccess a;
  a.s = make_shape(g);
  a.M = (int)M;
  a.N = a.s.CKK;
  a.ks = (int)ks;
  a.L = (int)(N * g.Ho * g.Wo);
  a.x = x; a.dy = dy; a.part = ws;
  a.vecDy = aligned16(dy) && a.s.HW % 4 == 0;
  if (wgrad_small(g, M)) {
    if (a.N + 1 <= 10)
      wgrad_small_kernel<10><<<slices, 256, 0, stream>>>(a.s, a.M, a.L, a.ks, x, dy, ws);
    else
      wgrad_small_kernel<kSmallCols><<<slices, 256, 0, stream>>>(a.s, a.M, a.L, a.ks, x, dy, ws);
    HC_CUDA_CHECK_LAUNCH("wgrad_small_kernel");
  } else if (wgrad_wide64(g, N, M)) {
    launch_tile<64, 96, 16, 32, 48, 4, 12, 4, 1, false, true>(a, slices, stream);
  } else if (pick_tile_shape(M, a.N, 1) == TileShape::Short) {
    // launch_tiled's Short tile with a register cap for 4 blocks per SM: the row sums took it
    // from 128 to 139 registers (3 blocks per SM), and its ~528 blocks then ran in two waves.
    launch_tile<32, 128, 16, 32, 32, 8, 4, 4, 1, false, true>(a, slices, stream);
  } else {
    launch_tiled<false, true>(a, slices, stream);
  }
  const int64_t total = M * (g.col_rows() + 1);
  wgrad_reduce_kernel<<<column_sum_blocks(total), dim3(32, kColSumRows), 0, stream>>>(
      a.M, a.s.CKK, slices, ws, dw, db);
  HC_CUDA_CHECK_LAUNCH("wgrad_reduce_kernel");
}

bool conv2d_implicit_dgrad_fits(const ConvGeom& g) { return g.stride == 1 && g.pad < g.K; }

size_t conv2d_implicit_dgrad_workspace(const ConvGeom& g, int64_t M) {
  return static_cast<size_t>(M * g.col_rows());
}

void conv2d_implicit_dgrad_cuda(const ConvGeom& g, int64_t N, int64_t M, const float* w,
                                const float* dy, const float* mask, float* dx, float* ws,
                                cudaStream_t stream) {
  if (!conv2d_implicit_dgrad_fits(g))
    fail_value("conv2d_implicit_dgrad_cuda: needs stride 1 and pad < K");
  const ConvGeom gt = make_conv_geom(M, g.Ho, g.Wo, g.K, 1, g.K - 1 - g.pad);  // over dy
  const int64_t total = M * g.col_rows();
  flip_kernel<<<op_blocks(total), kOpThreads, 0, stream>>>((int)M, (int)g.C, (int)g.K, w, ws);
  HC_CUDA_CHECK_LAUNCH("flip_kernel");
  forward_masked(gt, N, g.C, dy, ws, nullptr, false, mask, dx, stream);
}

}  // namespace hc
