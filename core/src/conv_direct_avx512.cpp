// x (n,C,H,W), wt (C*K*K,M), b (M,) -> y (n,M,Ho,Wo);  x (n,C,H,W), dy (n,M,Ho,Wo) -> dw (M,C*K*K)
// The direct convolution kernels (conv_direct_kernels.h, conv_channels_kernels.h) for AVX-512F:
// 16 lanes a vector, 32 registers, masks in mask registers.
#include <immintrin.h>

#include "conv_channels_kernels.h"

namespace hc::conv_direct {
namespace {

struct Avx512 {
  using Vec = __m512;
  using Mask = __mmask16;
  static constexpr int kLanes = 16, kRegs = 32;
  static constexpr Mask kAll = 0xFFFF;
  static Vec zero() { return _mm512_setzero_ps(); }
  static Vec set1(float f) { return _mm512_set1_ps(f); }
  static Vec loadu(const float* p) { return _mm512_loadu_ps(p); }
  static Vec load(Mask m, const float* p) { return _mm512_maskz_loadu_ps(m, p); }
  static void storeu(float* p, Vec v) { _mm512_storeu_ps(p, v); }
  static void store(Mask m, float* p, Vec v) { _mm512_mask_storeu_ps(p, m, v); }
  static Vec fmadd(Vec a, Vec b, Vec c) { return _mm512_fmadd_ps(a, b, c); }
  static Vec add(Vec a, Vec b) { return _mm512_add_ps(a, b); }
  // Lanes that are <= 0 (ordered) become 0, so NaN is kept, as relu_forward_cpu.
  static Vec relu(Vec v) {
    const Vec z = zero();
    return _mm512_mask_mov_ps(v, _mm512_cmp_ps_mask(v, z, _CMP_LE_OQ), z);
  }
  static float sum(Vec v) { return _mm512_reduce_add_ps(v); }
};

}  // namespace

const Kernels& kernels_avx512() { return kernels_of<Avx512>; }

}  // namespace hc::conv_direct
