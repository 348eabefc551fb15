// x (n,C,H,W), U (16,C,M), b (M,) -> y (n,M,Ho,Wo); x, dy (n,M,Ho,Wo) -> dU (16,M,C) +=
// F(2x2, 3x3), with (Lavin and Gray 2016)
//   B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1]   (input patch d, 4 x 4:  V = B^T d B)
//   G   = [1 0 0; 1/2 1/2 1/2; 1/2 -1/2 1/2; 0 0 1] (kernel g, 3 x 3:        U = G g G^T)
//   A^T = [1 1 1 0; 0 1 -1 -1]                      (product m, 4 x 4:   y_tile = A^T m A)
// Position xi = 4 i + j of a 4 x 4 matrix: i its row (along the image's height), j its column.
//
// Layout: the tiles of the thread's samples are taken in blocks of whole tile rows (sample,
// tile row, tile column), as many as keep the block's V (16, C, T) and products (16, M, T) within
// half of the L2. Each transform runs along one sample's part of the block at a time, where its
// tiles are contiguous in V's rows: the horizontal transform of an input row is taken for every
// tile of the row at once (one vector for up to 16 tiles), and the vertical one, vectorised
// along all the segment's tiles, combines the results of rows 2k and 2k+1 with those of 2k+2
// and 2k+3, kept apart by the row's parity so that tile row k of both lies at k * TW.
#include "conv_winograd.h"

#include <immintrin.h>

#include <algorithm>

#include "cpu_features.h"
#include "heterocnn/gemm.h"

namespace hc::conv_winograd {

namespace {

// The transforms below are compiled for AVX-512 (the loops along the tiles are vectorised
// 16 floats wide); this file's other functions, and everything they inline, for any x86-64, as
// conv2d.cpp calls them (the sizes) before checking the CPU.
#define HC_AVX512 __attribute__((target("avx512f,avx2,fma")))

// Floats of the rows the transforms go through: 2 parities x 4 transformed columns x (rows + 1)
// tile rows, and one padded input row.
int64_t row_scratch(const Tiling& t) { return 8 * (t.rows + 1) * t.TW + 2 * t.TW + 16; }

// The part of a block that lies in one sample: tile rows [ty0, ty0 + rows) of sample n, at
// column t0 of the block's matrices.
struct Segment {
  int64_t n, ty0, rows, t0;
};

// Calls f(segment) for each sample's part of the block of tile rows [r0, r0 + rows) (counted
// over the samples, TH a sample).
template <class F>
void for_segments(const Tiling& t, int64_t r0, int64_t rows, F&& f) {
  for (int64_t r = r0, end = r0 + rows; r < end;) {
    const int64_t n = r / t.TH, ty0 = r % t.TH, k = std::min(t.TH - ty0, end - r);
    f(Segment{n, ty0, k, (r - r0) * t.TW});
    r += k;
  }
}

// line[q] = row[q - pad] for q in [0, width), 0 outside the row (and everywhere for no row):
// short rows, so plain loops rather than calls.
HC_AVX512 inline void load_row(const float* row, int64_t n, int64_t pad, int64_t width,
                               float* line) {
  if (!row) pad = width, n = 0;
  for (int64_t q = 0; q < pad; ++q) line[q] = 0.f;
#pragma omp simd
  for (int64_t q = 0; q < n; ++q) line[pad + q] = row[q];
  for (int64_t q = pad + n; q < width; ++q) line[q] = 0.f;
}

// Rows of up to 16 tiles (outputs up to 32 wide) are one vector each: a loop along them would
// run in the compiler's scalar remainder. These helpers take such a row in registers.
constexpr int64_t kVectorTiles = 16;

// Lanes [lo, hi) of a 16-lane mask, clamped to the vector.
HC_AVX512 inline __mmask16 lanes(int64_t lo, int64_t hi) {
  lo = std::clamp<int64_t>(lo, 0, 16), hi = std::clamp<int64_t>(hi, 0, 16);
  return static_cast<__mmask16>(((1u << hi) - 1) & ~((1u << lo) - 1));
}

// Floats q0 .. q0 + 15 of the padded row: row[q - pad] for pad <= q < pad + n, else 0 (masked
// loads: nothing outside the row is read).
HC_AVX512 inline __m512 padded(const float* row, int64_t n, int64_t pad, int64_t q0) {
  return _mm512_maskz_loadu_ps(lanes(pad - q0, pad + n - q0), row - pad + q0);
}

// The even and odd floats of the 32 in (lo, hi).
HC_AVX512 inline __m512 evens(__m512 lo, __m512 hi) {
  const __m512i idx = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
  return _mm512_permutex2var_ps(lo, idx, hi);
}
HC_AVX512 inline __m512 odds(__m512 lo, __m512 hi) {
  const __m512i idx = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
  return _mm512_permutex2var_ps(lo, idx, hi);
}

// The horizontal input transform of one row (n floats of x, padded by pad; none: zeros) for
// TW tiles: with e, o, e2, o2 the padded row's floats 2x .. 2x + 3,
//   a0 = e - e2, a1 = o + e2, a2 = e2 - o, a3 = o - o2.
HC_AVX512 void input_row(const float* row, int64_t n, int64_t pad, int64_t TW, float* line,
                         float* a0, float* a1, float* a2, float* a3) {
  if (TW <= kVectorTiles) {
    __m512 l0 = _mm512_setzero_ps(), l1 = l0, l2 = l0;
    if (row)
      l0 = padded(row, n, pad, 0), l1 = padded(row, n, pad, 16), l2 = padded(row, n, pad, 32);
    const __m512 s0 = _mm512_castsi512_ps(_mm512_alignr_epi32(_mm512_castps_si512(l1),
                                                              _mm512_castps_si512(l0), 2));
    const __m512 s1 = _mm512_castsi512_ps(_mm512_alignr_epi32(_mm512_castps_si512(l2),
                                                              _mm512_castps_si512(l1), 2));
    const __m512 e = evens(l0, l1), o = odds(l0, l1), e2 = evens(s0, s1), o2 = odds(s0, s1);
    const __mmask16 m = lanes(0, TW);
    _mm512_mask_storeu_ps(a0, m, _mm512_sub_ps(e, e2));
    _mm512_mask_storeu_ps(a1, m, _mm512_add_ps(o, e2));
    _mm512_mask_storeu_ps(a2, m, _mm512_sub_ps(e2, o));
    _mm512_mask_storeu_ps(a3, m, _mm512_sub_ps(o, o2));
    return;
  }
  load_row(row, n, pad, 2 * TW + 2, line);
#pragma omp simd
  for (int64_t x = 0; x < TW; ++x) {
    const float e = line[2 * x], o = line[2 * x + 1], e2 = line[2 * x + 2], o2 = line[2 * x + 3];
    a0[x] = e - e2;
    a1[x] = o + e2;
    a2[x] = e2 - o;
    a3[x] = o - o2;
  }
}

// The horizontal gradient transform of one dy row (n floats; none: zeros) for TW tiles: with
// e, o its floats 2x and 2x + 1 (0 past n),  h0 = e, h1 = e + o, h2 = e - o, h3 = -o.
HC_AVX512 void grad_row(const float* row, int64_t n, int64_t TW, float* line, float* h0,
                        float* h1, float* h2, float* h3) {
  if (TW <= kVectorTiles) {
    __m512 l0 = _mm512_setzero_ps(), l1 = l0;
    if (row) l0 = padded(row, n, 0, 0), l1 = padded(row, n, 0, 16);
    const __m512 e = evens(l0, l1), o = odds(l0, l1);
    const __mmask16 m = lanes(0, TW);
    _mm512_mask_storeu_ps(h0, m, e);
    _mm512_mask_storeu_ps(h1, m, _mm512_add_ps(e, o));
    _mm512_mask_storeu_ps(h2, m, _mm512_sub_ps(e, o));
    _mm512_mask_storeu_ps(h3, m, _mm512_sub_ps(_mm512_setzero_ps(), o));
    return;
  }
  load_row(row, n, 0, 2 * TW, line);
#pragma omp simd
  for (int64_t x = 0; x < TW; ++x) {
    const float e = line[2 * x], o = line[2 * x + 1];
    h0[x] = e;
    h1[x] = e + o;
    h2[x] = e - o;
    h3[x] = -o;
  }
}

// out[2x] = l[x], out[2x + 1] = r[x] for the n outputs of a row (x < (n + 1) / 2).
HC_AVX512 void interleave_row(const float* l, const float* r, int64_t n, float* out) {
  const int64_t TW = (n + 1) / 2;
  if (TW <= kVectorTiles) {
    const __mmask16 m = lanes(0, TW);
    const __m512 lv = _mm512_maskz_loadu_ps(m, l), rv = _mm512_maskz_loadu_ps(m, r);
    const __m512i lo = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
    const __m512i hi =
        _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
    _mm512_mask_storeu_ps(out, lanes(0, n), _mm512_permutex2var_ps(lv, lo, rv));
    _mm512_mask_storeu_ps(out + 16, lanes(0, n - 16), _mm512_permutex2var_ps(lv, hi, rv));
    return;
  }
  const int64_t pairs = n / 2;
#pragma omp simd
  for (int64_t x = 0; x < pairs; ++x) {
    out[2 * x] = l[x];
    out[2 * x + 1] = r[x];
  }
  if (n % 2) out[n - 1] = l[pairs];
}

// V[(4i + j) * ldv + u] for the segment's tiles u of one input plane (H, W): B^T d B.
HC_AVX512 void input_transform(const ConvGeom& g, const Tiling& t, const Segment& s,
                               const float* plane, float* V, int64_t ldv, float* rows) {
  const int64_t TW = t.TW, n = s.rows * TW, span = (s.rows + 1) * TW;
  float* a = rows;                      // a[(par * 4 + j) * span + k * TW + tx]
  float* line = rows + 8 * span;        // one padded row: line[q] = x[r][q - pad], 0 outside
  for (int par = 0; par < 2; ++par)
    for (int64_t k = 0; k <= s.rows; ++k) {
      const int64_t r = 2 * (s.ty0 + k) + par - g.pad;
      float* a0 = a + (par * 4) * span + k * TW;
      input_row(r >= 0 && r < g.H ? plane + r * g.W : nullptr, g.W, g.pad, TW, line, a0,
                a0 + span, a0 + 2 * span, a0 + 3 * span);
    }
  for (int j = 0; j < 4; ++j) {
    const float* ev = a + j * span;        // rows 2k (then 2k + 2 at + TW)
    const float* od = a + (4 + j) * span;  // rows 2k + 1 (then 2k + 3 at + TW)
    float* v0 = V + j * ldv;
    float* v1 = V + (4 + j) * ldv;
    float* v2 = V + (8 + j) * ldv;
    float* v3 = V + (12 + j) * ldv;
#pragma omp simd
    for (int64_t u = 0; u < n; ++u) {
      const float d0 = ev[u], d1 = od[u], d2 = ev[u + TW], d3 = od[u + TW];
      v0[u] = d0 - d2;
      v1[u] = d1 + d2;
      v2[u] = d2 - d1;
      v3[u] = d1 - d3;
    }
  }
}

// One output plane (Ho, Wo) of the segment's tiles from m[(4i + j) * ldm + u]: A^T m A, plus
// bias, then the ReLU when asked.
HC_AVX512 void output_transform(const ConvGeom& g, const Tiling& t, const Segment& s,
                                const float* m, int64_t ldm, float bias, bool relu, float* plane,
                                float* rows) {
  const int64_t TW = t.TW, n = s.rows * TW;
  float* y00 = rows;
  float* y01 = y00 + n;
  float* y10 = y01 + n;
  float* y11 = y10 + n;
  // m_ij at m + (4i + j) * ldm: first down the columns (A^T m: output rows 0 and 1), then
  // along the rows (. A).
  const float *m00 = m, *m01 = m00 + ldm, *m02 = m01 + ldm, *m03 = m02 + ldm;
  const float *m10 = m03 + ldm, *m11 = m10 + ldm, *m12 = m11 + ldm, *m13 = m12 + ldm;
  const float *m20 = m13 + ldm, *m21 = m20 + ldm, *m22 = m21 + ldm, *m23 = m22 + ldm;
  const float *m30 = m23 + ldm, *m31 = m30 + ldm, *m32 = m31 + ldm, *m33 = m32 + ldm;
#pragma omp simd
  for (int64_t u = 0; u < n; ++u) {
    const float t0 = m00[u] + m10[u] + m20[u], b0 = m10[u] - m20[u] - m30[u];
    const float t1 = m01[u] + m11[u] + m21[u], b1 = m11[u] - m21[u] - m31[u];
    const float t2 = m02[u] + m12[u] + m22[u], b2 = m12[u] - m22[u] - m32[u];
    const float t3 = m03[u] + m13[u] + m23[u], b3 = m13[u] - m23[u] - m33[u];
    y00[u] = t0 + t1 + t2 + bias, y01[u] = t1 - t2 - t3 + bias;
    y10[u] = b0 + b1 + b2 + bias, y11[u] = b1 - b2 - b3 + bias;
  }
  if (relu) {
    // max(v, 0) with NaN kept, as hc::relu, in a form the compiler vectorises.
#pragma omp simd
    for (int64_t u = 0; u < 4 * n; ++u) y00[u] = y00[u] <= 0.f ? 0.f : y00[u];
  }
  for (int64_t k = 0; k < s.rows; ++k)
    for (int half = 0; half < 2; ++half) {
      const int64_t oy = 2 * (s.ty0 + k) + half;
      if (oy >= g.Ho) break;
      interleave_row((half ? y10 : y00) + k * TW, (half ? y11 : y01) + k * TW, g.Wo,
                     plane + oy * g.Wo);
    }
}

// dm[(4i + j) * ldm + u] = (A dy_tile A^T)[i][j] for the segment's tiles of one dy plane (Ho,
// Wo); outputs past Ho and Wo count as 0.
HC_AVX512 void grad_transform(const ConvGeom& g, const Tiling& t, const Segment& s,
                              const float* plane, float* dm, int64_t ldm, float* rows) {
  const int64_t TW = t.TW, n = s.rows * TW;
  float* h = rows;               // h[(par * 4 + j) * n + k * TW + tx]
  float* line = rows + 8 * n;    // one dy row, 0 past Wo
  for (int par = 0; par < 2; ++par)
    for (int64_t k = 0; k < s.rows; ++k) {
      const int64_t r = 2 * (s.ty0 + k) + par;
      float* h0 = h + (par * 4) * n + k * TW;
      grad_row(r < g.Ho ? plane + r * g.Wo : nullptr, g.Wo, TW, line, h0, h0 + n, h0 + 2 * n,
               h0 + 3 * n);
    }
  for (int j = 0; j < 4; ++j) {
    const float* top = h + j * n;
    const float* bottom = h + (4 + j) * n;
    float* d0 = dm + j * ldm;
    float* d1 = dm + (4 + j) * ldm;
    float* d2 = dm + (8 + j) * ldm;
    float* d3 = dm + (12 + j) * ldm;
#pragma omp simd
    for (int64_t u = 0; u < n; ++u) {
      d0[u] = top[u];
      d1[u] = top[u] + bottom[u];
      d2[u] = top[u] - bottom[u];
      d3[u] = -bottom[u];
    }
  }
}

// Asks for rows [lo, hi) of a plane of rows `width` floats wide in the L1, a cache line at a
// time, ahead of their use: the transforms read a segment's rows plane after plane (channels
// apart), which the hardware prefetchers do not see coming, so each plane's are asked for
// while the plane before it is transformed (CPU_PERF.md, entry 19).
inline void prefetch_rows(const float* plane, int64_t width, int64_t lo, int64_t hi) {
  const float* p = plane + lo * width;
  for (int64_t i = 0, n = (hi - lo) * width; i < n; i += 16)
    _mm_prefetch(reinterpret_cast<const char*>(p + i), _MM_HINT_T0);
}

// The transformed input of the block of tile rows [r0, r0 + rows) of x (count samples).
HC_AVX512 void transform_block(const ConvGeom& g, const Tiling& t, int64_t r0, int64_t rows,
                               const float* x, float* V, float* scratch_rows) {
  const int64_t ldv = t.tiles();
  for_segments(t, r0, rows, [&](const Segment& s) {
    // The input rows of the segment's tiles: 2 ty0 - pad .. 2 (ty0 + rows) + 1 - pad.
    const int64_t lo = std::max<int64_t>(0, 2 * s.ty0 - g.pad);
    const int64_t hi = std::min<int64_t>(g.H, 2 * (s.ty0 + s.rows) + 2 - g.pad);
    for (int64_t c = 0; c < g.C; ++c) {
      const float* plane = x + (s.n * g.C + c) * g.H * g.W;
      if (c + 1 < g.C) prefetch_rows(plane + g.H * g.W, g.W, lo, hi);
      input_transform(g, t, s, plane, V + c * ldv + s.t0, t.plane(g.C), scratch_rows);
    }
  });
}

}  // namespace

// G of F(2x2, 3x3).
constexpr float kG[4][3] = {{1, 0, 0}, {.5f, .5f, .5f}, {.5f, -.5f, .5f}, {0, 0, 1}};

// Below this many (m, c) pairs the weight transforms run on the calling thread.
constexpr int64_t kParallelPairs = 1024;

void transform_weights(int64_t M, int64_t C, const float* w, bool for_dx, float* U) {
  // U's rows (c forward, m for dx) over the threads; along a row its entries are contiguous.
  const int64_t rows = for_dx ? M : C, cols = for_dx ? C : M, MC = M * C;
#pragma omp parallel for schedule(static) if (MC >= kParallelPairs)
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t q = 0; q < cols; ++q) {
      const int64_t m = for_dx ? r : q, c = for_dx ? q : r;
      const float* k = w + (m * C + c) * 9;
      float gk[3][3];  // the kernel as this pass convolves with it
      for (int a = 0; a < 3; ++a)
        for (int b = 0; b < 3; ++b) gk[a][b] = for_dx ? k[(2 - a) * 3 + 2 - b] : k[a * 3 + b];
      float t[4][3];  // G g
      for (int i = 0; i < 4; ++i)
        for (int b = 0; b < 3; ++b)
          t[i][b] = kG[i][0] * gk[0][b] + kG[i][1] * gk[1][b] + kG[i][2] * gk[2][b];
      for (int i = 0; i < 4; ++i)
        for (int j = 0; j < 4; ++j)
          U[(4 * i + j) * MC + r * cols + q] =
              t[i][0] * kG[j][0] + t[i][1] * kG[j][1] + t[i][2] * kG[j][2];
    }
}

void weights_from_transformed(int64_t M, int64_t C, const float* dU, float* dw) {
  const int64_t MC = M * C;
#pragma omp parallel for schedule(static) if (MC >= kParallelPairs)
  for (int64_t mc = 0; mc < MC; ++mc) {
    float t[3][4];  // G^T dU
    for (int a = 0; a < 3; ++a)
      for (int j = 0; j < 4; ++j) {
        float s = 0.f;
        for (int i = 0; i < 4; ++i) s += kG[i][a] * dU[(4 * i + j) * MC + mc];
        t[a][j] = s;
      }
    for (int a = 0; a < 3; ++a)
      for (int b = 0; b < 3; ++b)
        dw[mc * 9 + a * 3 + b] = t[a][0] * kG[0][b] + t[a][1] * kG[1][b] + t[a][2] * kG[2][b] +
                                 t[a][3] * kG[3][b];
  }
}

Tiling tiling(const ConvGeom& g, int64_t M, bool tiles_are_columns) {
  const int64_t TH = (g.Ho + 1) / 2, TW = (g.Wo + 1) / 2;
  const int64_t per_row = 16 * (g.C + M) * TW * int64_t{sizeof(float)};
  const int64_t cap = std::clamp<int64_t>(cpu_l2_bytes() / 2 / per_row, 1, 64 * TH);
  int64_t rows = cap;
  if (tiles_are_columns) {
    const int64_t nr = sgemm_tile_columns();
    auto fill = [&](int64_t r) { return double(r * TW) / double((r * TW + nr - 1) / nr * nr); };
    for (int64_t r = cap - 1; 2 * r >= cap; --r)
      if (fill(r) > fill(rows)) rows = r;
  }
  return {TH, TW, rows};
}

void forward_gemms(const ConvGeom& g, const Tiling& t, int64_t M, int64_t T, const float* U,
                   const float* V, float* P) {
  const int64_t ldv = t.tiles(), vs = t.plane(g.C), ps = t.plane(M);
  for (int xi = 0; xi < 16; ++xi)
    sgemm(Trans::T, Trans::N, M, T, g.C, 1.f, U + xi * M * g.C, M, V + xi * vs, ldv, 0.f,
          P + xi * ps, ldv);
}

void weight_grad_gemms(const ConvGeom& g, const Tiling& t, int64_t M, int64_t T, const float* D,
                       const float* V, float* dU) {
  const int64_t ldv = t.tiles(), vs = t.plane(g.C), ps = t.plane(M);
  for (int xi = 0; xi < 16; ++xi)
    sgemm(Trans::N, Trans::T, M, g.C, T, 1.f, D + xi * ps, ldv, V + xi * vs, ldv, 1.f,
          dU + xi * M * g.C, g.C);
}

size_t scratch_size(const ConvGeom& g, int64_t M) {
  const Tiling t = tiling(g, M, false);  // the larger of the two blocks
  return static_cast<size_t>(16 * (t.plane(g.C) + t.plane(M)) + row_scratch(t));
}

void forward(const ConvGeom& g, int64_t M, int64_t count, const float* x, const float* U,
             const float* b, float* y, bool relu, float* scratch) {
  const Tiling t = tiling(g, M, true);
  const int64_t ldv = t.tiles(), vs = t.plane(g.C), ps = t.plane(M), total = count * t.TH;
  const int64_t out_n = M * g.Ho * g.Wo;
  float* V = scratch;                  // (16, C, block tiles)
  float* P = V + 16 * vs;              // (16, M, block tiles): the products U_xi V_xi
  float* rows = P + 16 * ps;
  for (int64_t r0 = 0; r0 < total; r0 += t.rows) {
    const int64_t block = std::min(t.rows, total - r0), T = block * t.TW;
    transform_block(g, t, r0, block, x, V, rows);
    forward_gemms(g, t, M, T, U, V, P);
    for_segments(t, r0, block, [&](const Segment& s) {
      for (int64_t m = 0; m < M; ++m)
        output_transform(g, t, s, P + m * ldv + s.t0, ps, b ? b[m] : 0.f, relu,
                         y + s.n * out_n + m * g.Ho * g.Wo, rows);
    });
  }
}

void weight_grad(const ConvGeom& g, int64_t M, int64_t count, const float* x, const float* dy,
                 float* dU, float* scratch) {
  const Tiling t = tiling(g, M, false);
  const int64_t ldv = t.tiles(), vs = t.plane(g.C), ps = t.plane(M), total = count * t.TH;
  const int64_t dy_n = M * g.Ho * g.Wo;
  float* V = scratch;                  // (16, C, block tiles)
  float* D = V + 16 * vs;              // (16, M, block tiles): A dy A^T
  float* rows = D + 16 * ps;
  for (int64_t r0 = 0; r0 < total; r0 += t.rows) {
    const int64_t block = std::min(t.rows, total - r0), T = block * t.TW;
    transform_block(g, t, r0, block, x, V, rows);
    for_segments(t, r0, block, [&](const Segment& s) {
      const int64_t hi = std::min<int64_t>(g.Ho, 2 * (s.ty0 + s.rows));  // dy rows 2 ty0 ..
      for (int64_t m = 0; m < M; ++m) {
        const float* plane = dy + s.n * dy_n + m * g.Ho * g.Wo;
        if (m + 1 < M) prefetch_rows(plane + g.Ho * g.Wo, g.Wo, 2 * s.ty0, hi);
        grad_transform(g, t, s, plane, D + m * ldv + s.t0, ps, rows);
      }
    });
    weight_grad_gemms(g, t, M, T, D, V, dU);
  }
}

}  // namespace hc::conv_winograd
