// Experiment (not part of the library): GFLOP/s of AVX-512 sgemm micro-kernel variants on one
// thread, their panels hot: (1) the B panel in L1 (one panel, repeated), (2) a KC x 768 block of
// B in L2 swept panel by panel with one A panel, as gemm.cpp's inner loops do; and the FMA peak
// (28 independent chains in registers). Build: g++ -O3 -std=c++17 -mavx512f -mavx512vl -mavx512dq -mfma.
#include <immintrin.h>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

template <int R, int V, bool Masked, int PF>
__attribute__((noinline)) void kern(long kc, const float* a, const float* b, float* c, long ldc) {
  constexpr int NR = 16 * V;
  __m512 acc[R][V];
  __mmask16 m = 0xFFFF;
  for (int i = 0; i < R; ++i)
    for (int v = 0; v < V; ++v) acc[i][v] = _mm512_setzero_ps();
  for (long k = 0; k < kc; ++k) {
    __m512 bv[V];
#pragma GCC unroll 8
    for (int v = 0; v < V; ++v)
      bv[v] = Masked ? _mm512_maskz_loadu_ps(m, b + 16 * v) : _mm512_loadu_ps(b + 16 * v);
    if (PF) {
#pragma GCC unroll 8
      for (int v = 0; v < V; ++v) _mm_prefetch((const char*)(b + PF * NR + 16 * v), _MM_HINT_T0);
    }
#pragma GCC unroll 32
    for (int i = 0; i < R; ++i) {
      const __m512 ai = _mm512_set1_ps(a[i]);
#pragma GCC unroll 8
      for (int v = 0; v < V; ++v) acc[i][v] = _mm512_fmadd_ps(ai, bv[v], acc[i][v]);
    }
    a += R;
    b += NR;
  }
  for (int i = 0; i < R; ++i)
    for (int v = 0; v < V; ++v) _mm512_storeu_ps(c + i * ldc + 16 * v, acc[i][v]);
}

__attribute__((noinline)) float peak(long n) {
  __m512 acc[28];
  for (int i = 0; i < 28; ++i) acc[i] = _mm512_set1_ps(0.001f * i);
  const __m512 x = _mm512_set1_ps(0.9999f), y = _mm512_set1_ps(1e-7f);
  for (long k = 0; k < n; ++k)
#pragma GCC unroll 28
    for (int i = 0; i < 28; ++i) acc[i] = _mm512_fmadd_ps(acc[i], x, y);
  __m512 s = acc[0];
  for (int i = 1; i < 28; ++i) s = _mm512_add_ps(s, acc[i]);
  return _mm512_reduce_add_ps(s);
}

using clk = std::chrono::steady_clock;
double secs(clk::time_point t0) { return std::chrono::duration<double>(clk::now() - t0).count(); }

template <int R, int V, bool Masked, int PF>
void run(const char* name, double min_s) {
  constexpr int NR = 16 * V;
  const long KC = 256, NB = 768 / NR * NR;  // B block KC x NB (~768 KiB), in whole panels
  std::vector<float> A(R * KC), B(KC * NB), C(R * NB);
  for (auto& x : A) x = (rand() % 100) * 0.01f;
  for (auto& x : B) x = (rand() % 100) * 0.01f;
  double best1 = 0, best2 = 0;
  for (int pass = 0; pass < 2; ++pass) {
    const long panels = pass == 0 ? 1 : NB / NR;
    double total = 0;
    long reps = 64;
    while (total < min_s) {
      auto t0 = clk::now();
      for (long r = 0; r < reps; ++r)
        for (long p = 0; p < panels; ++p) kern<R, V, Masked, PF>(KC, A.data(), B.data() + p * KC * NR, C.data() + p * NR, NB);
      const double dt = secs(t0);
      const double gf = 2.0 * R * NR * KC * panels * reps / dt / 1e9;
      (pass == 0 ? best1 : best2) = std::max(pass == 0 ? best1 : best2, gf);
      total += dt;
    }
  }
  std::printf("%-12s L1 %7.1f  L2-block %7.1f GFLOP/s\n", name, best1, best2);
}

int main(int argc, char** argv) {
  const double min_s = argc > 1 ? atof(argv[1]) : 0.2;
  {
    double best = 0;
    for (int r = 0; r < 5; ++r) {
      auto t0 = clk::now();
      volatile float s = peak(2000000);
      (void)s;
      best = std::max(best, 2.0 * 16 * 28 * 2000000 / secs(t0) / 1e9);
    }
    std::printf("%-12s %7.1f GFLOP/s\n", "peak", best);
  }
  run<14, 2, true, 0>("14x32 mask", min_s);
  run<14, 2, false, 0>("14x32", min_s);
  run<14, 2, false, 8>("14x32 pf8", min_s);
  run<12, 2, false, 0>("12x32", min_s);
  run<9, 3, false, 0>("9x48", min_s);
  run<8, 3, false, 0>("8x48", min_s);
  run<7, 4, false, 0>("7x64", min_s);
  run<6, 4, false, 0>("6x64", min_s);
  run<4, 6, false, 0>("4x96", min_s);
  run<14, 2, true, 0>("14x32 mask", min_s);
}
