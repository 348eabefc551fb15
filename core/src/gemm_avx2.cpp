// AVX2 + FMA sgemm micro-kernel: a 6 x 16 tile of C held in 12 ymm accumulators. Each k step
// loads two 8-float vectors of b and broadcasts 6 scalars of a: 12 independent FMA chains in
// 15 of the 16 ymm registers. Edge tiles fix their row count at compile time (tile_by_rows);
// columns beyond nr are read by masked loads and written by partial stores (avx2_lanes.h) only
// on tiles that have them, and a tile of at most 8 columns takes one vector. Its packing
// transposes operands stored along k 8 x 8 at a time in registers (pack_transposing).
#include <immintrin.h>

#include "avx2_lanes.h"
#include "gemm_kernels.h"

namespace hc::gemm {
namespace {

constexpr int MR = 6, NR = 16;

// Transposes the 8 x 8 block r in registers: r[i][k] becomes r[k][i]. Pairs of rows within
// 128-bit lanes, quads within lanes, then the two lanes.
inline void transpose8(__m256 r[8]) {
  __m256 t[8], s[8];
  for (int i = 0; i < 8; i += 2) {
    t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
    t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
  }
  // s[4q + j], lane L: rows 4q..4q+3 at k = 4L + j.
  for (int q = 0; q < 8; q += 4) {
    s[q] = _mm256_shuffle_ps(t[q], t[q + 2], 0x44);
    s[q + 1] = _mm256_shuffle_ps(t[q], t[q + 2], 0xEE);
    s[q + 2] = _mm256_shuffle_ps(t[q + 1], t[q + 3], 0x44);
    s[q + 3] = _mm256_shuffle_ps(t[q + 1], t[q + 3], 0xEE);
  }
  for (int j = 0; j < 4; ++j) {
    r[j] = _mm256_permute2f128_ps(s[j], s[4 + j], 0x20);      // k = j
    r[4 + j] = _mm256_permute2f128_ps(s[j], s[4 + j], 0x31);  // k = 4 + j
  }
}

// pack_transposing's block (gemm_kernels.h): 8 x 8, loads masked past the last row or k,
// stores cut to the block's rows (6 of 8 in every panel of op(A)).
struct Block8 {
  static constexpr int B = 8;
  static void transpose(const float* src, int64_t ld, int n, int nk, float* dst, int64_t W) {
    const __m256i k_mask = first_lanes(nk);
    __m256 r[8];
    for (int i = 0; i < 8; ++i) {
      const float* row = src + i * ld;
      r[i] = i >= n    ? _mm256_setzero_ps()
             : nk == 8 ? _mm256_loadu_ps(row)
                       : _mm256_maskload_ps(row, k_mask);
    }
    transpose8(r);
    for (int k = 0; k < nk; ++k) store_first(dst + k * W, n, r[k]);
  }
};

// R rows x V vectors of 8 columns. Full: the tile has all 8 V columns (nr == 8 V); otherwise
// the columns past nr are neither read nor written.
template <int R, int V, bool Full>
void run_tile(int64_t kc, const float* a, int64_t as, const float* b, int64_t bs, float* c,
              int64_t ldc, float alpha, float beta, int nr) {
  __m256i mask[V];
  __m256 acc[R][V];
#pragma GCC unroll 2
  for (int v = 0; v < V; ++v) mask[v] = first_lanes(nr - 8 * v);
  auto load = [&](const float* p, int v) {
    return Full ? _mm256_loadu_ps(p + 8 * v) : _mm256_maskload_ps(p + 8 * v, mask[v]);
  };
#pragma GCC unroll 8
  for (int i = 0; i < R; ++i)
#pragma GCC unroll 2
    for (int v = 0; v < V; ++v) acc[i][v] = _mm256_setzero_ps();

  for (int64_t k = 0; k < kc; ++k) {
    __m256 bv[V];
#pragma GCC unroll 2
    for (int v = 0; v < V; ++v) bv[v] = load(b, v);
#pragma GCC unroll 8
    for (int i = 0; i < R; ++i) {
      const __m256 ai = _mm256_broadcast_ss(a + i);
#pragma GCC unroll 2
      for (int v = 0; v < V; ++v) acc[i][v] = _mm256_fmadd_ps(ai, bv[v], acc[i][v]);
    }
    a += as;
    b += bs;
  }

  const __m256 va = _mm256_set1_ps(alpha), vb = _mm256_set1_ps(beta);
#pragma GCC unroll 8
  for (int i = 0; i < R; ++i) {
    float* ci = c + i * ldc;
#pragma GCC unroll 2
    for (int v = 0; v < V; ++v) {
      __m256 r = _mm256_mul_ps(acc[i][v], va);
      if (beta != 0.0f) r = _mm256_fmadd_ps(vb, load(ci, v), r);
      if (Full)
        _mm256_storeu_ps(ci + 8 * v, r);
      else
        store_first(ci + 8 * v, nr - 8 * v, r);
    }
  }
}

// A tile of nr <= 8 columns takes one vector of them: half the multiply-adds of two.
template <int R>
struct Rows {
  static void run(int64_t kc, const float* a, int64_t as, const float* b, int64_t bs, float* c,
                  int64_t ldc, float alpha, float beta, int nr) {
    (nr == NR  ? run_tile<R, 2, true>
     : nr > 8  ? run_tile<R, 2, false>
     : nr == 8 ? run_tile<R, 1, true>
               : run_tile<R, 1, false>)(kc, a, as, b, bs, c, ldc, alpha, beta, nr);
  }
};

}  // namespace

// full_rate_rows 4: a row is two vectors, so 4 rows are 8 FMA chains, what two FMA pipes of
// 4 cycles' latency need to stay busy.
const Kernel kAvx2 = {"avx2", MR, NR, 4, &tile_by_rows<Rows, MR>, &pack_transposing<MR, Block8>,
                      &pack_transposing<NR, Block8>};

}  // namespace hc::gemm
