// x (H,W) -> y (H/2,W/2);  x (H,W), dy (H/2,W/2) -> dx (H,W)
// 2x2, stride-2 max pooling of planes up to 32 wide (maxpool2d_kernels.h), AVX-512F. An input
// row is two 16-float vectors; its even and odd columns are separated with one permute each, so
// a whole output row (up to 16 windows) is found with a few compares and selects.
#include <immintrin.h>

#include <cstring>

#include "maxpool2d_kernels.h"

namespace hc::maxpool_2x2 {
namespace {

__mmask16 first_lanes(int64_t n) {
  return n >= 16 ? (__mmask16)0xFFFF : n <= 0 ? (__mmask16)0 : (__mmask16)((1u << n) - 1u);
}

// Lanes where u replaces v as the maximum: u > v, or u is NaN and v is not (maxpool2d.cpp's
// `replaces`).
inline __mmask16 replaces(__m512 u, __m512 v) {
  return _mm512_cmp_ps_mask(u, v, _CMP_GT_OQ) |
         (_mm512_cmp_ps_mask(u, u, _CMP_UNORD_Q) & _mm512_cmp_ps_mask(v, v, _CMP_ORD_Q));
}

// One input row of W <= 32 floats split into its even and odd columns (lanes j: columns 2j and
// 2j+1), lanes past the row zero.
struct Pairs {
  __m512 even, odd;
  Pairs(const float* r, int64_t W) {
    const __m512i ie = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
    const __m512i io = _mm512_add_epi32(ie, _mm512_set1_epi32(1));
    const __m512 lo = _mm512_maskz_loadu_ps(first_lanes(W), r);
    const __m512 hi = _mm512_maskz_loadu_ps(first_lanes(W - 16), r + 16);
    even = _mm512_permutex2var_ps(lo, ie, hi);
    odd = _mm512_permutex2var_ps(lo, io, hi);
  }
};

// Writes a row of W <= 32 floats from its even and odd columns.
inline void store_interleaved(float* r, int64_t W, __m512 even, __m512 odd) {
  const __m512i lo = _mm512_set_epi32(23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
  const __m512i hi = _mm512_add_epi32(lo, _mm512_set1_epi32(8));
  _mm512_mask_storeu_ps(r, first_lanes(W), _mm512_permutex2var_ps(even, lo, odd));
  _mm512_mask_storeu_ps(r + 16, first_lanes(W - 16), _mm512_permutex2var_ps(even, hi, odd));
}

void forward_2x2(int64_t H, int64_t W, const float* x, float* y) {
  const int64_t Ho = H / 2, Wo = W / 2;
  const __mmask16 out = first_lanes(Wo);
  for (int64_t oh = 0; oh < Ho; ++oh) {
    const Pairs t(x + 2 * oh * W, W), b(x + (2 * oh + 1) * W, W);
    // First maximum of each pair, then of the two pairs: the tap order a, b, c, d.
    const __m512 top = _mm512_mask_mov_ps(t.even, replaces(t.odd, t.even), t.odd);
    const __m512 bottom = _mm512_mask_mov_ps(b.even, replaces(b.odd, b.even), b.odd);
    _mm512_mask_storeu_ps(y + oh * Wo, out,
                          _mm512_mask_mov_ps(top, replaces(bottom, top), bottom));
  }
}

void backward_2x2(int64_t H, int64_t W, const float* x, const float* dy, float* dx,
                  bool relu_mask) {
  const int64_t Ho = H / 2, Wo = W / 2;
  const __m512 zero = _mm512_setzero_ps();
  for (int64_t oh = 0; oh < Ho; ++oh) {
    const Pairs t(x + 2 * oh * W, W), b(x + (2 * oh + 1) * W, W);
    const __mmask16 t_odd = replaces(t.odd, t.even), b_odd = replaces(b.odd, b.even);
    const __m512 top = _mm512_mask_mov_ps(t.even, t_odd, t.odd);
    const __m512 bottom = _mm512_mask_mov_ps(b.even, b_odd, b.odd);
    const __mmask16 low = replaces(bottom, top);  // the maximum is in the bottom row
    // Lanes past Wo load 0, so the columns the windows do not cover get 0.
    const __m512 g = _mm512_maskz_loadu_ps(first_lanes(Wo), dy + oh * Wo);
    __mmask16 a = ~low & ~t_odd, bb = ~low & t_odd, c = low & ~b_odd, d = low & b_odd;
    if (relu_mask) {
      a &= _mm512_cmp_ps_mask(t.even, zero, _CMP_GT_OQ);
      bb &= _mm512_cmp_ps_mask(t.odd, zero, _CMP_GT_OQ);
      c &= _mm512_cmp_ps_mask(b.even, zero, _CMP_GT_OQ);
      d &= _mm512_cmp_ps_mask(b.odd, zero, _CMP_GT_OQ);
    }
    store_interleaved(dx + 2 * oh * W, W, _mm512_maskz_mov_ps(a, g), _mm512_maskz_mov_ps(bb, g));
    store_interleaved(dx + (2 * oh + 1) * W, W, _mm512_maskz_mov_ps(c, g),
                      _mm512_maskz_mov_ps(d, g));
  }
  if (H > 2 * Ho) std::memset(dx + 2 * Ho * W, 0, W * sizeof(float));  // an odd last row
}

}  // namespace

const Kernels& kernels_avx512() {
  static constexpr Kernels k{&forward_2x2, &backward_2x2};
  return k;
}

}  // namespace hc::maxpool_2x2
