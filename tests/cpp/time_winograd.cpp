// Times Winograd F(2x2, 3x3)'s passes (not a test): forward and weight_grad whole, and the
// same blocks' 16 GEMMs alone (sgemm on the scratch matrices, blocked as the pass blocks them),
// so that the rest of a pass -- its transforms -- is the difference. Each thread of the OpenMP
// team runs its own copy at once, on its own samples, as conv2d.cpp's passes split a batch; a
// pass's time is the slowest thread's. The input gradient is a forward pass of the layer with
// C and M swapped (padding 2 - 1 = 1): give it as its own layer.
// Usage: time_winograd [min_seconds] [samples_per_thread] [layer...], a layer as C,M,H (square
// planes, padding 1); default: the 3 x 3 layers of convnet and bnnet.
// Prints us a pass, the GEMMs' us and GFLOP/s, the transforms' us and share, the pass's
// GFLOP/s counted as direct convolution flops (2 M C 9 Ho Wo a sample, as time_layers counts),
// and the GEMMs' us with every operand packed (gemm::force_in_place(0)) rather than read in
// place where sgemm's rule reads them so.

#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>

#include "../../core/src/conv_winograd.h"
#include "../../core/src/gemm_kernels.h"
#include "heterocnn/im2col.h"

namespace cw = hc::conv_winograd;
namespace {

struct Layer {
  int64_t C, M, H;
};

// One thread's buffers for a layer, filled with random values.
struct Work {
  std::vector<float> x, U, y, dy, dU, scratch;
  Work(const hc::ConvGeom& g, int64_t M, int64_t count, unsigned seed)
      : x(count * g.C * g.H * g.W), U(cw::transformed_size(M, g.C)),
        y(count * M * g.Ho * g.Wo), dy(y.size()), dU(U.size()),
        scratch(cw::scratch_size(g, M)) {
    std::mt19937 rng(seed);
    std::uniform_real_distribution<float> u(-1.f, 1.f);
    for (auto* v : {&x, &U, &dy, &scratch})
      for (float& f : *v) f = u(rng);
  }
};

// The GEMMs of one pass over `count` samples, block by block as forward (or weight_grad)
// runs them, on the scratch's matrices as they are: only the transforms are left out.
void gemms(const hc::ConvGeom& g, int64_t M, int64_t count, bool dw, Work& w) {
  const cw::Tiling t = cw::tiling(g, M, !dw);
  float* V = w.scratch.data();
  float* P = V + 16 * t.plane(g.C);
  for (int64_t r0 = 0, total = count * t.TH; r0 < total; r0 += t.rows) {
    const int64_t T = std::min(t.rows, total - r0) * t.TW;
    if (dw)
      cw::weight_grad_gemms(g, t, M, T, P, V, w.dU.data());
    else
      cw::forward_gemms(g, t, M, T, w.U.data(), V, P);
  }
}

// Multiply-adds x 2 of the GEMMs of one pass over `count` samples.
double gemm_flops(const hc::ConvGeom& g, int64_t M, int64_t count) {
  return 2.0 * 16 * M * g.C * double(count * ((g.Ho + 1) / 2) * ((g.Wo + 1) / 2));
}

// Least seconds of f(thread's work) run by every thread at once, over at least min_s.
template <class F>
double best_seconds(std::vector<Work>& works, double min_s, F&& f) {
  using clock = std::chrono::steady_clock;
  double best = 1e30, total = 0;
  while (total < min_s || best == 1e30) {
    const auto t0 = clock::now();
#pragma omp parallel
    f(works[omp_get_thread_num()]);
    const double dt = std::chrono::duration<double>(clock::now() - t0).count();
    best = std::min(best, dt);
    total += dt;
  }
  return best;
}

}  // namespace

int main(int argc, char** argv) {
  const double min_s = argc > 1 ? std::atof(argv[1]) : 0.3;
  const int64_t count = argc > 2 ? std::atoll(argv[2]) : 32;
  std::vector<Layer> layers = {{32, 32, 28}, {32, 64, 14}, {64, 64, 14},
                               {64, 128, 7}, {128, 128, 7}};
  if (argc > 3) layers.clear();
  for (int i = 3; i < argc; ++i) {
    long long C = 0, M = 0, H = 0;
    if (std::sscanf(argv[i], "%lld,%lld,%lld", &C, &M, &H) != 3 || C < 1 || M < 1 || H < 3) {
      std::fprintf(stderr, "time_winograd: a layer is C,M,H (e.g. 32,64,14), not %s\n", argv[i]);
      return 2;
    }
    layers.push_back({C, M, H});
  }
  const int team = omp_get_max_threads();
  std::printf("%d thread(s), %lld samples each; us a pass (slowest thread), best of repeats\n",
              team, (long long)count);
  std::printf("%-13s %-4s %9s %9s %7s %9s %6s %9s %9s\n", "C->M HxH", "pass", "whole", "gemms",
              "GF/s", "transf.", "share", "direct", "packed");
  for (const Layer& l : layers) {
    const hc::ConvGeom g = hc::make_conv_geom(l.C, l.H, l.H, 3, 1, 1);
    std::vector<Work> works;
    for (int t = 0; t < team; ++t) works.emplace_back(g, l.M, count, 1 + t);
    const double direct = 2.0 * l.M * l.C * 9 * g.Ho * g.Wo * count * team;
    for (bool dw : {false, true}) {
      const double whole = best_seconds(works, min_s, [&](Work& w) {
        if (dw)
          cw::weight_grad(g, l.M, count, w.x.data(), w.dy.data(), w.dU.data(), w.scratch.data());
        else
          cw::forward(g, l.M, count, w.x.data(), w.U.data(), nullptr, w.y.data(), false,
                      w.scratch.data());
      });
      const double gemm =
          best_seconds(works, min_s, [&](Work& w) { gemms(g, l.M, count, dw, w); });
      hc::gemm::force_in_place(0);
      const double packed =
          best_seconds(works, min_s, [&](Work& w) { gemms(g, l.M, count, dw, w); });
      hc::gemm::force_in_place(-1);
      char name[32];
      std::snprintf(name, sizeof name, "%lld->%lld %lldx%lld", (long long)l.C, (long long)l.M,
                    (long long)l.H, (long long)l.H);
      std::printf("%-13s %-4s %9.1f %9.1f %7.1f %9.1f %5.0f%% %9.1f %9.1f\n", name,
                  dw ? "dw" : "fwd", whole * 1e6, gemm * 1e6,
                  gemm_flops(g, l.M, count) * team / gemm / 1e9, (whole - gemm) * 1e6,
                  100 * (whole - gemm) / whole, direct / whole / 1e9, packed * 1e6);
    }
  }
}
