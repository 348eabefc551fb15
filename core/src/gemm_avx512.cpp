// AVX-512 sgemm micro-kernel: a 14 x 32 tile of C held in 28 zmm accumulators. Each k step
// loads two 16-float vectors of b and broadcasts 14 scalars of a: 28 independent FMA chains,
// enough to keep both FMA pipes busy through their latency. Edge tiles fix their row count at
// compile time (tile_by_rows), mask the columns beyond nr, and skip the second vector of
// columns altogether when nr <= 16.
#include <immintrin.h>

#include "gemm_kernels.h"

namespace hc::gemm {
namespace {

constexpr int MR = 14, NR = 32;

__mmask16 column_mask(int n) { return n >= 16 ? 0xFFFF : n <= 0 ? 0 : (__mmask16)((1u << n) - 1); }

// R rows x V vectors of 16 columns.
template <int R, int V>
void run_tile(int64_t kc, const float* a, int64_t as, const float* b, int64_t bs, float* c,
              int64_t ldc, float alpha, float beta, int nr) {
  __mmask16 mask[V];
  __m512 acc[R][V];
#pragma GCC unroll 2
  for (int v = 0; v < V; ++v) mask[v] = column_mask(nr - 16 * v);
#pragma GCC unroll 16
  for (int i = 0; i < R; ++i) {
#pragma GCC unroll 2
    for (int v = 0; v < V; ++v) acc[i][v] = _mm512_setzero_ps();
    // C is read and written only after the k loop: fetch its rows (2-3 lines each) now.
    _mm_prefetch((const char*)(c + i * ldc), _MM_HINT_T0);
    _mm_prefetch((const char*)(c + i * ldc + 16 * V - 1), _MM_HINT_T0);
    if (V == 2) _mm_prefetch((const char*)(c + i * ldc + 16), _MM_HINT_T0);
  }

  for (int64_t k = 0; k < kc; ++k) {
    __m512 bv[V];
#pragma GCC unroll 2
    for (int v = 0; v < V; ++v) bv[v] = _mm512_maskz_loadu_ps(mask[v], b + 16 * v);
#pragma GCC unroll 16
    for (int i = 0; i < R; ++i) {
      const __m512 ai = _mm512_set1_ps(a[i]);
#pragma GCC unroll 2
      for (int v = 0; v < V; ++v) acc[i][v] = _mm512_fmadd_ps(ai, bv[v], acc[i][v]);
    }
    a += as;
    b += bs;
  }

  const __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
#pragma GCC unroll 16
  for (int i = 0; i < R; ++i) {
#pragma GCC unroll 2
    for (int v = 0; v < V; ++v) {
      float* cv = c + i * ldc + 16 * v;
      __m512 r = _mm512_mul_ps(acc[i][v], va);
      if (beta != 0.0f) r = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(mask[v], cv), r);
      _mm512_mask_storeu_ps(cv, mask[v], r);
    }
  }
}

template <int R>
struct Rows {
  static void run(int64_t kc, const float* a, int64_t as, const float* b, int64_t bs, float* c,
                  int64_t ldc, float alpha, float beta, int nr) {
    (nr > 16 ? run_tile<R, 2> : run_tile<R, 1>)(kc, a, as, b, bs, c, ldc, alpha, beta, nr);
  }
};

}  // namespace

const Kernel kAvx512 = {"avx512", MR, NR, &tile_by_rows<Rows, MR>, &pack_panels<MR>,
                        &pack_panels<NR>};

}  // namespace hc::gemm
