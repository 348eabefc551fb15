// AVX2 + FMA sgemm micro-kernel: a 6 x 16 tile of C held in 12 ymm accumulators. Each k step
// loads two 8-float vectors of b and broadcasts 6 scalars of a: 12 independent FMA chains in
// 15 of the 16 ymm registers. Edge tiles fix their row count at compile time (tile_by_rows);
// columns beyond nr are masked (maskload/maskstore) only on tiles that have them.
#include <immintrin.h>

#include "gemm_kernels.h"

namespace hc::gemm {
namespace {

constexpr int MR = 6, NR = 16;

// Lanes < n set: the mask for the first n floats of an 8-float vector.
__m256i column_mask(int n) {
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

template <int R, bool Full>
void run_tile(int64_t kc, const float* a, int64_t as, const float* b, int64_t bs, float* c,
              int64_t ldc, float alpha, float beta, int nr) {
  const __m256i m0 = column_mask(nr), m1 = column_mask(nr - 8);
  auto load = [&](const float* p, __m256i m) {
    return Full ? _mm256_loadu_ps(p) : _mm256_maskload_ps(p, m);
  };
  __m256 acc0[R], acc1[R];
#pragma GCC unroll 8
  for (int i = 0; i < R; ++i) acc0[i] = acc1[i] = _mm256_setzero_ps();

  for (int64_t k = 0; k < kc; ++k) {
    const __m256 b0 = load(b, m0), b1 = load(b + 8, m1);
#pragma GCC unroll 8
    for (int i = 0; i < R; ++i) {
      const __m256 ai = _mm256_broadcast_ss(a + i);
      acc0[i] = _mm256_fmadd_ps(ai, b0, acc0[i]);
      acc1[i] = _mm256_fmadd_ps(ai, b1, acc1[i]);
    }
    a += as;
    b += bs;
  }

  const __m256 va = _mm256_set1_ps(alpha), vb = _mm256_set1_ps(beta);
#pragma GCC unroll 8
  for (int i = 0; i < R; ++i) {
    float* ci = c + i * ldc;
    __m256 r0 = _mm256_mul_ps(acc0[i], va), r1 = _mm256_mul_ps(acc1[i], va);
    if (beta != 0.0f) {
      r0 = _mm256_fmadd_ps(vb, load(ci, m0), r0);
      r1 = _mm256_fmadd_ps(vb, load(ci + 8, m1), r1);
    }
    if (Full) {
      _mm256_storeu_ps(ci, r0);
      _mm256_storeu_ps(ci + 8, r1);
    } else {
      _mm256_maskstore_ps(ci, m0, r0);
      _mm256_maskstore_ps(ci + 8, m1, r1);
    }
  }
}

template <int R>
struct Rows {
  static void run(int64_t kc, const float* a, int64_t as, const float* b, int64_t bs, float* c,
                  int64_t ldc, float alpha, float beta, int nr) {
    (nr == NR ? run_tile<R, true> : run_tile<R, false>)(kc, a, as, b, bs, c, ldc, alpha, beta, nr);
  }
};

}  // namespace

const Kernel kAvx2 = {"avx2", MR, NR, &tile_by_rows<Rows, MR>, &pack_panels<MR>,
                         &pack_panels<NR>};

}  // namespace hc::gemm
