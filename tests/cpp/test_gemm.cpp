// sgemm against a naive double-precision triple loop: every (ta, tb), odd sizes on every edge
// of the kernel tiles and cache blocks, padded leading dimensions, alpha/beta (beta == 0 with a
// NaN-poisoned C), K == 0, outside and inside an OpenMP parallel region, with every kernel this
// CPU can run.
#include <cmath>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "../../core/src/gemm_kernels.h"
#include "check.h"
#include "heterocnn/gemm.h"
#ifdef _OPENMP
#include <omp.h>
#endif

using hc::Trans;

namespace {

struct Case {
  Trans ta, tb;
  int64_t M, N, K;
  float alpha, beta;
  int64_t pad;  // extra elements per row of A, B and C (leading dimension > width)
};

std::string describe(const Case& c) {
  return std::string("ta=") + (c.ta == Trans::T ? "T" : "N") + " tb=" + (c.tb == Trans::T ? "T" : "N") +
         " M=" + std::to_string(c.M) + " N=" + std::to_string(c.N) + " K=" + std::to_string(c.K) +
         " alpha=" + std::to_string(c.alpha) + " beta=" + std::to_string(c.beta) +
         " pad=" + std::to_string(c.pad) + " kernel=" + hc::sgemm_kernel_name();
}

// Runs one case on fresh random inputs and returns the number of wrong elements of C.
int64_t run_case(const Case& c, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  const int64_t a_rows = c.ta == Trans::N ? c.M : c.K, a_cols = c.ta == Trans::N ? c.K : c.M;
  const int64_t b_rows = c.tb == Trans::N ? c.K : c.N, b_cols = c.tb == Trans::N ? c.N : c.K;
  const int64_t lda = a_cols + c.pad, ldb = b_cols + c.pad, ldc = c.N + c.pad;
  std::vector<float> A(a_rows * lda), B(b_rows * ldb), C(c.M * ldc);
  for (float& x : A) x = u(rng);
  for (float& x : B) x = u(rng);
  const float poison = std::numeric_limits<float>::quiet_NaN();
  for (float& x : C) x = c.beta == 0.0f ? poison : u(rng);
  const std::vector<float> C0 = C;

  hc::sgemm(c.ta, c.tb, c.M, c.N, c.K, c.alpha, A.data(), lda, B.data(), ldb, c.beta, C.data(), ldc);

  auto a = [&](int64_t i, int64_t k) { return c.ta == Trans::N ? A[i * lda + k] : A[k * lda + i]; };
  auto b = [&](int64_t k, int64_t j) { return c.tb == Trans::N ? B[k * ldb + j] : B[j * ldb + k]; };
  // float32 accumulation of K products has a worst-case error of about K * u * sum |a*b|
  // (u = 2^-24, Higham's gamma_K), plus a few roundings for alpha and beta: the tolerance is
  // (K + 4) * u times the magnitudes involved, which a wrong or missing term would exceed.
  const double u32 = std::ldexp(1.0, -24);
  int64_t wrong = 0;
  for (int64_t i = 0; i < c.M; ++i)
    for (int64_t j = 0; j < c.N; ++j) {
      double sum = 0, mag = 0;
      for (int64_t k = 0; k < c.K; ++k) {
        sum += (double)a(i, k) * b(k, j);
        mag += std::fabs((double)a(i, k) * b(k, j));
      }
      const double old = c.beta == 0.0f ? 0.0 : C0[i * ldc + j];
      const double want = c.alpha * sum + c.beta * old;
      const double tol = (c.K + 4) * u32 * (std::fabs(c.alpha) * mag + std::fabs(c.beta * old)) + 1e-30;
      if (!(std::fabs(C[i * ldc + j] - want) <= tol)) ++wrong;
    }
  // Padding between rows of C must be untouched.
  for (int64_t i = 0; i < c.M; ++i)
    for (int64_t j = c.N; j < ldc; ++j)
      if (!(C[i * ldc + j] == C0[i * ldc + j] || (std::isnan(C[i * ldc + j]) && std::isnan(C0[i * ldc + j]))))
        ++wrong;
  return wrong;
}

void check_case(const Case& c, uint32_t seed) {
  const int64_t wrong = run_case(c, seed);
  CHECK_MSG(wrong == 0, describe(c) + ": " + std::to_string(wrong) + " wrong elements");
}

const int64_t kSizes[][3] = {
    {1, 1, 1},     {1, 3, 7},      {3, 1, 17},     {7, 17, 1},    {17, 33, 65},  {33, 65, 3},
    {65, 7, 127},  {127, 130, 33}, {130, 127, 17}, {14, 32, 256}, {15, 33, 257}, {28, 64, 513},
    {257, 130, 513}, {513, 65, 130}, {65, 513, 257}, {3, 4133, 7}, {2053, 17, 300}, {337, 257, 127},
    {127, 257, 65},   {32, 56, 32},   {30, 40, 9},   {8, 19, 33},
};
const Trans kTrans[] = {Trans::N, Trans::T};

// Every size, every (ta, tb), with padded and unpadded rows and several alpha/beta.
void check_all_shapes() {
  uint32_t seed = 1;
  for (const auto& s : kSizes)
    for (Trans ta : kTrans)
      for (Trans tb : kTrans) {
        check_case({ta, tb, s[0], s[1], s[2], 1.0f, 0.0f, 0}, seed++);
        check_case({ta, tb, s[0], s[1], s[2], -0.75f, 0.5f, 5}, seed++);
        check_case({ta, tb, s[0], s[1], s[2], 2.0f, 1.0f, 3}, seed++);
      }
}

// Runs f with each kernel this CPU supports forced, then restores the automatic choice.
template <class F>
void for_each_kernel(F f) {
  int ran = 0;
  for (const char* name : {"avx512", "avx2", "generic"}) {
    if (!hc::gemm::force_kernel(name)) continue;
    CHECK(std::string(hc::sgemm_kernel_name()) == name);
    f();
    ++ran;
  }
  hc::gemm::force_kernel(nullptr);
  CHECK(ran >= 1);
}

}  // namespace

TEST(kernel_name_is_known) {
  const std::string name = hc::sgemm_kernel_name();
  CHECK(name == "avx512" || name == "avx2" || name == "generic");
  CHECK(hc::gemm::force_kernel("generic"));
  CHECK(!hc::gemm::force_kernel("no-such-kernel"));
  hc::gemm::force_kernel(nullptr);
  CHECK(hc::sgemm_kernel_name() == name);
}

TEST(all_shapes_every_kernel) { for_each_kernel(check_all_shapes); }

// Every kernel's packing against the layout it promises (gemm_kernels.h: panel q holds
// x[r0 + q*W + i][k0 + k] at dst[q*W*kc + k*W + i]), both ways of storing x, panels full and
// narrower, kc below, at and past the 16-k blocks of the AVX-512 transposing pack.
TEST(packing_gives_the_panel_layout) {
  const char* names[] = {"avx512", "avx2", "generic"};
  const hc::gemm::Kernel* kernels[] = {&hc::gemm::kAvx512, &hc::gemm::kAvx2, &hc::gemm::kGeneric};
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  int checked = 0;
  for (int kn = 0; kn < 3; ++kn) {
    if (!hc::gemm::force_kernel(names[kn])) continue;
    const hc::gemm::Kernel& kr = *kernels[kn];
    for (int side = 0; side < 2; ++side) {
      const int W = side == 0 ? kr.mr : kr.nr;
      const hc::gemm::PackFn pack = side == 0 ? kr.pack_a : kr.pack_b;
      for (bool trans : {false, true})
        for (int64_t rows : {int64_t{1}, int64_t{W - 1}, int64_t{W}, int64_t{2 * W + 3}})
          for (int64_t kc : {1, 7, 16, 17, 31, 256, 257}) {
            const int64_t r0 = 2, k0 = 3, pad = 5;
            const int64_t n_rows = r0 + rows, n_k = k0 + kc;  // x is (n_rows, n_k) viewed by rows
            const int64_t ld = (trans ? n_rows : n_k) + pad;
            std::vector<float> store((trans ? n_k : n_rows) * ld);
            for (float& v : store) v = u(rng);
            const hc::gemm::Operand x{store.data(), ld, trans};
            auto at = [&](int64_t r, int64_t k) {
              return trans ? store[k * ld + r] : store[r * ld + k];
            };
            const int64_t panels = (rows + W - 1) / W;
            std::vector<float> dst(panels * W * kc, std::numeric_limits<float>::quiet_NaN());
            pack(x, r0, rows, k0, kc, dst.data());
            int64_t wrong = 0;
            for (int64_t r = 0; r < rows; ++r)
              for (int64_t k = 0; k < kc; ++k)
                wrong += !(dst[r / W * W * kc + k * W + r % W] == at(r0 + r, k0 + k));
            CHECK_MSG(wrong == 0, std::string(names[kn]) + (side ? " pack_b" : " pack_a") +
                                      (trans ? " trans" : "") + " rows=" + std::to_string(rows) +
                                      " kc=" + std::to_string(kc) + ": " +
                                      std::to_string(wrong) + " wrong");
            ++checked;
          }
    }
  }
  hc::gemm::force_kernel(nullptr);
  CHECK(checked > 0);
}

TEST(k_zero_scales_c) {
  for (Trans ta : kTrans)
    for (Trans tb : kTrans) {
      check_case({ta, tb, 7, 33, 0, 1.0f, 0.0f, 2}, 11);  // C = 0 although C held NaN
      check_case({ta, tb, 7, 33, 0, 1.0f, -1.5f, 2}, 12);
    }
  // alpha == 0 is the same case: A and B do not matter, C = beta * C.
  check_case({Trans::N, Trans::T, 17, 5, 9, 0.0f, 0.25f, 1}, 13);
}

TEST(cnn_shapes) {
  check_case({Trans::N, Trans::N, 6, 784, 25, 1.0f, 0.0f, 0}, 21);
  check_case({Trans::N, Trans::N, 16, 100, 150, 1.0f, 0.0f, 0}, 22);
  check_case({Trans::N, Trans::T, 64, 256, 784, 1.0f, 0.0f, 0}, 23);
  check_case({Trans::T, Trans::N, 256, 784, 64, 1.0f, 1.0f, 0}, 24);
  check_case({Trans::T, Trans::N, 150, 100, 16, 1.0f, 0.0f, 0}, 25);
}

// A team gives C to the bit as one thread does (so whether sgemm's rule puts a product on the
// team changes nothing but its time): grids of 1 x T and T x 1 blocks of C (2 and 3
// threads), 2 x 2, 2 x 3 and 3 x 3 (4, 6, 9), operands packed and read in place (the smallest),
// one cache block or several; odd sizes, beta 0 and not, with every kernel. (A Linear layer's
// results then do not depend on the thread count.)
TEST(team_equals_one_thread_to_the_bit) {
#ifdef _OPENMP
  const int before = omp_get_max_threads();
  const Case cases[] = {{Trans::N, Trans::T, 256, 256, 784, 1.0f, 1.0f, 0},
                        {Trans::T, Trans::N, 257, 783, 255, 1.0f, 0.0f, 3},
                        {Trans::N, Trans::N, 131, 250, 129, -0.5f, 0.5f, 1},
                        {Trans::T, Trans::T, 200, 77, 601, 1.0f, 0.0f, 0},
                        {Trans::N, Trans::N, 1800, 300, 256, 1.0f, 0.0f, 0},
                        {Trans::N, Trans::T, 40, 60, 700, 1.0f, 0.0f, 0},
                        {Trans::N, Trans::T, 64, 128, 256, 1.0f, 0.0f, 0},   // idle threads
                        {Trans::T, Trans::N, 30, 50, 9, 1.0f, 0.5f, 2}};      // tiny
  hc::gemm::force_team(1);  // every product on the team, however small
  for_each_kernel([&] {
    uint32_t seed = 300;
    for (const Case& c : cases) {
      std::mt19937 rng(seed++);
      std::uniform_real_distribution<float> u(-1.0f, 1.0f);
      const int64_t lda = (c.ta == Trans::N ? c.K : c.M) + c.pad;
      const int64_t ldb = (c.tb == Trans::N ? c.N : c.K) + c.pad, ldc = c.N + c.pad;
      std::vector<float> A((c.ta == Trans::N ? c.M : c.K) * lda);
      std::vector<float> B((c.tb == Trans::N ? c.K : c.N) * ldb), C0(c.M * ldc);
      for (float& x : A) x = u(rng);
      for (float& x : B) x = u(rng);
      for (float& x : C0) x = u(rng);
      auto run = [&](int threads) {
        omp_set_num_threads(threads);
        std::vector<float> C = C0;
        hc::sgemm(c.ta, c.tb, c.M, c.N, c.K, c.alpha, A.data(), lda, B.data(), ldb, c.beta,
                  C.data(), ldc);
        return C;
      };
      const std::vector<float> one = run(1);
      for (int threads : {2, 3, 4, 6, 9, 16})
        CHECK_MSG(run(threads) == one, describe(c) + " on " + std::to_string(threads) +
                                           " threads differs from one thread");
    }
  });
  hc::gemm::force_team(-1);
  omp_set_num_threads(before);
#endif
}

// Inside a parallel region every thread runs its own sgemm serially; results must not mix.
TEST(inside_parallel_region) {
  for_each_kernel([] {
    int64_t wrong = 0;
#ifdef _OPENMP
#pragma omp parallel for reduction(+ : wrong) schedule(dynamic)
#endif
    for (int t = 0; t < 16; ++t) {
      const Trans ta = kTrans[t % 2], tb = kTrans[t / 2 % 2];
      const auto& s = kSizes[7 + t % 9];
      wrong += run_case({ta, tb, s[0], s[1], s[2], 1.5f, t % 3 ? 0.0f : -1.0f, t % 4}, 100 + t);
    }
    CHECK_MSG(wrong == 0, std::to_string(wrong) + " wrong elements");
  });
}

TEST_MAIN()
