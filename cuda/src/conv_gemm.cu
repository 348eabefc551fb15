// x (N,C,H,W), w (M,C,K,K), dy (N,M,Ho,Wo): forward, weight gradient and input gradient of a
// convolution as implicit GEMMs over sgemm_tiled_kernel (see conv_gemm_cuda.h).
//   forward: y (M, N*HoWo) = w (M, CKK) * col (CKK, N*HoWo), col gathered from x
//   wgrad:   [dw | db] (M, CKK+1) = dy (M, N*HoWo) * [col ; ones]^T, split over N*HoWo
//   dgrad:   dx = forward of dy with wf (C, M, K, K), wf[c][m] = w[m][c] rotated 180 degrees
#include "conv_gemm_cuda.h"

#include <algorithm>
#include <string>

#include "check.h"
#include "gemm_tile.cuh"
#include "heterocnn/error.h"
#include "launch.h"

namespace hc {

namespace {

// n / d for 0 <= n < 2^31 by a multiply and a shift (d >= 1 fixed on the host).
struct FastDiv {
  uint32_t d, mul, shift;
  explicit FastDiv(uint32_t d_ = 1) : d(d_), shift(0) {
    while ((1ull << shift) < d) ++shift;
    mul = static_cast<uint32_t>(((1ull << 32) * ((1ull << shift) - d)) / d + 1);
  }
  __device__ uint32_t div(uint32_t n) const { return (__umulhi(n, mul) + n) >> shift; }
};

// The geometry in the int form the kernels index with.
struct ConvShape {
  int C, H, W, K, stride, pad, Ho, Wo, HW, KK, CKK;
  int64_t CHW;
  FastDiv dKK, dK, dHW, dWo;
};

ConvShape make_shape(const ConvGeom& g) {
  ConvShape s;
  s.C = (int)g.C; s.H = (int)g.H; s.W = (int)g.W; s.K = (int)g.K;
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
    if (relu) v = v > 0.f ? v : (v != v ? v : 0.f);
    return v;
  }

  __device__ void store(int, int m, int n, float4 acc) const {
    int img = (int)s.dHW.div(n), p = n - img * s.HW;
    float* yp = y + ((int64_t)img * M + m) * s.HW + p;
    if (vecY && n + 3 < N) {  // HoWo % 4 == 0: the 4 columns are in one image, 16-byte aligned
      *reinterpret_cast<float4*>(yp) =
          make_float4(finish(acc.x, m), finish(acc.y, m), finish(acc.z, m), finish(acc.w, m));
      return;
    }
    const float v[4] = {acc.x, acc.y, acc.z, acc.w};
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      if (n + i >= N) break;
      *yp = finish(v[i], m);
      ++yp;
      if (++p == s.HW) { p = 0; yp += (int64_t)(M - 1) * s.HW; }
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

// The weight-gradient policy. B = [col ; ones] is read through cursors: a thread's rows r
// (c, kh, kw) are decoded once; its 4 columns j = z*ks + k.. advance by a k-tile at a time
// without divisions.
struct ConvWgradAccess {
  ConvShape s;
  int M, N;   // N = CKK + 1: the last column is db (a row of ones in place of col)
  int ks, L;  // slice depth, total depth N*HoWo
  const float* x;
  const float* dy;
  float* part;  // (slices, M, N)
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
    float* o = part + ((int64_t)z * M + m) * N + n;
    const float v[4] = {acc.x, acc.y, acc.z, acc.w};
#pragma unroll
    for (int i = 0; i < 4; ++i)
      if (n + i < N) o[i] = v[i];
  }

  struct RowCursor {
    int off, dh, dw, kind;  // kind: 0 an im2col row, 1 the ones row, 2 past the end
  };
  struct KCursor {
    const float* xi;  // image img's first plane
    int oh, ow;
  };

  __device__ RowCursor row_cursor(int, int n) const {
    RowCursor r;
    r.kind = n < s.CKK ? 0 : (n == s.CKK ? 1 : 2);
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
    if (k >= K || r.kind == 2) return make_float4(0.f, 0.f, 0.f, 0.f);
    const int count = min(4, K - k);
    if (r.kind == 1)
      return make_float4(1.f, count > 1 ? 1.f : 0.f, count > 2 ? 1.f : 0.f, count > 3 ? 1.f : 0.f);
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

// part (S, M, CKK+1) summed over S in order -> dw (M, CKK), db (M,)
__global__ void wgrad_reduce_kernel(int M, int CKK, int slices, const float* __restrict__ part,
                                    float* __restrict__ dw, float* __restrict__ db) {
  const int64_t total = (int64_t)M * (CKK + 1);
  for (int64_t idx = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; idx < total;
       idx += (int64_t)gridDim.x * blockDim.x) {
    float s = 0.f;
#pragma unroll 8
    for (int z = 0; z < slices; ++z) s += part[z * total + idx];
    const int64_t m = idx / (CKK + 1), r = idx % (CKK + 1);
    if (r == CKK) db[m] = s;
    else dw[m * CKK + r] = s;
  }
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

bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15u) == 0; }

void check_extent(const char* fn, const ConvGeom& g, int64_t N, int64_t M) {
  const int64_t lim = int64_t(1) << 31;
  if (N * g.Ho * g.Wo >= lim || N * g.H * g.W >= lim || g.col_rows() + 1 >= lim || M >= lim)
    fail_value(std::string(fn) + ": batch of " + std::to_string(N) +
               " images is too large for 32-bit GEMM columns");
}

// dw of a layer with few filters and a short CKK (a first layer: M <= 32, CKK + 1 <= 16) fits a
// 32 x 16 tile of one warp instead of the 32 x 128 Short tile, 92% of which would be zeros.
bool wgrad_narrow(const ConvGeom& g, int64_t M) { return M <= 32 && g.col_rows() + 1 <= 16; }

// Slices of the N*HoWo sum: enough GEMM blocks for ~4 per SM (~8 one-warp blocks for the narrow
// tile), each slice >= 256 deep and a multiple of 32 (whole k-tiles, 16-byte aligned dy rows).
void wgrad_slices(const ConvGeom& g, int64_t N, int64_t M, int& slices, int64_t& ks) {
  const int64_t L = N * g.Ho * g.Wo, cols = g.col_rows() + 1;
  int bm, bn;
  int64_t blocks = 528;
  if (wgrad_narrow(g, M)) {
    bm = 32; bn = 16; blocks = 1056;
  } else {
    tile_extent(pick_tile_shape(M, cols, 1), bm, bn);
  }
  const int64_t tiles = ((M + bm - 1) / bm) * ((cols + bn - 1) / bn);
  const int64_t want = std::max<int64_t>(1, std::min<int64_t>((blocks + tiles - 1) / tiles, L / 256));
  ks = std::max<int64_t>(32, ((L + want - 1) / want + 31) / 32 * 32);
  slices = (int)std::max<int64_t>(1, (L + ks - 1) / ks);
}

}  // namespace

void conv2d_implicit_forward_cuda(const ConvGeom& g, int64_t N, int64_t M, const float* x,
                                  const float* w, const float* b, bool relu, float* y,
                                  cudaStream_t stream) {
  check_extent("conv2d_implicit_forward_cuda", g, N, M);
  ConvForwardAccess a;
  a.s = make_shape(g);
  a.M = (int)M;
  a.N = (int)(N * g.Ho * g.Wo);
  a.w = w; a.x = x; a.y = y; a.bias = b;
  a.relu = relu ? 1 : 0;
  a.vecW = aligned16(w) && a.s.CKK % 4 == 0;
  a.vecY = aligned16(y) && a.s.HW % 4 == 0;
  if (a.M > 32 && a.M <= 64)  // 32 < M <= 64: a 64 x 128 tile of 8x8 register tiles
    launch_tile<64, 128, 16, 32, 64, 8, 8, 3, false, false>(a, 1, stream);
  else
    launch_tiled<false, false>(a, 1, stream);
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
  a.N = a.s.CKK + 1;
  a.ks = (int)ks;
  a.L = (int)(N * g.Ho * g.Wo);
  a.x = x; a.dy = dy; a.part = ws;
  a.vecDy = aligned16(dy) && a.s.HW % 4 == 0;
  if (wgrad_narrow(g, M)) launch_tile<32, 16, 32, 32, 16, 4, 4, 8, false, true>(a, slices, stream);
  else launch_tiled<false, true>(a, slices, stream);
  const int64_t total = M * (g.col_rows() + 1);
  wgrad_reduce_kernel<<<op_blocks(total), kOpThreads, 0, stream>>>(a.M, a.s.CKK, slices, ws, dw,
                                                                   db);
  HC_CUDA_CHECK_LAUNCH("wgrad_reduce_kernel");
}

bool conv2d_implicit_dgrad_fits(const ConvGeom& g) { return g.stride == 1 && g.pad < g.K; }

size_t conv2d_implicit_dgrad_workspace(const ConvGeom& g, int64_t M) {
  return static_cast<size_t>(M * g.col_rows());
}

void conv2d_implicit_dgrad_cuda(const ConvGeom& g, int64_t N, int64_t M, const float* w,
                                const float* dy, float* dx, float* ws, cudaStream_t stream) {
  if (!conv2d_implicit_dgrad_fits(g))
    fail_value("conv2d_implicit_dgrad_cuda: needs stride 1 and pad < K");
  const ConvGeom gt = make_conv_geom(M, g.Ho, g.Wo, g.K, 1, g.K - 1 - g.pad);  // over dy
  const int64_t total = M * g.col_rows();
  flip_kernel<<<op_blocks(total), kOpThreads, 0, stream>>>((int)M, (int)g.C, (int)g.K, w, ws);
  HC_CUDA_CHECK_LAUNCH("flip_kernel");
  conv2d_implicit_forward_cuda(gt, N, g.C, dy, ws, nullptr, false, dx, stream);
}

}  // namespace hc
