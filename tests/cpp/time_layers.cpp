// Times the CPU ops of the benchmark nets' layers (not a test): forward and backward of each
// Conv2d, MaxPool2d and Linear of the nets, and bnnet's BatchNorm2d (training, with its ReLU)
// and global average pooling, at one batch size, best of repeated calls
// (the minimum is what a shared machine's noise least disturbs), with GFLOP/s for the GEMM
// layers. Times are CPU time of the process (all threads), so that other work on a shared
// machine counts less; with one thread that is the op's own time. HC_TIME_WALL=1 times wall
// seconds instead (with many threads the process's CPU time undercounts the other threads' short
// calls: Linux adds their running time at its ticks).
// Usage: time_layers [batch=64] [min_seconds_per_op=0.2] [conv path: auto|gemm|direct|winograd]
//        [nets=lenet5,convnet,mlp,bnnet; also c32: 32 -> 32 at 14 x 14 and 7 x 7];
//        HC_TIME_DW=1 also times each conv's dw alone, HC_CONV_GROUP=s forces the GEMM path's
//        samples per GEMM, HC_TIME_WALL=1 times wall seconds.
#include <algorithm>
#include <ctime>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "heterocnn/avgpool2d.h"
#include "heterocnn/batchnorm.h"
#include "heterocnn/conv2d.h"
#include "heterocnn/linear.h"
#include "heterocnn/maxpool2d.h"
#include "heterocnn/parallel.h"

namespace {

std::vector<float> random_floats(size_t n, unsigned seed) {
  std::vector<float> v(n);
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  for (float& x : v) x = u(rng);
  return v;
}

// CPU time of the whole process (every thread), or wall time with HC_TIME_WALL=1, in seconds.
bool wall_clock() {
  static const bool wall = getenv("HC_TIME_WALL") && std::string(getenv("HC_TIME_WALL")) == "1";
  return wall;
}

double cpu_seconds() {
  timespec t;
  clock_gettime(wall_clock() ? CLOCK_MONOTONIC : CLOCK_PROCESS_CPUTIME_ID, &t);
  return t.tv_sec + 1e-9 * t.tv_nsec;
}

// Best CPU seconds per call of f over repeated calls, running for at least min_s in all.
double best_time(const std::function<void()>& f, double min_s) {
  f();  // warm-up: first-touch and pack buffers
  double best = 1e30, total = 0;
  int reps = 1;
  while (total < min_s) {
    const double t0 = cpu_seconds();
    for (int r = 0; r < reps; ++r) f();
    const double dt = cpu_seconds() - t0;
    best = std::min(best, dt / reps);
    total += dt;
    if (dt < 0.002) reps *= 2;
  }
  return best;
}

void report(const std::string& what, double fwd_s, double bwd_s, double fwd_flops,
            double bwd_flops) {
  std::printf("%-28s fwd %8.1f us", what.c_str(), fwd_s * 1e6);
  if (fwd_flops > 0) std::printf(" (%5.1f GF/s)", fwd_flops / fwd_s / 1e9);
  else std::printf("              ");
  std::printf("   bwd %8.1f us", bwd_s * 1e6);
  if (bwd_flops > 0) std::printf(" (%5.1f GF/s)", bwd_flops / bwd_s / 1e9);
  std::printf("\n");
}

void time_conv(const char* name, int64_t N, int64_t C, int64_t H, int64_t M, int64_t K,
               int64_t pad, bool first, double min_s) {
  const hc::ConvGeom g = hc::make_conv_geom(C, H, H, K, 1, pad);
  const int threads = hc::max_threads();
  auto x = random_floats(N * C * H * H, 1), w = random_floats(M * C * K * K, 2),
       b = random_floats(M, 3), dy = random_floats(N * M * g.Ho * g.Wo, 4);
  std::vector<float> y(dy.size()), dx(x.size()), dw(w.size()), db(M);
  std::vector<float> ws(std::max(hc::conv2d_forward_workspace_cpu(g, M, threads),
                                 hc::conv2d_backward_workspace_cpu(g, M, threads)) + 1);
  const double f = best_time([&] {
    hc::conv2d_forward_cpu(g, N, M, x.data(), w.data(), b.data(), y.data(), ws.data());
  }, min_s);
  const double bw = best_time([&] {
    hc::conv2d_backward_cpu(g, N, M, x.data(), w.data(), dy.data(), first ? nullptr : dx.data(),
                            dw.data(), db.data(), ws.data());
  }, min_s);
  const double gemm = 2.0 * N * M * g.col_rows() * g.col_cols();
  report(std::string(name) + (first ? " (no dx)" : ""), f, bw, gemm, gemm * (first ? 1 : 2));
  if (first || !getenv("HC_TIME_DW")) return;
  const double dwt = best_time([&] {
    hc::conv2d_backward_cpu(g, N, M, x.data(), w.data(), dy.data(), nullptr, dw.data(),
                            db.data(), ws.data());
  }, min_s);
  std::printf("%-28s   dw %8.1f us (%5.1f GF/s)   dx %8.1f us (%5.1f GF/s)\n", "", dwt * 1e6,
              gemm / dwt / 1e9, (bw - dwt) * 1e6, gemm / (bw - dwt) / 1e9);
}

void time_pool(const char* name, int64_t N, int64_t C, int64_t H, double min_s) {
  auto x = random_floats(N * C * H * H, 1), dy = random_floats(N * C * (H / 2) * (H / 2), 2);
  std::vector<float> y(dy.size()), dx(x.size());
  const double f = best_time([&] {
    hc::maxpool2d_forward_cpu(N * C, H, H, 2, 2, x.data(), y.data());
  }, min_s);
  const double bw = best_time([&] {
    hc::maxpool2d_backward_cpu(N * C, H, H, 2, 2, x.data(), dy.data(), dx.data());
  }, min_s);
  report(name, f, bw, 0, 0);
}

// BatchNorm2d(C) in training with its ReLU fused, as bnnet runs it: batch statistics forward,
// dx, dweight and dbias backward.
void time_batchnorm(const char* name, int64_t N, int64_t C, int64_t H, double min_s) {
  const int64_t S = H * H;
  auto x = random_floats(N * C * S, 1), dy = random_floats(N * C * S, 2);
  std::vector<float> weight(C, 1.0f), bias(C, 0.0f), mean(C, 0.0f), var(C, 1.0f), stats(2 * C);
  std::vector<float> y(x.size()), dx(x.size()), dw(C), db(C);
  std::vector<float> ws(hc::batchnorm_workspace_cpu(N, C, S) + 1);
  int64_t tracked = 0;
  const hc::BatchNormArgs a{N, C, S, 1e-5, 0.1, false, true, true};
  const double f = best_time([&] {
    hc::batchnorm_forward_cpu(a, x.data(), weight.data(), bias.data(), mean.data(), var.data(),
                              &tracked, stats.data(), y.data(), ws.data());
  }, min_s);
  const double bw = best_time([&] {
    hc::batchnorm_backward_cpu(a, x.data(), weight.data(), stats.data(), dy.data(), dx.data(),
                               dw.data(), db.data(), ws.data());
  }, min_s);
  report(name, f, bw, 0, 0);
}

// AdaptiveAvgPool2d(1) over (N, C, H, H).
void time_global_avgpool(const char* name, int64_t N, int64_t C, int64_t H, double min_s) {
  auto x = random_floats(N * C * H * H, 1), dy = random_floats(N * C, 2);
  std::vector<float> y(dy.size()), dx(x.size());
  const double f = best_time([&] {
    hc::adaptive_avgpool2d_forward_cpu(N * C, H, H, 1, x.data(), y.data());
  }, min_s);
  const double bw = best_time([&] {
    hc::adaptive_avgpool2d_backward_cpu(N * C, H, H, 1, x.data(), dy.data(), dx.data());
  }, min_s);
  report(name, f, bw, 0, 0);
}

void time_linear(const char* name, int64_t N, int64_t I, int64_t O, bool first, double min_s) {
  auto x = random_floats(N * I, 1), w = random_floats(O * I, 2), b = random_floats(O, 3),
       dy = random_floats(N * O, 4);
  std::vector<float> y(N * O), dx(x.size()), dw(w.size()), db(O);
  const double f = best_time([&] {
    hc::linear_forward_cpu(N, I, O, x.data(), w.data(), b.data(), y.data());
  }, min_s);
  const double bw = best_time([&] {
    hc::linear_backward_cpu(N, I, O, x.data(), w.data(), dy.data(), first ? nullptr : dx.data(),
                            dw.data(), db.data());
  }, min_s);
  const double gemm = 2.0 * N * I * O;
  report(std::string(name) + (first ? " (no dx)" : ""), f, bw, gemm, gemm * (first ? 1 : 2));
}

}  // namespace

int main(int argc, char** argv) {
  const int64_t N = argc > 1 ? std::atoll(argv[1]) : 64;
  const double min_s = argc > 2 ? std::atof(argv[2]) : 0.2;
  const std::string path = argc > 3 ? argv[3] : "auto";
  hc::conv2d_force_path(path == "gemm"       ? hc::ConvPath::Gemm
                        : path == "direct"   ? hc::ConvPath::Direct
                        : path == "winograd" ? hc::ConvPath::Winograd
                                             : hc::ConvPath::Auto);
  if (const char* group = getenv("HC_CONV_GROUP")) hc::conv2d_force_group(std::atoll(group));
  std::printf("batch %lld, %d threads, conv path %s, best %s time of repeated calls\n",
              (long long)N, hc::max_threads(), path.c_str(), wall_clock() ? "wall" : "CPU");
  const std::string nets = argc > 4 ? argv[4] : "lenet5,convnet,mlp,bnnet";
  auto want = [&](const char* net) { return nets.find(net) != std::string::npos; };
  if (want("bnnet")) {  // its convolutions have no bias; timed with one all the same
    std::printf("bnnet\n");
    time_conv("conv0 1->32 k3 p1 28x28", N, 1, 28, 32, 3, 1, true, min_s);
    time_conv("conv1 32->32 k3 p1 28x28", N, 32, 28, 32, 3, 1, false, min_s);
    time_conv("conv3 32->64 k3 p1 14x14", N, 32, 14, 64, 3, 1, false, min_s);
    time_conv("conv4 64->64 k3 p1 14x14", N, 64, 14, 64, 3, 1, false, min_s);
    time_conv("conv5 64->128 k3 p1 7x7", N, 64, 7, 128, 3, 1, false, min_s);
    time_conv("conv6 128->128 k3 p1 7x7", N, 128, 7, 128, 3, 1, false, min_s);
    time_batchnorm("bn 32x28x28 (+ReLU)", N, 32, 28, min_s);
    time_pool("pool1 32x28x28", N, 32, 28, min_s);
    time_batchnorm("bn 64x14x14 (+ReLU)", N, 64, 14, min_s);
    time_pool("pool2 64x14x14", N, 64, 14, min_s);
    time_batchnorm("bn 128x7x7 (+ReLU)", N, 128, 7, min_s);
    time_pool("pool3 128x7x7", N, 128, 7, min_s);
    time_global_avgpool("gap 128x3x3", N, 128, 3, min_s);
    time_linear("fc 128->10", N, 128, 10, false, min_s);
  }
  if (want("lenet5")) {
    std::printf("lenet5\n");
    time_conv("conv1 1->6 k5 p2 28x28", N, 1, 28, 6, 5, 2, true, min_s);
    time_pool("pool1 6x28x28", N, 6, 28, min_s);
    time_conv("conv2 6->16 k5 14x14", N, 6, 14, 16, 5, 0, false, min_s);
    time_pool("pool2 16x10x10", N, 16, 10, min_s);
    time_linear("fc1 400->120", N, 400, 120, false, min_s);
    time_linear("fc2 120->84", N, 120, 84, false, min_s);
    time_linear("fc3 84->10", N, 84, 10, false, min_s);
  }
  if (want("convnet")) {
    std::printf("convnet\n");
    time_conv("conv1 1->32 k3 p1 28x28", N, 1, 28, 32, 3, 1, true, min_s);
    time_conv("conv2 32->32 k3 p1 28x28", N, 32, 28, 32, 3, 1, false, min_s);
    time_pool("pool1 32x28x28", N, 32, 28, min_s);
    time_conv("conv3 32->64 k3 p1 14x14", N, 32, 14, 64, 3, 1, false, min_s);
    time_conv("conv4 64->64 k3 p1 14x14", N, 64, 14, 64, 3, 1, false, min_s);
    time_pool("pool2 64x14x14", N, 64, 14, min_s);
    time_linear("fc1 3136->256", N, 3136, 256, false, min_s);
    time_linear("fc2 256->10", N, 256, 10, false, min_s);
  }
  if (want("c32")) {  // not a net's: 32 -> 32 convolutions on smaller planes (asked for by name)
    std::printf("c32\n");
    time_conv("32->32 k3 p1 14x14", N, 32, 14, 32, 3, 1, false, min_s);
    time_conv("32->32 k3 p1 7x7", N, 32, 7, 32, 3, 1, false, min_s);
  }
  if (want("mlp")) {
    std::printf("mlp\n");
    time_linear("fc1 784->256 (first)", N, 784, 256, true, min_s);
    time_linear("fc2 256->128", N, 256, 128, false, min_s);
    time_linear("fc3 128->10", N, 128, 10, false, min_s);
  }
}
