// x (n,C,H,W), wt (C*K*K,M), b (M,) -> y (n,M,Ho,Wo);  x (n,C,H,W), dy (n,M,Ho,Wo) -> dw (M,C*K*K)
// The direct convolution kernels (conv_direct_kernels.h, conv_channels_kernels.h) for AVX2 +
// FMA: 8 lanes a vector, 16 registers. A mask is kept as 8 bits and made a vector of lanes by a
// table when loaded (vmaskmovps takes its mask in a vector register); masked-off lanes are not
// read (AVX2 masked loads suppress their faults). A store to part of a vector writes its lanes
// one by one rather than by vmaskmovps, whose stores are slow on AMD's Zen cores (a vector's
// lanes are all stored but for the tail of a row or plane).
#include <immintrin.h>

#include "conv_channels_kernels.h"

namespace hc::conv_direct {
namespace {

// kLaneMasks[m]: lane j all ones where bit j of m is set.
struct LaneMasks {
  alignas(32) int32_t lanes[256][8];
  constexpr LaneMasks() : lanes{} {
    for (int m = 0; m < 256; ++m)
      for (int j = 0; j < 8; ++j) lanes[m][j] = (m >> j) & 1 ? -1 : 0;
  }
};
constexpr LaneMasks kLaneMasks;

struct Avx2 {
  using Vec = __m256;
  using Mask = uint8_t;
  static constexpr int kLanes = 8, kRegs = 16;
  static constexpr Mask kAll = 0xFF;
  static Vec zero() { return _mm256_setzero_ps(); }
  static Vec set1(float f) { return _mm256_set1_ps(f); }
  static Vec loadu(const float* p) { return _mm256_loadu_ps(p); }
  static Vec load(Mask m, const float* p) {
    return _mm256_maskload_ps(
        p, _mm256_load_si256(reinterpret_cast<const __m256i*>(kLaneMasks.lanes[m])));
  }
  static void storeu(float* p, Vec v) { _mm256_storeu_ps(p, v); }
  static void store(Mask m, float* p, Vec v) {
    if (m == kAll) return _mm256_storeu_ps(p, v);
    alignas(32) float lanes[8];
    _mm256_store_ps(lanes, v);
    for (int j = 0; j < 8; ++j)
      if ((m >> j) & 1) p[j] = lanes[j];
  }
  static Vec fmadd(Vec a, Vec b, Vec c) { return _mm256_fmadd_ps(a, b, c); }
  static Vec add(Vec a, Vec b) { return _mm256_add_ps(a, b); }
  // Lanes that are <= 0 (ordered) become 0, so NaN is kept, as relu_forward_cpu.
  static Vec relu(Vec v) {
    const Vec z = zero();
    return _mm256_blendv_ps(v, z, _mm256_cmp_ps(v, z, _CMP_LE_OQ));
  }
  static float sum(Vec v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    return _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)));
  }
};

}  // namespace

const Kernels& kernels_avx2() { return kernels_of<Avx2>; }

}  // namespace hc::conv_direct
