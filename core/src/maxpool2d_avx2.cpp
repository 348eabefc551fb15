// x (H,W) -> y (H/2,W/2);  x (H,W), dy (H/2,W/2) -> dx (H,W)
// 2x2, stride-2 max pooling of planes up to 32 wide (maxpool2d_kernels.h), AVX2. An input row
// is taken 16 floats at a time, two 8-float vectors whose even and odd columns are separated
// with a shuffle and a permute each, so 8 windows of an output row are found with a few
// compares and selects. Row tails are read by masked loads (masked-off lanes are not read) and
// written by plain stores of 4, 2 and 1 lanes (avx2_lanes.h).
#include <immintrin.h>

#include <cstring>

#include "avx2_lanes.h"
#include "maxpool2d_kernels.h"

namespace hc::maxpool_2x2 {
namespace {

// Lanes where u replaces v as the maximum: u > v, or u is NaN and v is not (maxpool2d.cpp's
// `replaces`), all ones.
inline __m256 replaces(__m256 u, __m256 v) {
  return _mm256_or_ps(_mm256_cmp_ps(u, v, _CMP_GT_OQ),
                      _mm256_and_ps(_mm256_cmp_ps(u, u, _CMP_UNORD_Q),
                                    _mm256_cmp_ps(v, v, _CMP_ORD_Q)));
}

// Columns [16k, 16k + 16) of an input row of W floats split into their even and odd columns
// (lane j: columns 16k + 2j and 16k + 2j + 1), columns past the row 0.
struct Pairs {
  __m256 even, odd;
  Pairs(const float* r, int64_t W, int64_t k) {
    const __m256 lo = load_first(r + 16 * k, W - 16 * k);
    const __m256 hi = load_first(r + 16 * k + 8, W - 16 * k - 8);
    // Within each 128-bit half: lo's two pairs, then hi's; the permute puts lo's halves first.
    even = _mm256_castpd_ps(
        _mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(lo, hi, 0x88)), 0xD8));
    odd = _mm256_castpd_ps(
        _mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(lo, hi, 0xDD)), 0xD8));
  }
};

// Writes columns [16k, 16k + 16) of a row of W floats from their even and odd columns.
inline void store_interleaved(float* r, int64_t W, int64_t k, __m256 even, __m256 odd) {
  const __m256 lo = _mm256_unpacklo_ps(even, odd), hi = _mm256_unpackhi_ps(even, odd);
  store_first(r + 16 * k, W - 16 * k, _mm256_permute2f128_ps(lo, hi, 0x20));
  store_first(r + 16 * k + 8, W - 16 * k - 8, _mm256_permute2f128_ps(lo, hi, 0x31));
}

void forward_2x2(int64_t H, int64_t W, const float* x, float* y) {
  const int64_t Ho = H / 2, Wo = W / 2;
  for (int64_t oh = 0; oh < Ho; ++oh)
    for (int64_t k = 0; 8 * k < Wo; ++k) {
      const Pairs t(x + 2 * oh * W, W, k), b(x + (2 * oh + 1) * W, W, k);
      // First maximum of each pair, then of the two pairs: the tap order a, b, c, d.
      const __m256 top = _mm256_blendv_ps(t.even, t.odd, replaces(t.odd, t.even));
      const __m256 bottom = _mm256_blendv_ps(b.even, b.odd, replaces(b.odd, b.even));
      store_first(y + oh * Wo + 8 * k, Wo - 8 * k,
                  _mm256_blendv_ps(top, bottom, replaces(bottom, top)));
    }
}

void backward_2x2(int64_t H, int64_t W, const float* x, const float* dy, float* dx,
                  bool relu_mask) {
  const int64_t Ho = H / 2, Wo = W / 2;
  const __m256 zero = _mm256_setzero_ps();
  for (int64_t oh = 0; oh < Ho; ++oh)
    for (int64_t k = 0; 16 * k < W; ++k) {  // every column of dx, those no window covers too
      const Pairs t(x + 2 * oh * W, W, k), b(x + (2 * oh + 1) * W, W, k);
      const __m256 t_odd = replaces(t.odd, t.even), b_odd = replaces(b.odd, b.even);
      const __m256 top = _mm256_blendv_ps(t.even, t.odd, t_odd);
      const __m256 bottom = _mm256_blendv_ps(b.even, b.odd, b_odd);
      const __m256 low = replaces(bottom, top);  // the maximum is in the bottom row
      // Lanes past Wo load 0, so the columns the windows do not cover get 0.
      const __m256 g = load_first(dy + oh * Wo + 8 * k, Wo - 8 * k);
      __m256 a = _mm256_andnot_ps(_mm256_or_ps(low, t_odd), g);
      __m256 bb = _mm256_and_ps(_mm256_andnot_ps(low, t_odd), g);
      __m256 c = _mm256_and_ps(_mm256_andnot_ps(b_odd, low), g);
      __m256 d = _mm256_and_ps(_mm256_and_ps(low, b_odd), g);
      if (relu_mask) {
        a = _mm256_and_ps(a, _mm256_cmp_ps(t.even, zero, _CMP_GT_OQ));
        bb = _mm256_and_ps(bb, _mm256_cmp_ps(t.odd, zero, _CMP_GT_OQ));
        c = _mm256_and_ps(c, _mm256_cmp_ps(b.even, zero, _CMP_GT_OQ));
        d = _mm256_and_ps(d, _mm256_cmp_ps(b.odd, zero, _CMP_GT_OQ));
      }
      store_interleaved(dx + 2 * oh * W, W, k, a, bb);
      store_interleaved(dx + (2 * oh + 1) * W, W, k, c, d);
    }
  if (H > 2 * Ho) std::memset(dx + 2 * Ho * W, 0, W * sizeof(float));  // an odd last row
}

}  // namespace

const Kernels& kernels_avx2() {
  static constexpr Kernels k{&forward_2x2, &backward_2x2};
  return k;
}

}  // namespace hc::maxpool_2x2
