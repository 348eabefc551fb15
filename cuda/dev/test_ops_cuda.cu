#include <algorithm>
// Every CUDA op against the core's CPU op on fresh random inputs and odd shapes.
// Forward outputs must match to ||gpu-cpu||/||cpu|| <= 1e-5, gradients to <= 1e-4. GPU outputs
// are poisoned with NaN before each run, so an unwritten element fails. Build and run with
// cuda/dev/build_and_run.sh.
#include <cuda_runtime.h>

#include <cmath>
#include <cstdio>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "../src/check.h"
#include "../src/ops_cuda.h"
#include "heterocnn/activation.h"
#include "heterocnn/conv2d.h"
#include "../src/conv_gemm_cuda.h"
#include "heterocnn/gemm.h"
#include "heterocnn/linear.h"
#include "heterocnn/loss.h"
#include "heterocnn/maxpool2d.h"
#include "heterocnn/parallel.h"
#include "heterocnn/sgd.h"

using namespace hc;
using Vec = std::vector<float>;

namespace {

std::mt19937 rng(12345);
int passed = 0, failed = 0;

Vec randv(size_t n, float lo = -1.f, float hi = 1.f) {
  std::uniform_real_distribution<float> d(lo, hi);
  Vec v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

// Device buffer of floats (or any POD), freed on scope exit.
template <class T>
struct Dev {
  T* p = nullptr;
  size_t n = 0;
  explicit Dev(size_t n_) : n(n_) {
    HC_CUDA_CHECK_BYTES(cudaMalloc(&p, std::max<size_t>(1, n) * sizeof(T)), n * sizeof(T));
    poison();
  }
  Dev(const std::vector<T>& h) : Dev(h.size()) {
    HC_CUDA_CHECK(cudaMemcpy(p, h.data(), n * sizeof(T), cudaMemcpyHostToDevice));
  }
  ~Dev() { cudaFree(p); }
  void poison() { HC_CUDA_CHECK(cudaMemset(p, 0xFF, std::max<size_t>(1, n) * sizeof(T))); }
  std::vector<T> get() const {
    HC_CUDA_CHECK(cudaDeviceSynchronize());
    std::vector<T> h(n);
    HC_CUDA_CHECK(cudaMemcpy(h.data(), p, n * sizeof(T), cudaMemcpyDeviceToHost));
    return h;
  }
  Dev(const Dev&) = delete;
  Dev& operator=(const Dev&) = delete;
};

double rel_err(const Vec& a, const Vec& b) {
  if (a.size() != b.size()) return INFINITY;
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    const double d = double(a[i]) - double(b[i]);
    num += d * d;
    den += double(b[i]) * double(b[i]);
  }
  if (std::isnan(num)) return NAN;
  return den > 0 ? std::sqrt(num / den) : std::sqrt(num);
}

// The backward of a ReLU whose output x is, applied to dx: x > 0 ? dx : 0 (what the
// backward ops fold into their dx with relu_mask).
Vec masked(const Vec& dx, const Vec& x) {
  Vec out(dx.size());
  for (size_t i = 0; i < dx.size(); ++i) out[i] = x[i] > 0.f ? dx[i] : 0.f;
  return out;
}

// One named check: every (gpu, cpu, tol) pair must pass.
struct Check {
  std::string name;
  double worst = 0;
  bool ok = true;
  std::string detail;
  void cmp(const char* what, const Vec& gpu, const Vec& cpu, double tol) {
    const double e = rel_err(gpu, cpu);
    if (!(e <= tol)) {
      ok = false;
      detail += std::string(" ") + what + "=" + std::to_string(e);
    }
    if (!(e <= worst)) worst = e;
  }
  void expect(const char* what, bool cond) {
    if (!cond) {
      ok = false;
      detail += std::string(" ") + what;
    }
  }
  ~Check() {
    std::printf("%s %-60s max rel err %.2e%s\n", ok ? "PASS" : "FAIL", name.c_str(), worst,
                detail.c_str());
    (ok ? passed : failed)++;
  }
};

void run_case(const std::string& name, const std::function<void(Check&)>& fn) {
  Check c{name};
  try {
    fn(c);
  } catch (const std::exception& e) {
    c.ok = false;
    c.detail += std::string(" exception: ") + e.what();
  }
}

void test_gemm(Trans ta, Trans tb, int64_t M, int64_t N, int64_t K, float alpha, float beta,
               int offset, bool splitk) {
  char name[160];
  std::snprintf(name, sizeof name, "sgemm%s %c%c %ldx%ldx%ld a=%.1f b=%.1f off=%d",
                splitk ? "_splitk" : "", ta == Trans::N ? 'N' : 'T', tb == Trans::N ? 'N' : 'T',
                (long)M, (long)N, (long)K, alpha, beta, offset);
  run_case(name, [&](Check& c) {
    const int64_t lda = (ta == Trans::N ? K : M) + offset, ldb = (tb == Trans::N ? N : K) + offset,
                  ldc = N + offset;
    const int64_t ar = ta == Trans::N ? M : K, br = tb == Trans::N ? K : N;
    Vec A = randv(ar * lda + offset), B = randv(br * ldb + offset), C = randv(M * ldc + offset);
    Vec Cc = C;
    sgemm(ta, tb, M, N, K, alpha, A.data() + offset, lda, B.data() + offset, ldb, beta,
          Cc.data() + offset, ldc);
    Dev<float> dA(A), dB(B), dC(C);
    if (beta == 0.f) {  // C must not be read: poison it (keeping the untouched padding equal)
      Vec Cp = C;
      for (int64_t i = 0; i < M; ++i)
        for (int64_t j = 0; j < N; ++j) Cp[offset + i * ldc + j] = NAN;
      HC_CUDA_CHECK(cudaMemcpy(dC.p, Cp.data(), Cp.size() * 4, cudaMemcpyHostToDevice));
    }
    if (splitk) {
      const int s = 5;
      Dev<float> ws(sgemm_splitk_workspace(M, N, s) + 1);
      sgemm_splitk_cuda(ta, tb, M, N, K, alpha, dA.p + offset, lda, dB.p + offset, ldb, beta,
                        dC.p + offset, ldc, s, ws.p, GemmEpilogue{}, 0);
      c.cmp("C", dC.get(), Cc, 1e-5);
    } else {
      sgemm_cuda(ta, tb, M, N, K, alpha, dA.p + offset, lda, dB.p + offset, ldb, beta,
                 dC.p + offset, ldc, 0);
      c.cmp("C", dC.get(), Cc, 1e-5);
    }
  });
}

void test_gemm_epilogue(int64_t M, int64_t N, int64_t K, BiasMode mode, bool relu) {
  char name[160];
  std::snprintf(name, sizeof name, "sgemm_epilogue NT %ldx%ldx%ld bias=%s relu=%d", (long)M,
                (long)N, (long)K, mode == BiasMode::PerRow ? "row" : "col", relu);
  run_case(name, [&](Check& c) {
    Vec A = randv(M * K), B = randv(N * K), bias = randv(mode == BiasMode::PerRow ? M : N);
    Vec C(M * N);
    for (int64_t i = 0; i < M; ++i)
      for (int64_t j = 0; j < N; ++j) C[i * N + j] = bias[mode == BiasMode::PerRow ? i : j];
    sgemm(Trans::N, Trans::T, M, N, K, 1.f, A.data(), K, B.data(), K, 1.f, C.data(), N);
    if (relu) relu_forward_cpu(M * N, C.data(), C.data());
    Dev<float> dA(A), dB(B), db(bias), dC(M * N);
    GemmEpilogue ep;
    ep.bias = db.p;
    ep.bias_mode = mode;
    ep.relu = relu;
    sgemm_epilogue_cuda(Trans::N, Trans::T, M, N, K, 1.f, dA.p, K, dB.p, K, 0.f, dC.p, N, ep, 0);
    c.cmp("C", dC.get(), C, 1e-5);
  });
}

void test_im2col(int64_t N, int64_t C, int64_t H, int64_t W, int64_t K, int64_t s, int64_t p) {
  const ConvGeom g = make_conv_geom(C, H, W, K, s, p);
  char name[160];
  std::snprintf(name, sizeof name, "im2col/col2im N=%ld C=%ld %ldx%ld K=%ld s=%ld p=%ld", (long)N,
                (long)C, (long)H, (long)W, (long)K, (long)s, (long)p);
  run_case(name, [&](Check& c) {
    const int64_t in = C * H * W, rows = g.col_rows(), hw = g.col_cols();
    Vec x = randv(N * in), col_cpu(rows * N * hw), dcol = randv(rows * N * hw), dx_cpu(N * in);
    Vec one(rows * hw);
    for (int64_t n = 0; n < N; ++n) {
      im2col_cpu(g, x.data() + n * in, one.data());
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t q = 0; q < hw; ++q) col_cpu[r * N * hw + n * hw + q] = one[r * hw + q];
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t q = 0; q < hw; ++q) one[r * hw + q] = dcol[r * N * hw + n * hw + q];
      col2im_cpu(g, one.data(), dx_cpu.data() + n * in);
    }
    Dev<float> dx(x), dc(rows * N * hw), ddcol(dcol), ddx(N * in);
    im2col_cuda(g, N, dx.p, dc.p, 0);
    col2im_cuda(g, N, ddcol.p, ddx.p, 0);
    c.cmp("col", dc.get(), col_cpu, 0.0);
    c.cmp("dx", ddx.get(), dx_cpu, 1e-6);
  });
}

void test_conv(int64_t N, int64_t C, int64_t H, int64_t W, int64_t M, int64_t K, int64_t s,
               int64_t p, bool with_dx) {
  const ConvGeom g = make_conv_geom(C, H, W, K, s, p);
  char name[160];
  std::snprintf(name, sizeof name, "conv2d N=%ld C=%ld %ldx%ld M=%ld K=%ld s=%ld p=%ld%s",
                (long)N, (long)C, (long)H, (long)W, (long)M, (long)K, (long)s, (long)p,
                with_dx ? "" : " (no dx)");
  run_case(name, [&](Check& c) {
    const int64_t in = C * H * W, out = M * g.Ho * g.Wo, wn = M * C * K * K;
    Vec x = randv(N * in), w = randv(wn), b = randv(M), dy = randv(N * out);
    const int T = max_threads();
    Vec ws(std::max(conv2d_forward_workspace_cpu(g, M, T), conv2d_backward_workspace_cpu(g, M, T)) + 1);
    Vec y(N * out), dx(N * in), dw(wn), db(M), yr(N * out);
    conv2d_forward_cpu(g, N, M, x.data(), w.data(), b.data(), y.data(), ws.data());
    conv2d_backward_cpu(g, N, M, x.data(), w.data(), dy.data(), with_dx ? dx.data() : nullptr,
                        dw.data(), db.data(), ws.data());
    relu_forward_cpu(N * out, y.data(), yr.data());
    Dev<float> dX(x), dW(w), dB(b), dDY(dy), dY(N * out), dYr(N * out), dDX(N * in), dDW(wn),
        dDB(M);
    Dev<float> fws(conv2d_forward_workspace_cuda(g, N, M)),
        bws(conv2d_backward_workspace_cuda(g, N, M));
    conv2d_forward_cuda(g, N, M, dX.p, dW.p, dB.p, dY.p, fws.p, 0);
    conv2d_relu_forward_cuda(g, N, M, dX.p, dW.p, dB.p, dYr.p, fws.p, 0);
    conv2d_backward_cuda(g, N, M, dX.p, dW.p, dDY.p, with_dx ? dDX.p : nullptr, dDW.p, dDB.p,
                         bws.p, false, 0);
    c.cmp("y", dY.get(), y, 1e-5);
    c.cmp("relu(y)", dYr.get(), yr, 1e-5);
    if (with_dx) c.cmp("dx", dDX.get(), dx, 1e-4);
    c.cmp("dw", dDW.get(), dw, 1e-4);
    c.cmp("db", dDB.get(), db, 1e-4);
    if (!with_dx) return;
    dDX.poison();
    conv2d_backward_cuda(g, N, M, dX.p, dW.p, dDY.p, dDX.p, dDW.p, dDB.p, bws.p, true, 0);
    c.cmp("masked dx", dDX.get(), masked(dx, x), 1e-4);
  });
}

void test_linear(int64_t N, int64_t I, int64_t O, bool with_dx) {
  char name[160];
  std::snprintf(name, sizeof name, "linear N=%ld I=%ld O=%ld%s", (long)N, (long)I, (long)O,
                with_dx ? "" : " (no dx)");
  run_case(name, [&](Check& c) {
    Vec x = randv(N * I), w = randv(O * I), b = randv(O), dy = randv(N * O);
    Vec y(N * O), yr(N * O), dx(N * I), dw(O * I), db(O);
    linear_forward_cpu(N, I, O, x.data(), w.data(), b.data(), y.data());
    relu_forward_cpu(N * O, y.data(), yr.data());
    linear_backward_cpu(N, I, O, x.data(), w.data(), dy.data(), with_dx ? dx.data() : nullptr,
                        dw.data(), db.data());
    Dev<float> dX(x), dW(w), dB(b), dDY(dy), dY(N * O), dYr(N * O), dDX(N * I), dDW(O * I),
        dDB(O);
    Dev<float> fws(linear_forward_workspace_cuda(N, I, O));
    linear_forward_cuda(N, I, O, dX.p, dW.p, dB.p, dY.p, fws.p, 0);  // split-K where it pays
    linear_relu_forward_cuda(N, I, O, dX.p, dW.p, dB.p, dYr.p, nullptr, 0);  // no workspace
    linear_backward_cuda(N, I, O, dX.p, dW.p, dDY.p, with_dx ? dDX.p : nullptr, dDW.p, dDB.p,
                         false, 0);
    c.cmp("y", dY.get(), y, 1e-5);
    c.cmp("relu(y)", dYr.get(), yr, 1e-5);
    if (with_dx) c.cmp("dx", dDX.get(), dx, 1e-4);
    c.cmp("dw", dDW.get(), dw, 1e-4);
    c.cmp("db", dDB.get(), db, 1e-4);
    if (!with_dx) return;
    dDX.poison();
    linear_backward_cuda(N, I, O, dX.p, dW.p, dDY.p, dDX.p, dDW.p, dDB.p, true, 0);
    c.cmp("masked dx", dDX.get(), masked(dx, x), 1e-4);
  });
}

void test_maxpool(int64_t P, int64_t H, int64_t W, int64_t K, int64_t s, bool ties) {
  char name[160];
  std::snprintf(name, sizeof name, "maxpool2d P=%ld %ldx%ld K=%ld s=%ld%s", (long)P, (long)H,
                (long)W, (long)K, (long)s, ties ? " (ties)" : "");
  run_case(name, [&](Check& c) {
    const int64_t Ho = (H - K) / s + 1, Wo = (W - K) / s + 1;
    Vec x = randv(P * H * W), dy = randv(P * Ho * Wo), y(P * Ho * Wo), dx(P * H * W);
    if (ties)
      for (auto& v : x) v = std::round(v * 2.f);  // few distinct values: many equal maxima
    maxpool2d_forward_cpu(P, H, W, K, s, x.data(), y.data());
    maxpool2d_backward_cpu(P, H, W, K, s, x.data(), dy.data(), dx.data());
    Dev<float> dX(x), dDY(dy), dY(P * Ho * Wo), dDX(P * H * W);
    maxpool2d_forward_cuda(P, H, W, K, s, dX.p, dY.p, 0);
    maxpool2d_backward_cuda(P, H, W, K, s, dX.p, dDY.p, dDX.p, false, 0);
    c.cmp("y", dY.get(), y, 0.0);
    c.cmp("dx", dDX.get(), dx, 1e-6);
    dDX.poison();
    maxpool2d_backward_cuda(P, H, W, K, s, dX.p, dDY.p, dDX.p, true, 0);
    c.cmp("masked dx", dDX.get(), masked(dx, x), 1e-6);
  });
}

void test_activations(int64_t n) {
  run_case("relu/sigmoid n=" + std::to_string(n), [&](Check& c) {
    Vec x = randv(n, -4.f, 4.f), dy = randv(n), yr(n), dxr(n), ys(n), dxs(n);
    relu_forward_cpu(n, x.data(), yr.data());
    relu_backward_cpu(n, yr.data(), dy.data(), dxr.data());
    sigmoid_forward_cpu(n, x.data(), ys.data());
    sigmoid_backward_cpu(n, ys.data(), dy.data(), dxs.data());
    Dev<float> dX(x), dDY(dy), dYr(n), dDXr(n), dYs(n), dDXs(n);
    relu_forward_cuda(n, dX.p, dYr.p, 0);
    relu_backward_cuda(n, dYr.p, dDY.p, dDXr.p, 0);
    sigmoid_forward_cuda(n, dX.p, dYs.p, 0);
    Dev<float> dYsCpu(ys);  // backward from the same y on both sides
    sigmoid_backward_cuda(n, dYsCpu.p, dDY.p, dDXs.p, 0);
    c.cmp("relu y", dYr.get(), yr, 1e-5);
    c.cmp("relu dx", dDXr.get(), dxr, 1e-4);
    c.cmp("sigmoid y", dYs.get(), ys, 1e-5);
    c.cmp("sigmoid dx", dDXs.get(), dxs, 1e-4);
  });
}

void test_softmax_ce(int64_t N, int64_t K, bool grad, float smoothing = 0.f) {
  run_case("softmax_cross_entropy N=" + std::to_string(N) + " K=" + std::to_string(K) +
               " smoothing=" + std::to_string(smoothing) + (grad ? "" : " (no grad)"),
           [&](Check& c) {
             Vec z = randv(N * K, -5.f, 5.f), dz(N * K);
             std::vector<int64_t> lab(N);
             for (auto& l : lab) l = std::uniform_int_distribution<int64_t>(0, K - 1)(rng);
             const LossResult r = softmax_cross_entropy_cpu(
                 N, K, z.data(), lab.data(), grad ? dz.data() : nullptr, 1.f, smoothing);
             Dev<float> dZ(z), dDZ(N * K);
             Dev<int64_t> dL(lab);
             Dev<LossResult> dR(1);
             softmax_cross_entropy_cuda(N, K, dZ.p, dL.p, grad ? dDZ.p : nullptr, dR.p, 1.f,
                                        smoothing, 0);
             const LossResult g = dR.get()[0];
             c.cmp("loss", Vec{float(g.loss)}, Vec{float(r.loss)}, 1e-5);
             c.expect("correct", g.correct == r.correct);
             if (grad) c.cmp("dlogits", dDZ.get(), dz, 1e-4);
           });
}

void test_bce(int64_t N) {
  run_case("sigmoid_bce N=" + std::to_string(N), [&](Check& c) {
    Vec z = randv(N, -6.f, 6.f), dz(N);
    std::vector<int64_t> lab(N);
    for (auto& l : lab) l = std::uniform_int_distribution<int64_t>(0, 1)(rng);
    const LossResult r = sigmoid_bce_cpu(N, z.data(), lab.data(), dz.data());
    Dev<float> dZ(z), dDZ(N);
    Dev<int64_t> dL(lab);
    Dev<LossResult> dR(1);
    sigmoid_bce_cuda(N, dZ.p, dL.p, dDZ.p, dR.p, 1.f, 0);
    const LossResult g = dR.get()[0];
    c.cmp("loss", Vec{float(g.loss)}, Vec{float(r.loss)}, 1e-5);
    c.expect("correct", g.correct == r.correct);
    c.cmp("dlogits", dDZ.get(), dz, 1e-4);
  });
}

void test_sgd(float mu, float wd, int offset = 0, float dampening = 0.f, bool nesterov = false) {
  char name[160];
  std::snprintf(name, sizeof name, "sgd_update 4 spans mu=%.2f wd=%.3f off=%d damp=%.2f%s", mu,
                wd, offset, dampening, nesterov ? " nesterov" : "");
  run_case(name, [&](Check& c) {
    const std::vector<int64_t> sizes{1, 150, 7, 30001};
    SgdConfig cfg;
    cfg.lr = 0.05f;
    cfg.momentum = mu;
    cfg.weight_decay = wd;
    cfg.dampening = dampening;
    cfg.nesterov = nesterov;
    std::vector<Vec> p, g, v;
    for (auto n : sizes) {
      p.push_back(randv(n));
      g.push_back(randv(n));
      v.push_back(randv(n));
    }
    std::vector<std::unique_ptr<Dev<float>>> dp, dg, dv;
    for (size_t i = 0; i < sizes.size(); ++i) {
      dp.emplace_back(new Dev<float>(p[i]));
      dg.emplace_back(new Dev<float>(g[i]));
      dv.emplace_back(new Dev<float>(v[i]));
    }
    Dev<SgdConfig> dcfg(std::vector<SgdConfig>{cfg});
    for (int step = 0; step < 3; ++step) {
      for (size_t i = 0; i < sizes.size(); ++i) {
        sgd_update_cpu(sizes[i] - offset, p[i].data() + offset, g[i].data() + offset,
                       v[i].data() + offset, cfg);
        sgd_update_cuda(sizes[i] - offset, dp[i]->p + offset, dg[i]->p + offset,
                        dv[i]->p + offset, dcfg.p, 0);
      }
    }
    for (size_t i = 0; i < sizes.size(); ++i) {
      c.cmp("p", dp[i]->get(), p[i], 1e-5);
      if (mu != 0.f) c.cmp("v", dv[i]->get(), v[i], 1e-5);
    }
  });
}

void test_adam(bool decoupled, float wd, int offset = 0) {
  char name[160];
  std::snprintf(name, sizeof name, "adam_update 4 spans %s wd=%.3f off=%d",
                decoupled ? "AdamW" : "Adam", wd, offset);
  run_case(name, [&](Check& c) {
    const std::vector<int64_t> sizes{1, 150, 7, 30001};
    AdamConfig cfg;
    cfg.lr = 0.01f;
    cfg.weight_decay = wd;
    cfg.decoupled = decoupled;
    std::vector<Vec> p, g, m, v;
    for (auto n : sizes) {
      p.push_back(randv(n));
      g.push_back(randv(n));
      m.push_back(Vec(n, 0.f));
      v.push_back(Vec(n, 0.f));
    }
    std::vector<std::unique_ptr<Dev<float>>> dp, dg, dm, dv;
    for (size_t i = 0; i < sizes.size(); ++i) {
      dp.emplace_back(new Dev<float>(p[i]));
      dg.emplace_back(new Dev<float>(g[i]));
      dm.emplace_back(new Dev<float>(m[i]));
      dv.emplace_back(new Dev<float>(v[i]));
    }
    for (int t = 1; t <= 3; ++t) {  // the step's coefficients from device memory, per step
      const AdamStep step = adam_step(cfg, t);
      Dev<AdamStep> dstep(std::vector<AdamStep>{step});
      for (size_t i = 0; i < sizes.size(); ++i) {
        adam_update_cpu(sizes[i] - offset, p[i].data() + offset, g[i].data() + offset,
                        m[i].data() + offset, v[i].data() + offset, step);
        adam_update_cuda(sizes[i] - offset, dp[i]->p + offset, dg[i]->p + offset,
                         dm[i]->p + offset, dv[i]->p + offset, dstep.p, 0);
      }
      HC_CUDA_CHECK(cudaDeviceSynchronize());
    }
    for (size_t i = 0; i < sizes.size(); ++i) {
      c.cmp("p", dp[i]->get(), p[i], 1e-5);
      c.cmp("exp_avg", dm[i]->get(), m[i], 1e-5);
      c.cmp("exp_avg_sq", dv[i]->get(), v[i], 1e-5);
    }
  });
}

void test_errors() {
  run_case("errors: bad sizes and OOM raise hc::Error", [&](Check& c) {
    bool thrown = false;
    try {
      sgemm_cuda(Trans::N, Trans::N, 4, 4, 4, 1.f, nullptr, 2, nullptr, 4, 0.f, nullptr, 4, 0);
    } catch (const Error& e) {
      thrown = e.kind() == ErrorKind::Value;
    }
    c.expect("lda<K not rejected", thrown);
    thrown = false;
    try {
      float* p = nullptr;
      const size_t huge = size_t(1) << 50;
      HC_CUDA_CHECK_BYTES(cudaMalloc(&p, huge), huge);
    } catch (const Error& e) {
      thrown = e.kind() == ErrorKind::OutOfMemory;
      std::printf("     (OOM message: %s)\n", e.what());
    }
    c.expect("OOM not reported", thrown);
  });
}

}  // namespace

// --time: the conv layers of convnet and bnnet at batch 256, each pass (fwd+ReLU, dw+db, dx) of
// the shipped kernels timed alone with CUDA events (median of 5 runs of 20 launches).
void time_convs() {
  struct L { int C, M, H; bool dx; } layers[] = {{1, 32, 28, false}, {32, 32, 28, true},
                                                   {32, 64, 14, true}, {64, 64, 14, true},
                                                   {64, 128, 7, true}, {128, 128, 7, true}};
  const int64_t N = 256;
  cudaEvent_t e0, e1;
  HC_CUDA_CHECK(cudaEventCreate(&e0));
  HC_CUDA_CHECK(cudaEventCreate(&e1));
  auto time_us = [&](const std::function<void()>& f) {
    for (int i = 0; i < 5; ++i) f();
    std::vector<float> t;
    for (int r = 0; r < 5; ++r) {
      HC_CUDA_CHECK(cudaEventRecord(e0));
      for (int i = 0; i < 20; ++i) f();
      HC_CUDA_CHECK(cudaEventRecord(e1));
      HC_CUDA_CHECK(cudaEventSynchronize(e1));
      float ms;
      HC_CUDA_CHECK(cudaEventElapsedTime(&ms, e0, e1));
      t.push_back(1e3f * ms / 20);
    }
    std::sort(t.begin(), t.end());
    return t[2];
  };
  std::printf("%-22s %8s %8s %8s %8s\n", "layer (batch 256)", "fwd us", "dw us", "dx us",
              "total");
  for (const L& l : layers) {
    const ConvGeom g = make_conv_geom(l.C, l.H, l.H, 3, 1, 1);
    const int64_t in = l.C * l.H * l.H, out = l.M * l.H * l.H, wn = l.M * l.C * 9;
    Dev<float> dX(randv(N * in)), dW(randv(wn)), dB(randv(l.M)), dDY(randv(N * out)),
        dY(N * out), dDX(N * in), dDW(wn), dDB(l.M);
    Dev<float> ws(std::max(conv2d_implicit_wgrad_workspace(g, N, l.M),
                           conv2d_implicit_dgrad_workspace(g, l.M)));
    const float f = time_us([&] {
      conv2d_relu_forward_cuda(g, N, l.M, dX.p, dW.p, dB.p, dY.p, nullptr, 0);
    });
    const float w = time_us([&] {
      conv2d_implicit_wgrad_cuda(g, N, l.M, dX.p, dDY.p, dDW.p, dDB.p, ws.p, 0);
    });
    const float x = l.dx ? time_us([&] {
      conv2d_implicit_dgrad_cuda(g, N, l.M, dW.p, dDY.p, nullptr, dDX.p, ws.p, 0);
    }) : 0.f;
    char name[40];
    std::snprintf(name, sizeof name, "%d->%d %dx%d", l.C, l.M, l.H, l.H);
    std::printf("%-22s %8.1f %8.1f %8.1f %8.1f\n", name, f, w, x, f + w + x);
  }
}

int main(int argc, char** argv) {
  if (argc > 1 && std::string(argv[1]) == "--time") {
    time_convs();
    return 0;
  }
  int dev = 0;
  cudaDeviceProp prop;
  HC_CUDA_CHECK(cudaGetDevice(&dev));
  HC_CUDA_CHECK(cudaGetDeviceProperties(&prop, dev));
  std::printf("device: %s (sm_%d%d), CPU sgemm kernel: %s\n", prop.name, prop.major, prop.minor,
              sgemm_kernel_name());
  const int64_t sizes[][3] = {{1, 1, 1}, {17, 33, 65}, {127, 129, 257}, {6, 784, 25},
                              {64, 256, 784}, {16, 3000, 150}, {300, 260, 70},
                              {32, 1000, 77},  {200, 700, 33},
                              // more than 2 * 132 tiles: one warp group per tile (KS = 1);
                              // the sizes above have fewer, and two (gemm_tile.cuh), or are
                              // small enough for one thread per output (gemm.cu: 1, 17, 6 x..)
                              {1100, 1100, 40}, {30, 34000, 20}};
  for (auto ta : {Trans::N, Trans::T})
    for (auto tb : {Trans::N, Trans::T})
      for (auto& s : sizes) {
        test_gemm(ta, tb, s[0], s[1], s[2], 1.f, 0.f, 0, false);
        test_gemm(ta, tb, s[0], s[1], s[2], 0.7f, -1.3f, 1, false);  // misaligned, beta != 0
      }
  test_gemm(Trans::N, Trans::N, 5, 7, 0, 1.f, 0.5f, 0, false);  // K == 0: C = beta*C
  for (auto ta : {Trans::N, Trans::T})
    for (auto tb : {Trans::N, Trans::T}) {
      test_gemm(ta, tb, 37, 150, 3001, 1.f, 0.f, 0, true);
      test_gemm(ta, tb, 37, 151, 3001, 0.5f, 2.f, 1, true);
      test_gemm(ta, tb, 37, 150, 700, 1.f, 0.f, 0, true);  // slices small enough for one
      test_gemm(ta, tb, 37, 151, 699, 0.5f, 2.f, 1, true);  // thread per output, a short last
    }
  test_gemm_epilogue(33, 70, 45, BiasMode::PerRow, true);
  test_gemm_epilogue(200, 301, 45, BiasMode::PerCol, false);
  test_gemm_epilogue(7, 10, 84, BiasMode::PerCol, true);

  test_im2col(1, 3, 7, 9, 3, 2, 2);
  test_im2col(3, 5, 11, 8, 4, 1, 0);
  test_im2col(3, 3, 10, 13, 5, 3, 1);
  test_conv(1, 3, 7, 9, 5, 3, 2, 2, true);
  test_conv(3, 5, 11, 8, 4, 4, 1, 0, true);
  test_conv(3, 3, 6, 5, 5, 1, 1, 0, true);   // 1x1: the image is its own im2col matrix
  test_conv(3, 5, 13, 10, 7, 5, 2, 1, true);
  test_conv(3, 1, 28, 28, 6, 5, 1, 2, false);  // LeNet's first layer, first-layer (no dx)
  test_conv(3, 6, 14, 14, 16, 5, 1, 0, true);
  test_conv(5, 32, 14, 14, 64, 3, 1, 1, true);
  test_conv(1, 5, 9, 7, 3, 3, 2, 2, true);
  test_conv(3, 5, 12, 9, 32, 3, 2, 1, true);
  test_conv(2, 3, 17, 15, 130, 3, 1, 1, true);
  test_conv(4, 32, 28, 28, 32, 3, 1, 1, true);   // convnet's second layer
  test_conv(6, 5, 7, 9, 8, 3, 1, 1, true);       // Ho*Wo odd: GEMM columns cross images
  test_conv(64, 8, 14, 14, 16, 3, 1, 1, true);   // many dw slices
  test_conv(2, 3, 5, 6, 4, 3, 1, 3, true);       // pad >= K: dx through col2im
  test_conv(9, 1, 28, 28, 32, 3, 1, 1, false);  // convnet's first layer: the small dw kernel
  test_conv(5, 2, 9, 7, 20, 2, 1, 1, false);    // small dw kernel, M < 32, Ho*Wo odd
  test_conv(1, 1, 13, 12, 5, 3, 2, 0, false);   // small dw kernel: batch 1, stride 2, pad 0
  test_conv(3, 15, 6, 5, 7, 1, 1, 0, true);     // small dw kernel: CKK + 1 = 16 exactly
  test_conv(70, 1, 28, 28, 32, 3, 1, 1, false); // small dw kernel: many slices
  test_conv(3, 16, 9, 7, 48, 3, 1, 1, true);    // 64-row 8x8 forward tile, M < 64, odd Ho*Wo
  test_conv(7, 64, 14, 14, 64, 3, 1, 1, true);  // convnet's last conv layer
  // Enough columns (>= 2 * 132 tiles of 128) for the wide forward/dx tiles on a 132-SM GPU;
  // the cases above, with fewer, take 64 x 32 tiles (32 < M <= 64) or two warp groups a tile.
  test_conv(176, 32, 14, 14, 64, 3, 1, 1, true);  // 64 x 128 of 8x8 (fwd), 32 x 128 (dx)
  test_conv(44, 16, 28, 28, 32, 3, 1, 1, true);   // 32 x 128 (fwd), 16 x 128 (dx, 16 rows)
  test_conv(2, 7, 9, 11, 27, 3, 1, 1, true);      // M and C not multiples of 4, few columns
  test_conv(120, 64, 14, 14, 64, 3, 1, 1, true);  // dw's 64 x 96 tile (>= 528 blocks)
  test_linear(1, 7, 5, true);
  test_linear(3, 33, 10, true);
  test_linear(3, 400, 120, false);
  test_linear(64, 784, 129, true);
  test_linear(64, 784, 256, true);
  test_linear(1000, 37, 70, true);  // db: many rows per column-sum thread, a partial block
  test_maxpool(15, 7, 9, 2, 2, false);
  test_maxpool(15, 8, 11, 3, 2, false);
  test_maxpool(3, 10, 7, 3, 3, false);
  test_maxpool(5, 9, 9, 2, 1, true);
  test_maxpool(6, 28, 28, 2, 2, true);   // convnet's pools (tiled windows, K = 2)
  test_maxpool(7, 11, 13, 2, 2, false);  // tiled, a last row and column past the windows
  test_maxpool(4, 11, 10, 3, 3, true);   // tiled, K = 3 at run time, uncovered pixels
  test_maxpool(1, 3, 3, 3, 3, false);    // one window
  test_activations(1);
  test_activations(100003);
  test_softmax_ce(1, 10, true);
  test_softmax_ce(3, 37, true);
  test_softmax_ce(257, 10, true);
  test_softmax_ce(1000, 100, false);
  test_softmax_ce(2049, 32, true);   // one thread per sample, more samples than threads
  test_softmax_ce(5, 1, true);
  test_softmax_ce(13, 7, true, 0.1f);    // label smoothing: one thread per sample
  test_softmax_ce(33, 41, true, 0.37f);  // and one warp per sample
  test_softmax_ce(9, 40, true, 1.f);
  test_bce(1);
  test_bce(3);
  test_bce(1001);
  test_sgd(0.f, 0.f);
  test_sgd(0.9f, 0.001f);
  test_sgd(0.9f, 0.f, 1);  // unaligned tensors: the scalar loop alone
  test_sgd(0.9f, 0.001f, 0, 0.f, true);
  test_sgd(0.8f, 0.f, 1, 0.3f);
  test_adam(false, 0.f);
  test_adam(false, 0.01f);
  test_adam(true, 0.05f, 1);  // unaligned
  test_errors();
  std::printf("%d passed, %d failed\n", passed, failed);
  return failed == 0 ? 0 : 1;
}
