// Internal to the AVX2 translation units (compiled with -mavx2): loads and stores of the first
// n lanes of an 8-float vector, for the tails of rows. Loads are vmaskmovps, whose masked-off
// lanes are not read (their faults are suppressed). Stores are not: vmaskmovps stores are slow
// on AMD's Zen cores (tens of cycles each), so a partial store writes 4, 2 and 1 lanes with
// plain stores, touching nothing past lane n - 1.
#pragma once
#include <immintrin.h>

#include <cstdint>

namespace hc {
namespace {

// vmaskmovps's mask of the first n lanes (all ones where lane < n; n <= 0: none, n >= 8: all).
inline __m256i first_lanes(int64_t n) {
  const int k = static_cast<int>(n < 0 ? 0 : n > 8 ? 8 : n);
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(k), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

// The first n lanes of p (n <= 0: none), the others 0.
inline __m256 load_first(const float* p, int64_t n) {
  if (n >= 8) return _mm256_loadu_ps(p);
  if (n <= 0) return _mm256_setzero_ps();
  return _mm256_maskload_ps(p, first_lanes(n));
}

// Writes the first n lanes of v to p (n <= 0: none).
inline void store_first(float* p, int64_t n, __m256 v) {
  if (n >= 8) return _mm256_storeu_ps(p, v);
  if (n <= 0) return;
  __m128 x = _mm256_castps256_ps128(v);  // lanes 0-3
  if (n & 4) {
    _mm_storeu_ps(p, x);
    x = _mm256_extractf128_ps(v, 1);  // lanes 4-7
    p += 4;
  }
  if (n & 2) {
    _mm_storel_pi(reinterpret_cast<__m64*>(p), x);
    x = _mm_movehl_ps(x, x);
    p += 2;
  }
  if (n & 1) _mm_store_ss(p, x);
}

}  // namespace
}  // namespace hc
