// Internal to sgemm: the register-blocked micro-kernels, one per instruction set, and the
// table the driver (gemm.cpp) picks from at run time.
#pragma once
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

struct Kernel {
  const char* name;
  int mr;  // rows of C per tile (MR)
  int nr;  // columns of C per tile (NR)
  TileKernel tile;
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

extern const Kernel kAvx512;   // gemm_avx512.cpp: 14 x 32, AVX-512F
extern const Kernel kAvx2;     // gemm_avx2.cpp: 6 x 16, AVX2 + FMA
extern const Kernel kGeneric;  // gemm.cpp: portable C++

// Test hook: make sgemm use the kernel with this name ("avx512", "avx2", "generic") if this
// CPU can run it, returning whether it did; nullptr goes back to the automatic choice.
// Not thread-safe: call it only while no sgemm is running.
bool force_kernel(const char* name);

}  // namespace hc::gemm
