// Times sgemm (not a test): GFLOP/s for square sizes and the shapes a small CNN produces, on
// 1 thread, on the whole OpenMP team, and as sgemm's own rule runs them (team or one thread:
// gemm.cpp, plan_team; its measured costs are printed first).
// Usage: time_gemm [min_seconds_per_shape] [shape...], a shape as NN|NT|TN|TT,M,N,K (e.g.
// NN,128,196,1153); given shapes replace the default list.
// HC_TIME_KERNEL=avx512|avx2|generic times that micro-kernel instead of the one chosen for this
// CPU (where the CPU runs it).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>

#include "../../core/src/gemm_kernels.h"
#include "heterocnn/gemm.h"
#ifdef _OPENMP
#include <omp.h>
#endif

using hc::Trans;

namespace {

struct Shape {
  const char* what;
  Trans ta, tb;
  int64_t M, N, K;
};

// Best GFLOP/s over repeated calls, running for at least min_s seconds in all.
double gflops(const Shape& s, double min_s) {
  const int64_t lda = s.ta == Trans::N ? s.K : s.M, ldb = s.tb == Trans::N ? s.N : s.K;
  std::vector<float> A(s.M * s.K), B(s.K * s.N), C(s.M * s.N);
  std::mt19937 rng(1);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  for (float& x : A) x = u(rng);
  for (float& x : B) x = u(rng);
  using clock = std::chrono::steady_clock;
  const double flops = 2.0 * s.M * s.N * s.K;
  double best = 1e30, total = 0;
  int64_t reps = 1;
  while (total < min_s) {
    const auto t0 = clock::now();
    for (int64_t r = 0; r < reps; ++r)
      hc::sgemm(s.ta, s.tb, s.M, s.N, s.K, 1.0f, A.data(), lda, B.data(), ldb, 0.0f, C.data(), s.N);
    const double dt = std::chrono::duration<double>(clock::now() - t0).count();
    best = std::min(best, dt / reps);
    total += dt;
    if (dt < 0.01) reps *= 2;  // batch tiny problems so the clock resolves them
  }
  return flops / best / 1e9;
}

}  // namespace

int main(int argc, char** argv) {
  const double min_s = argc > 1 ? std::atof(argv[1]) : 0.3;
  std::vector<Shape> shapes;
  for (int64_t n : {128, 256, 384, 512, 768, 1024, 1536, 2048})
    shapes.push_back({"square", Trans::N, Trans::N, n, n, n});
  shapes.push_back({"conv1 fwd", Trans::N, Trans::N, 6, 784, 25});
  shapes.push_back({"conv2 fwd", Trans::N, Trans::N, 16, 100, 150});
  shapes.push_back({"linear x*W^T", Trans::N, Trans::T, 64, 256, 784});
  shapes.push_back({"TN", Trans::T, Trans::N, 256, 784, 64});
  shapes.push_back({"TN small", Trans::T, Trans::N, 150, 100, 16});
  if (argc > 2) shapes.clear();
  for (int i = 2; i < argc; ++i) {
    char ta = 0, tb = 0;
    long long M = 0, N = 0, K = 0;
    if (std::sscanf(argv[i], "%c%c,%lld,%lld,%lld", &ta, &tb, &M, &N, &K) != 5) return 2;
    shapes.push_back({"given", ta == 'T' ? Trans::T : Trans::N, tb == 'T' ? Trans::T : Trans::N,
                      M, N, K});
  }

  if (const char* k = std::getenv("HC_TIME_KERNEL"); k && !hc::gemm::force_kernel(k)) {
    std::fprintf(stderr, "HC_TIME_KERNEL=%s: no such kernel, or this CPU cannot run it\n", k);
    return 2;
  }
  int team = 1;
#ifdef _OPENMP
  team = omp_get_max_threads();
#endif
  std::printf("kernel %s; GFLOP/s, best of repeated calls\n", hc::sgemm_kernel_name());
  if (team > 1) {
    const auto [unit_s, overhead_s] = hc::gemm::team_costs_measured(team);
    std::printf("team of %d measured: one thread %.2f ps per unit of block cost, team overhead "
                "%.2f us\n", team, unit_s * 1e12, overhead_s * 1e6);
  }
  std::printf("%-14s %2s%2s %6s %6s %6s %9s %9s %9s\n", "shape", "", "", "M", "N", "K",
              "1 thread", team > 1 ? "team" : "", team > 1 ? "rule" : "");
  for (const Shape& s : shapes) {
#ifdef _OPENMP
    omp_set_num_threads(1);
#endif
    const double one = gflops(s, min_s);
    double all = 0, rule = 0;
#ifdef _OPENMP
    omp_set_num_threads(team);
    if (team > 1) {
      hc::gemm::force_team(1);
      all = gflops(s, min_s);
      hc::gemm::force_team(-1);
      rule = gflops(s, min_s);
    }
#endif
    std::printf("%-14s %2s%2s %6lld %6lld %6lld %9.1f", s.what, s.ta == Trans::T ? "T" : "N",
                s.tb == Trans::T ? "T" : "N", (long long)s.M, (long long)s.N, (long long)s.K, one);
    if (team > 1) std::printf(" %9.1f %9.1f (%d threads)", all, rule, team);
    std::printf("\n");
  }
}
