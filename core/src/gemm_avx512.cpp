// AVX-512 sgemm micro-kernel: a 14 x 32 tile of C held in 28 zmm accumulators. Each k step
// loads two 16-float vectors of b and broadcasts 14 scalars of a (folded into the FMAs as
// {1to16} memory operands): 28 independent FMA chains, enough to keep both FMA pipes busy
// through their latency. Edge tiles fix their row count at compile time (tile_by_rows) and
// mask the columns beyond nr.
#include <immintrin.h>

#include "gemm_kernels.h"

namespace hc::gemm {
namespace {

constexpr int MR = 14, NR = 32;

__mmask16 column_mask(int n) { return n >= 16 ? 0xFFFF : n <= 0 ? 0 : (__mmask16)((1u << n) - 1); }

template <int R>
struct Rows {
  static void run(int64_t kc, const float* a, int64_t as, const float* b, int64_t bs, float* c,
                  int64_t ldc, float alpha, float beta, int nr) {
    const __mmask16 m0 = column_mask(nr), m1 = column_mask(nr - 16);
    __m512 acc0[R], acc1[R];
#pragma GCC unroll 16
    for (int i = 0; i < R; ++i) {
      acc0[i] = acc1[i] = _mm512_setzero_ps();
      // C is read and written only after the k loop: fetch its rows (2-3 lines each) now.
      _mm_prefetch((const char*)(c + i * ldc), _MM_HINT_T0);
      _mm_prefetch((const char*)(c + i * ldc + 16), _MM_HINT_T0);
      _mm_prefetch((const char*)(c + i * ldc + 31), _MM_HINT_T0);
    }

    for (int64_t k = 0; k < kc; ++k) {
      const __m512 b0 = _mm512_maskz_loadu_ps(m0, b);
      const __m512 b1 = _mm512_maskz_loadu_ps(m1, b + 16);
#pragma GCC unroll 16
      for (int i = 0; i < R; ++i) {
        const __m512 ai = _mm512_set1_ps(a[i]);
        acc0[i] = _mm512_fmadd_ps(ai, b0, acc0[i]);
        acc1[i] = _mm512_fmadd_ps(ai, b1, acc1[i]);
      }
      a += as;
      b += bs;
    }

    const __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
#pragma GCC unroll 16
    for (int i = 0; i < R; ++i) {
      float* ci = c + i * ldc;
      __m512 r0 = _mm512_mul_ps(acc0[i], va), r1 = _mm512_mul_ps(acc1[i], va);
      if (beta != 0.0f) {
        r0 = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(m0, ci), r0);
        r1 = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(m1, ci + 16), r1);
      }
      _mm512_mask_storeu_ps(ci, m0, r0);
      _mm512_mask_storeu_ps(ci + 16, m1, r1);
    }
  }
};

}  // namespace

const Kernel kAvx512 = {"avx512", MR, NR, &tile_by_rows<Rows, MR>, &pack_panels<MR>,
                         &pack_panels<NR>};

}  // namespace hc::gemm
