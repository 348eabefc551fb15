// Internal to the Winograd convolutions (conv_winograd.cpp): the transforms of a block of tiles,
// one copy per instruction set, as the GEMM kernels are (gemm_kernels.h).
//   input:  x (count,C,H,W), block tile rows [r0, r0 + rows) -> V (16, C, block tiles)
//   output: P (16, M, block tiles) (+ b (M,), ReLU)          -> y (count,M,Ho,Wo), those tiles
//   grad:   dy (count,M,Ho,Wo), the same tiles               -> D (16, M, block tiles)
// F(2x2, 3x3), with (Lavin and Gray 2016)
//   B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1]   (input patch d, 4 x 4:  V = B^T d B)
//   A^T = [1 1 1 0; 0 1 -1 -1]                      (product m, 4 x 4:   y_tile = A^T m A)
// Position xi = 4 i + j of a 4 x 4 matrix: i its row (along the image's height), j its column.
// Each transform runs along one sample's part of the block at a time, where its tiles are
// contiguous in V's rows: the horizontal transform of an input row is taken for every tile of
// the row at once, and the vertical one, vectorised along all the segment's tiles, combines the
// results of rows 2k and 2k+1 with those of 2k+2 and 2k+3, kept apart by the row's parity so
// that tile row k of both lies at k * TW.
//
// The loops below are written once and built into each instruction set's translation unit
// (conv_winograd_avx512.cpp, conv_winograd_avx2.cpp, compiled with its flags), which also says
// how a row is transformed (its Rows: the portable loops of PortableRows, or its own registers
// for short rows). Everything here has internal linkage, so that the linker never mixes the
// copies of two instruction sets.
#pragma once
#include <immintrin.h>

#include <algorithm>
#include <cstdint>

#include "conv_winograd.h"

namespace hc::conv_winograd {

// One instruction set's transforms (see the top of this file); r0 and rows count tile rows over
// the samples (TH a sample), `rows_scratch` is row_scratch(t) floats.
struct Transforms {
  void (*input)(const ConvGeom& g, const Tiling& t, int64_t r0, int64_t rows, const float* x,
                float* V, float* rows_scratch);
  void (*output)(const ConvGeom& g, const Tiling& t, int64_t M, int64_t r0, int64_t rows,
                 const float* P, const float* b, bool relu, float* y, float* rows_scratch);
  void (*grad)(const ConvGeom& g, const Tiling& t, int64_t M, int64_t r0, int64_t rows,
               const float* dy, float* D, float* rows_scratch);
};

const Transforms& transforms_avx512();  // conv_winograd_avx512.cpp: AVX-512F
const Transforms& transforms_avx2();    // conv_winograd_avx2.cpp: AVX2 + FMA

namespace {

// Floats of the rows the transforms go through: 2 parities x 4 transformed columns x (rows + 1)
// tile rows, and one padded input row.
inline int64_t row_scratch(const Tiling& t) { return 8 * (t.rows + 1) * t.TW + 2 * t.TW + 16; }

// The part of a block that lies in one sample: tile rows [ty0, ty0 + rows) of sample n, at
// column t0 of the block's matrices.
struct Segment {
  int64_t n, ty0, rows, t0;
};

// Calls f(segment) for each sample's part of the block of tile rows [r0, r0 + rows).
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
inline void load_row(const float* row, int64_t n, int64_t pad, int64_t width, float* line) {
  if (!row) pad = width, n = 0;
  for (int64_t q = 0; q < pad; ++q) line[q] = 0.f;
#pragma omp simd
  for (int64_t q = 0; q < n; ++q) line[pad + q] = row[q];
  for (int64_t q = pad + n; q < width; ++q) line[q] = 0.f;
}

// The row transforms as loops along the tiles, for any row (any instruction set's Rows falls
// back to them).
struct PortableRows {
  // The horizontal input transform of one row (n floats of x, padded by pad; none: zeros) for
  // TW tiles: with e, o, e2, o2 the padded row's floats 2x .. 2x + 3,
  //   a0 = e - e2, a1 = o + e2, a2 = e2 - o, a3 = o - o2.
  static void input_row(const float* row, int64_t n, int64_t pad, int64_t TW, float* line,
                        float* a0, float* a1, float* a2, float* a3) {
    load_row(row, n, pad, 2 * TW + 2, line);
#pragma omp simd
    for (int64_t x = 0; x < TW; ++x) {
      const float e = line[2 * x], o = line[2 * x + 1], e2 = line[2 * x + 2],
                  o2 = line[2 * x + 3];
      a0[x] = e - e2;
      a1[x] = o + e2;
      a2[x] = e2 - o;
      a3[x] = o - o2;
    }
  }

  // The horizontal gradient transform of one dy row (n floats; none: zeros) for TW tiles: with
  // e, o its floats 2x and 2x + 1 (0 past n),  h0 = e, h1 = e + o, h2 = e - o, h3 = -o.
  static void grad_row(const float* row, int64_t n, int64_t TW, float* line, float* h0,
                       float* h1, float* h2, float* h3) {
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
  static void interleave_row(const float* l, const float* r, int64_t n, float* out) {
    const int64_t pairs = n / 2;
#pragma omp simd
    for (int64_t x = 0; x < pairs; ++x) {
      out[2 * x] = l[x];
      out[2 * x + 1] = r[x];
    }
    if (n % 2) out[n - 1] = l[pairs];
  }
};

// Asks for rows [lo, hi) of a plane of rows `width` floats wide in the L1, a cache line at a
// time, ahead of their use: the transforms read a segment's rows plane after plane (channels
// apart), which the hardware prefetchers do not see coming, so each plane's are asked for
// while the plane before it is transformed (CPU_PERF.md, entry 19).
inline void prefetch_rows(const float* plane, int64_t width, int64_t lo, int64_t hi) {
  const float* p = plane + lo * width;
  for (int64_t i = 0, n = (hi - lo) * width; i < n; i += 16)
    _mm_prefetch(reinterpret_cast<const char*>(p + i), _MM_HINT_T0);
}

template <class Rows>
struct Blocks {
  // V[(4i + j) * ldv + u] for the segment's tiles u of one input plane (H, W): B^T d B.
  static void input_transform(const ConvGeom& g, const Tiling& t, const Segment& s,
                              const float* plane, float* V, int64_t ldv, float* rows) {
    const int64_t TW = t.TW, n = s.rows * TW, span = (s.rows + 1) * TW;
    float* a = rows;                // a[(par * 4 + j) * span + k * TW + tx]
    float* line = rows + 8 * span;  // one padded row: line[q] = x[r][q - pad], 0 outside
    for (int par = 0; par < 2; ++par)
      for (int64_t k = 0; k <= s.rows; ++k) {
        const int64_t r = 2 * (s.ty0 + k) + par - g.pad;
        float* a0 = a + (par * 4) * span + k * TW;
        Rows::input_row(r >= 0 && r < g.H ? plane + r * g.W : nullptr, g.W, g.pad, TW, line, a0,
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
  static void output_transform(const ConvGeom& g, const Tiling& t, const Segment& s,
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
        Rows::interleave_row((half ? y10 : y00) + k * TW, (half ? y11 : y01) + k * TW, g.Wo,
                             plane + oy * g.Wo);
      }
  }

  // dm[(4i + j) * ldm + u] = (A dy_tile A^T)[i][j] for the segment's tiles of one dy plane (Ho,
  // Wo); outputs past Ho and Wo count as 0.
  static void grad_transform(const ConvGeom& g, const Tiling& t, const Segment& s,
                             const float* plane, float* dm, int64_t ldm, float* rows) {
    const int64_t TW = t.TW, n = s.rows * TW;
    float* h = rows;             // h[(par * 4 + j) * n + k * TW + tx]
    float* line = rows + 8 * n;  // one dy row, 0 past Wo
    for (int par = 0; par < 2; ++par)
      for (int64_t k = 0; k < s.rows; ++k) {
        const int64_t r = 2 * (s.ty0 + k) + par;
        float* h0 = h + (par * 4) * n + k * TW;
        Rows::grad_row(r < g.Ho ? plane + r * g.Wo : nullptr, g.Wo, TW, line, h0, h0 + n,
                       h0 + 2 * n, h0 + 3 * n);
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

  // Transforms::input.
  static void input(const ConvGeom& g, const Tiling& t, int64_t r0, int64_t rows, const float* x,
                    float* V, float* scratch_rows) {
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

  // Transforms::output.
  static void output(const ConvGeom& g, const Tiling& t, int64_t M, int64_t r0, int64_t rows,
                     const float* P, const float* b, bool relu, float* y, float* scratch_rows) {
    const int64_t ldv = t.tiles(), ps = t.plane(M), out_n = M * g.Ho * g.Wo;
    for_segments(t, r0, rows, [&](const Segment& s) {
      for (int64_t m = 0; m < M; ++m)
        output_transform(g, t, s, P + m * ldv + s.t0, ps, b ? b[m] : 0.f, relu,
                         y + s.n * out_n + m * g.Ho * g.Wo, scratch_rows);
    });
  }

  // Transforms::grad.
  static void grad(const ConvGeom& g, const Tiling& t, int64_t M, int64_t r0, int64_t rows,
                   const float* dy, float* D, float* scratch_rows) {
    const int64_t ldv = t.tiles(), ps = t.plane(M), dy_n = M * g.Ho * g.Wo;
    for_segments(t, r0, rows, [&](const Segment& s) {
      const int64_t hi = std::min<int64_t>(g.Ho, 2 * (s.ty0 + s.rows));  // dy rows 2 ty0 ..
      for (int64_t m = 0; m < M; ++m) {
        const float* plane = dy + s.n * dy_n + m * g.Ho * g.Wo;
        if (m + 1 < M) prefetch_rows(plane + g.Ho * g.Wo, g.Wo, 2 * s.ty0, hi);
        grad_transform(g, t, s, plane, D + m * ldv + s.t0, ps, scratch_rows);
      }
    });
  }

  static constexpr Transforms table{&input, &output, &grad};
};

}  // namespace

}  // namespace hc::conv_winograd
