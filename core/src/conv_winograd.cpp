// x (n,C,H,W), U (16,C,M), b (M,) -> y (n,M,Ho,Wo); x, dy (n,M,Ho,Wo) -> dU (16,M,C) +=
// F(2x2, 3x3), with (Lavin and Gray 2016)
//   G   = [1 0 0; 1/2 1/2 1/2; 1/2 -1/2 1/2; 0 0 1] (kernel g, 3 x 3:        U = G g G^T)
// and B^T, A^T as in conv_winograd_kernels.h, whose transforms this file calls through the
// CPU's instruction set's table.
//
// Layout: the tiles of the thread's samples are taken in blocks of whole tile rows (sample,
// tile row, tile column), as many as keep the block's V (16, C, T) and products (16, M, T) within
// half of the L2; each block's input is transformed, its 16 GEMMs run, and its products
// transformed back (forward), or its dy transformed and the GEMMs summed into dU (weight_grad).
#include "conv_winograd.h"

#include <algorithm>

#include "conv_winograd_kernels.h"
#include "cpu_features.h"
#include "heterocnn/gemm.h"

namespace hc::conv_winograd {

namespace {

// The transforms of the widest instruction set this CPU runs (available() says there is one),
// or those force_transforms chose.
constexpr IsaTables<Transforms> kTables{&transforms_avx512, &transforms_avx2};
const Transforms& transforms() { return *kTables.active(); }

}  // namespace

bool available() { return kTables.active() != nullptr; }

bool force_transforms(const char* name) { return kTables.force(name); }

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
  const Transforms& isa = transforms();
  const int64_t vs = t.plane(g.C), ps = t.plane(M), total = count * t.TH;
  float* V = scratch;                  // (16, C, block tiles)
  float* P = V + 16 * vs;              // (16, M, block tiles): the products U_xi V_xi
  float* rows = P + 16 * ps;
  for (int64_t r0 = 0; r0 < total; r0 += t.rows) {
    const int64_t block = std::min(t.rows, total - r0), T = block * t.TW;
    isa.input(g, t, r0, block, x, V, rows);
    forward_gemms(g, t, M, T, U, V, P);
    isa.output(g, t, M, r0, block, P, b, relu, y, rows);
  }
}

void weight_grad(const ConvGeom& g, int64_t M, int64_t count, const float* x, const float* dy,
                 float* dU, float* scratch) {
  const Tiling t = tiling(g, M, false);
  const Transforms& isa = transforms();
  const int64_t vs = t.plane(g.C), ps = t.plane(M), total = count * t.TH;
  float* V = scratch;                  // (16, C, block tiles)
  float* D = V + 16 * vs;              // (16, M, block tiles): A dy A^T
  float* rows = D + 16 * ps;
  for (int64_t r0 = 0; r0 < total; r0 += t.rows) {
    const int64_t block = std::min(t.rows, total - r0), T = block * t.TW;
    isa.input(g, t, r0, block, x, V, rows);
    isa.grad(g, t, M, r0, block, dy, D, rows);
    weight_grad_gemms(g, t, M, T, D, V, dU);
  }
}

}  // namespace hc::conv_winograd
