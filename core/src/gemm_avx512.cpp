// AVX-512 sgemm micro-kernel: a 14 x 32 tile of C held in 28 zmm accumulators. Each k step
// loads two 16-float vectors of b and broadcasts 14 scalars of a: 28 independent FMA chains,
// enough to keep both FMA pipes busy through their latency. Edge tiles fix their row count at
// compile time (tile_by_rows), mask the columns beyond nr, and skip the second vector of
// columns altogether when nr <= 16.
// Its packing transposes operands stored along k (op(A) not transposed, op(B) transposed) 16 x 16
// at a time in registers (pack_transposing, gemm_kernels.h).
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

// The shuffles of transpose16, in their forms masked to every lane: the same instructions, but
// GCC 12 warns (-Wmaybe-uninitialized, a false positive) on the unmasked forms' undefined
// pass-through operand.
constexpr __mmask16 kAll = 0xFFFF;
inline __m512 unpacklo(__m512 a, __m512 b) { return _mm512_mask_unpacklo_ps(a, kAll, a, b); }
inline __m512 unpackhi(__m512 a, __m512 b) { return _mm512_mask_unpackhi_ps(a, kAll, a, b); }
template <int Imm>
__m512 shuffle(__m512 a, __m512 b) { return _mm512_mask_shuffle_ps(a, kAll, a, b, Imm); }
template <int Imm>
__m512 shuffle_lanes(__m512 a, __m512 b) { return _mm512_mask_shuffle_f32x4(a, kAll, a, b, Imm); }

// Transposes the 16 x 16 block r in registers: r[i][k] becomes r[k][i]. Three rounds of
// shuffles: pairs of rows within 128-bit lanes, quads within lanes, then whole lanes.
inline void transpose16(__m512 r[16]) {
  __m512 t[16];
  for (int i = 0; i < 16; i += 2) {
    t[i] = unpacklo(r[i], r[i + 1]);
    t[i + 1] = unpackhi(r[i], r[i + 1]);
  }
  // s[4q + j], lane L: rows 4q..4q+3 at k = 4L + j.
  __m512 s[16];
  for (int q = 0; q < 16; q += 4) {
    s[q] = shuffle<0x44>(t[q], t[q + 2]);
    s[q + 1] = shuffle<0xEE>(t[q], t[q + 2]);
    s[q + 2] = shuffle<0x44>(t[q + 1], t[q + 3]);
    s[q + 3] = shuffle<0xEE>(t[q + 1], t[q + 3]);
  }
  for (int j = 0; j < 4; ++j) {
    const __m512 lo01 = shuffle_lanes<0x44>(s[j], s[4 + j]);  // lanes 0, 1 of each
    const __m512 hi01 = shuffle_lanes<0xEE>(s[j], s[4 + j]);  // lanes 2, 3
    const __m512 lo23 = shuffle_lanes<0x44>(s[8 + j], s[12 + j]);
    const __m512 hi23 = shuffle_lanes<0xEE>(s[8 + j], s[12 + j]);
    r[j] = shuffle_lanes<0x88>(lo01, lo23);       // k = j
    r[4 + j] = shuffle_lanes<0xDD>(lo01, lo23);   // k = 4 + j
    r[8 + j] = shuffle_lanes<0x88>(hi01, hi23);   // k = 8 + j
    r[12 + j] = shuffle_lanes<0xDD>(hi01, hi23);  // k = 12 + j
  }
}

// pack_transposing's block (gemm_kernels.h): 16 x 16, loads masked past the last row or k,
// stores masked to the block's rows.
struct Block16 {
  static constexpr int B = 16;
  static void transpose(const float* src, int64_t ld, int n, int nk, float* dst, int64_t W) {
    const __mmask16 k_mask = column_mask(nk), row_mask = column_mask(n);
    __m512 r[16];
    for (int i = 0; i < 16; ++i)
      r[i] = i < n ? _mm512_maskz_loadu_ps(k_mask, src + i * ld) : _mm512_setzero_ps();
    transpose16(r);
    for (int k = 0; k < nk; ++k) _mm512_mask_storeu_ps(dst + k * W, row_mask, r[k]);
  }
};

template <int R>
struct Rows {
  static void run(int64_t kc, const float* a, int64_t as, const float* b, int64_t bs, float* c,
                  int64_t ldc, float alpha, float beta, int nr) {
    (nr > 16 ? run_tile<R, 2> : run_tile<R, 1>)(kc, a, as, b, bs, c, ldc, alpha, beta, nr);
  }
};

}  // namespace

// full_rate_rows 4: a row is two vectors, so 4 rows are 8 FMA chains, what two FMA pipes of
// 4 cycles' latency need to stay busy.
const Kernel kAvx512 = {"avx512", MR, NR, 4, &tile_by_rows<Rows, MR>,
                        &pack_transposing<MR, Block16>, &pack_transposing<NR, Block16>};

}  // namespace hc::gemm
