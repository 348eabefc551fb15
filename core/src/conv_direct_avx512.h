// Internal to the AVX-512 convolution kernels (conv_direct_avx512.cpp, conv_channels_avx512.cpp,
// both compiled with -mavx512f): what they share.
#pragma once
#include <immintrin.h>

namespace hc::conv_direct {

// max(v, 0) with NaN kept, as relu_forward_cpu: lanes that are <= 0 (ordered) become 0.
inline __m512 relu(__m512 v) {
  const __m512 zero = _mm512_setzero_ps();
  return _mm512_mask_mov_ps(v, _mm512_cmp_ps_mask(v, zero, _CMP_LE_OQ), zero);
}

}  // namespace hc::conv_direct
