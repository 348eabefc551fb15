// Winograd's transforms (conv_winograd_kernels.h) for AVX-512F: the loops along the tiles run
// 16 floats wide, and a row of up to 16 tiles (outputs up to 32 wide) is one vector each, taken
// in registers (a loop along it would run in the compiler's scalar remainder).
#include <immintrin.h>

#include <algorithm>

#include "conv_winograd_kernels.h"

namespace hc::conv_winograd {
namespace {

constexpr int64_t kVectorTiles = 16;

// Lanes [lo, hi) of a 16-lane mask, clamped to the vector.
inline __mmask16 lanes(int64_t lo, int64_t hi) {
  lo = std::clamp<int64_t>(lo, 0, 16), hi = std::clamp<int64_t>(hi, 0, 16);
  return static_cast<__mmask16>(((1u << hi) - 1) & ~((1u << lo) - 1));
}

// Floats q0 .. q0 + 15 of the padded row: row[q - pad] for pad <= q < pad + n, else 0 (masked
// loads: nothing outside the row is read).
inline __m512 padded(const float* row, int64_t n, int64_t pad, int64_t q0) {
  return _mm512_maskz_loadu_ps(lanes(pad - q0, pad + n - q0), row - pad + q0);
}

// The even and odd floats of the 32 in (lo, hi).
inline __m512 evens(__m512 lo, __m512 hi) {
  const __m512i idx = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
  return _mm512_permutex2var_ps(lo, idx, hi);
}
inline __m512 odds(__m512 lo, __m512 hi) {
  const __m512i idx = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
  return _mm512_permutex2var_ps(lo, idx, hi);
}

// PortableRows' transforms, rows of up to 16 tiles in registers.
struct Avx512Rows {
  static void input_row(const float* row, int64_t n, int64_t pad, int64_t TW, float* line,
                        float* a0, float* a1, float* a2, float* a3) {
    if (TW > kVectorTiles) return PortableRows::input_row(row, n, pad, TW, line, a0, a1, a2, a3);
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
  }

  static void grad_row(const float* row, int64_t n, int64_t TW, float* line, float* h0,
                       float* h1, float* h2, float* h3) {
    if (TW > kVectorTiles) return PortableRows::grad_row(row, n, TW, line, h0, h1, h2, h3);
    __m512 l0 = _mm512_setzero_ps(), l1 = l0;
    if (row) l0 = padded(row, n, 0, 0), l1 = padded(row, n, 0, 16);
    const __m512 e = evens(l0, l1), o = odds(l0, l1);
    const __mmask16 m = lanes(0, TW);
    _mm512_mask_storeu_ps(h0, m, e);
    _mm512_mask_storeu_ps(h1, m, _mm512_add_ps(e, o));
    _mm512_mask_storeu_ps(h2, m, _mm512_sub_ps(e, o));
    _mm512_mask_storeu_ps(h3, m, _mm512_sub_ps(_mm512_setzero_ps(), o));
  }

  static void interleave_row(const float* l, const float* r, int64_t n, float* out) {
    const int64_t TW = (n + 1) / 2;
    if (TW > kVectorTiles) return PortableRows::interleave_row(l, r, n, out);
    const __mmask16 m = lanes(0, TW);
    const __m512 lv = _mm512_maskz_loadu_ps(m, l), rv = _mm512_maskz_loadu_ps(m, r);
    const __m512i lo = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
    const __m512i hi =
        _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
    _mm512_mask_storeu_ps(out, lanes(0, n), _mm512_permutex2var_ps(lv, lo, rv));
    _mm512_mask_storeu_ps(out + 16, lanes(0, n - 16), _mm512_permutex2var_ps(lv, hi, rv));
  }
};

}  // namespace

const Transforms& transforms_avx512() { return Blocks<Avx512Rows>::table; }

}  // namespace hc::conv_winograd
