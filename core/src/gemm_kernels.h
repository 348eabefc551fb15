// Internal to sgemm: the register-blocked micro-kernels, one per instruction set, and the
// table the driver (gemm.cpp) picks from at run time.
#pragma once
#include <algorithm>
#include <array>
#include <cstdint>
#include <utility>

namespace hc::gemm {

// One tile of C, rows 0..mr-1 (mr <= Kernel::mr) and columns 0..nr-1 (nr <= Kernel::nr):
//   C[i][j] = alpha * sum_{k<kc} a[k*as + i] * b[k*bs + j]  +  beta * C[i][j]
// a holds the tile's rows of op(A) k-major (a packed panel with as = mr, or A itself when it
// is stored transposed); b holds its columns of op(B) likewise (a packed panel with bs = nr,
// or B itself when not transposed). The kernel reads only rows < mr and columns < nr, so
// panels need no zero padding; beta == 0 means C is written without being read.
using TileKernel = void (*)(int64_t kc, const float* a, int64_t as, const float* b, int64_t bs,
                            float* c, int64_t ldc, float alpha, float beta, int mr, int nr);

// A matrix as stored, viewed by rows: row r, position k is p[r*ld + k], or p[k*ld + r] when
// transposed. op(A) is viewed by the rows of C, op(B) by its columns.
struct Operand {
  const float* p;
  int64_t ld;
  bool trans;
};

// Packs rows [r0, r0+rows) x [k0, k0+kc) of x into k-major panels of `width` rows: panel q
// holds x[r0 + q*width + i][k0 + k] at dst[q*width*kc + k*width + i] (the last panel may be
// narrower and is not padded).
using PackFn = void (*)(Operand x, int64_t r0, int64_t rows, int64_t k0, int64_t kc, float* dst);

struct Kernel {
  const char* name;
  int mr;          // rows of C per tile (MR)
  int nr;          // columns of C per tile (NR)
  int full_rate_rows;  // the fewest rows whose tile keeps the FMA units busy: a tile of fewer
                       // takes as long (its FMA chains wait on their latency)
  TileKernel tile;
  PackFn pack_a;   // into panels of mr rows of op(A)
  PackFn pack_b;   // into panels of nr columns of op(B)
};

// Makes a TileKernel out of a kernel written for a row count fixed at compile time, so that
// its accumulators stay in registers on edge tiles too: Rows<R>::run(kc, a, as, b, bs, c, ldc,
// alpha, beta, nr) for R = 1..MR, chosen by mr at run time.
template <template <int> class Rows, int... R>
constexpr auto rows_table(std::integer_sequence<int, R...>) {
  return std::array{&Rows<R + 1>::run...};
}
template <template <int> class Rows, int MR>
void tile_by_rows(int64_t kc, const float* a, int64_t as, const float* b, int64_t bs, float* c,
                  int64_t ldc, float alpha, float beta, int mr, int nr) {
  static constexpr auto table = rows_table<Rows>(std::make_integer_sequence<int, MR>{});
  table[mr - 1](kc, a, as, b, bs, c, ldc, alpha, beta, nr);
}

// The PackFn for panels of W rows, built into each kernel's translation unit with its
// instruction set (internal linkage, so that the linker never mixes instruction sets).
namespace {
template <int W>
void pack_panels(Operand x, int64_t r0, int64_t rows, int64_t k0, int64_t kc, float* dst) {
  if (x.trans) {  // all rows contiguous for each k: walk k, filling every panel's row k
    for (int64_t k = 0; k < kc; ++k) {
      const float* src = x.p + (k0 + k) * x.ld + r0;
      float* d = dst + k * W;
      int64_t q = 0;
      for (; q + W <= rows; q += W, d += W * kc)  // a copy of W floats (not a loop of W)
        __builtin_memcpy(d, src + q, W * sizeof(float));
      for (int64_t i = 0; q + i < rows; ++i) d[i] = src[q + i];
    }
    return;
  }
  // Each row contiguous along k: transpose W rows at a time, 8 k at a time.
  for (int64_t q = 0; q < rows; q += W, dst += W * kc) {
    const float* src = x.p + (r0 + q) * x.ld + k0;
    const int64_t w = std::min<int64_t>(W, rows - q);
    int64_t k = 0;
    if (w == W) {
      for (; k + 8 <= kc; k += 8)
        for (int i = 0; i < W; ++i)
          for (int kk = 0; kk < 8; ++kk) dst[(k + kk) * W + i] = src[i * x.ld + k + kk];
    } else {  // the last, narrower panel: the same 8-k blocks over its w rows
      for (; k + 8 <= kc; k += 8)
        for (int64_t i = 0; i < w; ++i)
          for (int kk = 0; kk < 8; ++kk) dst[(k + kk) * W + i] = src[i * x.ld + k + kk];
    }
    for (int64_t i = 0; i < w; ++i)
      for (int64_t kk = k; kk < kc; ++kk) dst[kk * W + i] = src[i * x.ld + kk];
  }
}

// The PackFn for panels of W rows that transposes rows stored along k (x not transposed) in
// square blocks of Block::B rows x B k's in registers, the same panels as pack_panels<W> to the
// bit; rows stored along the panel (x transposed) are copied by pack_panels. Block::transpose(
// src, ld, n, nk, dst, W) reads n <= B rows (row i at src + i*ld) of nk <= B k's and writes
// them as nk rows of n floats, row k at dst + k*W.
template <int W, class Block>
void pack_transposing(Operand x, int64_t r0, int64_t rows, int64_t k0, int64_t kc, float* dst) {
  if (x.trans) return pack_panels<W>(x, r0, rows, k0, kc, dst);
  constexpr int B = Block::B;
  for (int64_t q = 0; q < rows; q += W, dst += W * kc) {
    const int64_t w = std::min<int64_t>(W, rows - q);
    for (int64_t g = 0; g < w; g += B) {  // a block of up to B of the panel's rows
      const int n = (int)std::min<int64_t>(B, w - g);
      const float* src = x.p + (r0 + q + g) * x.ld + k0;
      for (int64_t k = 0; k < kc; k += B)
        Block::transpose(src + k, x.ld, n, (int)std::min<int64_t>(B, kc - k), dst + k * W + g, W);
    }
  }
}
}  // namespace

extern const Kernel kAvx512;   // gemm_avx512.cpp: 14 x 32, AVX-512F
extern const Kernel kAvx2;     // gemm_avx2.cpp: 6 x 16, AVX2 + FMA
extern const Kernel kGeneric;  // gemm.cpp: portable C++

// Test hook: make sgemm use the kernel with this name ("avx512", "avx2", "generic") if this
// CPU can run it, returning whether it did; nullptr goes back to the automatic choice.
// Not thread-safe: call it only while no sgemm is running.
bool force_kernel(const char* name);

// Test hook: 1 runs every product outside a parallel region on the whole team, 0 on one
// thread, -1 goes back to the measured rule (gemm.cpp, plan_team). Not thread-safe either.
void force_team(int mode);

// Tool hook (time_winograd): 1 reads every operand that can be read in place (a transposed
// op(A), a non-transposed op(B)) in place, 0 packs every operand, -1 goes back to the rule
// (in place up to kSgemmInPlaceBytes of both). The results are the same. Not thread-safe.
void force_in_place(int mode);

// For tools (time_gemm): what plan_team's rule measured for the active kernel and a team of
// `threads` (measuring it now if it has not yet): one thread's seconds per unit of block_cost
// and step of k, and the team's overhead in seconds. {0, 0} without OpenMP.
std::pair<double, double> team_costs_measured(int threads);

}  // namespace hc::gemm
