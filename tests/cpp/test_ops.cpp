// Unit tests of the core's CPU ops: im2col/col2im adjointness, and small cases worked out by
// hand for each layer, the losses, SGD, and the net's one-call training step.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <vector>

#include "../../core/src/conv_channels_kernels.h"
#include "../../core/src/conv_direct.h"
#include "../../core/src/conv_winograd.h"
#include "../../core/src/cpu_features.h"
#include "../../core/src/maxpool2d_kernels.h"
#include "check.h"
#include "heterocnn/activation.h"
#include "heterocnn/avgpool2d.h"
#include "heterocnn/batchnorm.h"
#include "heterocnn/conv2d.h"
#include "heterocnn/error.h"
#include "heterocnn/im2col.h"
#include "heterocnn/linear.h"
#include "heterocnn/loss.h"
#include "heterocnn/maxpool2d.h"
#include "heterocnn/net.h"
#include "heterocnn/optimizer.h"
#include "heterocnn/parallel.h"
#include "heterocnn/sgd.h"
#include "heterocnn/shape.h"

using namespace hc;

static std::vector<float> randn(size_t n, unsigned seed) {
  std::mt19937 gen(seed);
  std::normal_distribution<float> d;
  std::vector<float> v(n);
  for (float& x : v) x = d(gen);
  return v;
}

static double dot(const std::vector<float>& a, const std::vector<float>& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += static_cast<double>(a[i]) * b[i];
  return s;
}

TEST(im2col_col2im_are_adjoint) {
  // <im2col(x), c> == <x, col2im(c)> for every geometry, padding and stride included.
  const int64_t cases[][6] = {{1, 5, 5, 3, 1, 0}, {3, 7, 6, 3, 2, 1}, {5, 9, 11, 5, 1, 2},
                              {2, 8, 8, 3, 3, 2}, {2, 4, 6, 1, 1, 0}, {4, 10, 7, 4, 2, 0}};
  unsigned seed = 1;
  for (auto& c : cases) {
    const ConvGeom g = make_conv_geom(c[0], c[1], c[2], c[3], c[4], c[5]);
    auto x = randn(g.C * g.H * g.W, seed++);
    auto cm = randn(g.col_rows() * g.col_cols(), seed++);
    std::vector<float> col(cm.size()), back(x.size());
    im2col_cpu(g, x.data(), col.data());
    col2im_cpu(g, cm.data(), back.data());
    const double lhs = dot(col, cm), rhs = dot(x, back);
    CHECK_NEAR(lhs, rhs, 1e-4 * (std::fabs(lhs) + 1));
  }
}

TEST(im2col_by_hand) {
  // x = [[1,2],[3,4]], K=2, pad=1, stride=1 -> 3x3 outputs; row (kh=0,kw=0) reads x[oh-1,ow-1].
  const ConvGeom g = make_conv_geom(1, 2, 2, 2, 1, 1);
  CHECK(g.Ho == 3 && g.Wo == 3);
  const float x[] = {1, 2, 3, 4};
  std::vector<float> col(4 * 9);
  im2col_cpu(g, x, col.data());
  const float row0[] = {0, 0, 0, 0, 1, 2, 0, 3, 4};
  const float row3[] = {1, 2, 0, 3, 4, 0, 0, 0, 0};  // (kh=1,kw=1) reads x[oh, ow]
  for (int i = 0; i < 9; ++i) {
    CHECK(col[i] == row0[i]);
    CHECK(col[27 + i] == row3[i]);
  }
}

TEST(conv2d_by_hand) {
  // One 3x3 image, a 2x2 kernel of ones, bias 0.5: each output is its window's sum + 0.5.
  const ConvGeom g = make_conv_geom(1, 3, 3, 2, 1, 0);
  const float x[] = {1, 2, 3, 4, 5, 6, 7, 8, 9}, w[] = {1, 1, 1, 1}, b[] = {0.5f};
  std::vector<float> y(4), ws(std::max(conv2d_forward_workspace_cpu(g, 1, max_threads()),
                                       conv2d_backward_workspace_cpu(g, 1, max_threads())));
  conv2d_forward_cpu(g, 1, 1, x, w, b, y.data(), ws.data());
  const float want[] = {12.5f, 16.5f, 24.5f, 28.5f};
  for (int i = 0; i < 4; ++i) CHECK_NEAR(y[i], want[i], 1e-6);
  // dy = ones: dw[k] = sum of the inputs each kernel tap saw, db = 4, dx = overlap counts.
  const float dy[] = {1, 1, 1, 1};
  std::vector<float> dx(9), dw(4), db(1);
  conv2d_backward_cpu(g, 1, 1, x, w, dy, dx.data(), dw.data(), db.data(), ws.data());
  const float dw_want[] = {12, 16, 24, 28}, dx_want[] = {1, 2, 1, 2, 4, 2, 1, 2, 1};
  for (int i = 0; i < 4; ++i) CHECK_NEAR(dw[i], dw_want[i], 1e-5);
  for (int i = 0; i < 9; ++i) CHECK_NEAR(dx[i], dx_want[i], 1e-6);
  CHECK_NEAR(db[0], 4, 1e-6);
}

TEST(linear_by_hand) {
  // x (2,3), w (2,3), b (2,): y = x w^T + b
  const float x[] = {1, 2, 3, 4, 5, 6}, w[] = {1, 0, -1, 2, 1, 0}, b[] = {0.5f, -1};
  float y[4];
  linear_forward_cpu(2, 3, 2, x, w, b, y);
  const float want[] = {-1.5f, 3, -1.5f, 12};
  for (int i = 0; i < 4; ++i) CHECK_NEAR(y[i], want[i], 1e-6);
  const float dy[] = {1, 2, 3, 4};
  float dx[6], dw[6], db[2];
  linear_backward_cpu(2, 3, 2, x, w, dy, dx, dw, db);
  const float dx_want[] = {5, 2, -1, 11, 4, -3}, dw_want[] = {13, 17, 21, 18, 24, 30};
  for (int i = 0; i < 6; ++i) {
    CHECK_NEAR(dx[i], dx_want[i], 1e-6);
    CHECK_NEAR(dw[i], dw_want[i], 1e-5);
  }
  CHECK_NEAR(db[0], 4, 1e-6);
  CHECK_NEAR(db[1], 6, 1e-6);
}

TEST(fused_relu_equals_relu_after_the_op) {
  // Linear and Conv2d with the ReLU fused into their output pass give exactly relu(op(x)),
  // NaN included (it passes through, as relu_forward_cpu lets it).
  std::vector<float> x = randn(5 * 37, 1), w = randn(19 * 37, 2), b = randn(19, 3);
  x[7] = NAN;
  std::vector<float> y(5 * 19), yr(5 * 19), want(5 * 19);
  linear_forward_cpu(5, 37, 19, x.data(), w.data(), b.data(), y.data());
  relu_forward_cpu(5 * 19, y.data(), want.data());
  linear_forward_cpu(5, 37, 19, x.data(), w.data(), b.data(), yr.data(), true);
  int same = 0;
  for (size_t i = 0; i < yr.size(); ++i)
    same += std::memcmp(&yr[i], &want[i], sizeof(float)) == 0;
  CHECK(same == (int)yr.size());
  CHECK(std::isnan(yr[0]));  // sample 0 saw the NaN
  for (ConvPath path : {ConvPath::Gemm, ConvPath::Direct})  // the fused ReLU of both paths
  for (int pad : {0, 1}) {
    conv2d_force_path(path);
    for (int k : {1, 3}) {
      const ConvGeom g = make_conv_geom(3, 9, 8, k, 1, k == 1 ? 0 : pad);
      const int64_t N = 4, M = 5, in_n = 3 * 9 * 8, out_n = M * g.Ho * g.Wo;
      std::vector<float> cx = randn(N * in_n, 4), cw = randn(M * 3 * k * k, 5), cb = randn(M, 6);
      cx[in_n + 10] = NAN;
      std::vector<float> ws(conv2d_forward_workspace_cpu(g, M, max_threads()));
      std::vector<float> cy(N * out_n), cyr(N * out_n), cwant(N * out_n);
      conv2d_forward_cpu(g, N, M, cx.data(), cw.data(), cb.data(), cy.data(), ws.data());
      relu_forward_cpu(N * out_n, cy.data(), cwant.data());
      conv2d_forward_cpu(g, N, M, cx.data(), cw.data(), cb.data(), cyr.data(), ws.data(), true);
      CHECK(std::memcmp(cyr.data(), cwant.data(), cyr.size() * sizeof(float)) == 0);
      CHECK(std::any_of(cyr.begin(), cyr.end(), [](float v) { return std::isnan(v); }));
      CHECK(std::any_of(cyr.begin(), cyr.end(), [](float v) { return v == 0.f; }));
    }
  }
  conv2d_force_path(ConvPath::Auto);
}

// The direct kernels' cases, {C, H, W, K, pad, M, N}: odd channel counts, batch 1, non-square
// images, rows of one to four vectors (of 16 or 8 lanes), padding 0 to K-1, sizes the kernel
// does not divide, samples too large for one group of the direct dw; planes run as one row of
// vectors (W == Wo) that leave 0, 1 or 2 vectors after the blocks of 3 or 2 and channel counts
// the blocks do not divide, the largest such plane (1024 positions) and one past it (the row
// kernel); narrow outputs with 8k or 16k channels (vectors of channels: 1 to 12 wide, rows the
// tiles do not divide, padded and not); a dw in several chunks of samples.
static const int64_t kDirectCases[][7] = {
    {1, 28, 28, 5, 2, 6, 3}, {6, 14, 14, 5, 0, 16, 2}, {3, 9, 8, 3, 1, 5, 1},
    {2, 17, 20, 5, 4, 7, 2}, {1, 5, 31, 3, 0, 3, 3},   {5, 30, 19, 3, 2, 9, 2},
    {7, 2, 3, 3, 1, 13, 2},  {3, 6, 32, 5, 1, 4, 1},
    {32, 28, 20, 3, 1, 40, 3},  // dw in several sample groups
    {3, 7, 9, 3, 1, 26, 3},  {3, 8, 10, 3, 1, 13, 2},  {2, 5, 7, 5, 2, 11, 2},
    {9, 14, 14, 3, 1, 30, 2}, {2, 32, 32, 3, 1, 5, 1}, {1, 40, 30, 3, 1, 3, 2},
    {5, 9, 13, 3, 0, 32, 3}, {3, 8, 5, 5, 0, 16, 2},   {2, 7, 14, 3, 0, 16, 1},
    {5, 7, 7, 3, 1, 32, 3},  {4, 6, 9, 5, 2, 16, 2},   {3, 8, 10, 3, 1, 24, 2},
    {2, 9, 6, 5, 2, 8, 3},
    // dw over several chunks of samples (half an L1 of 32-48 KiB holds 2-3 samples' dy of a
    // tile here, 16-24 below), in every thread's share: a plane run as vectors, and rows
    {4, 14, 14, 3, 1, 19, 13}, {3, 12, 12, 5, 0, 10, 61}};

// The direct kernels, with the instruction set conv_direct::force_kernels chose, against the
// im2col GEMM path on kDirectCases, forward (bias, fused ReLU) and backward (dx, dw, db).
static void direct_equals_gemm();

TEST(conv2d_direct_path_equals_gemm_path) {
  // Each instruction set's kernels that this CPU runs.
  if (!conv_direct::available()) {  // Direct would fall back to the GEMM path
    std::printf("  skipped: this CPU has neither AVX-512F nor AVX2 + FMA, so no direct path\n");
    return;
  }
  for (const char* isa : {"avx512", "avx2"}) {
    if (!conv_direct::force_kernels(isa)) {
      std::printf("  %s kernels skipped: this CPU does not run them\n", isa);
      continue;
    }
    direct_equals_gemm();
  }
  conv_direct::force_kernels(nullptr);
}

static void direct_equals_gemm() {
  for (const auto& c : kDirectCases) {
    const ConvGeom g = make_conv_geom(c[0], c[1], c[2], c[3], 1, c[4]);
    const int64_t M = c[5], N = c[6], in_n = c[0] * c[1] * c[2], out_n = M * g.Ho * g.Wo;
    const size_t wn = M * g.col_rows();
    const std::vector<float> x = randn(N * in_n, 7), w = randn(wn, 8), b = randn(M, 9),
                             dy = randn(N * out_n, 10);
    std::vector<float> ws(std::max(conv2d_forward_workspace_cpu(g, M, max_threads()),
                                   conv2d_backward_workspace_cpu(g, M, max_threads())));
    std::vector<float> y[2], dx[2], dw[2], db[2];
    for (int path = 0; path < 2; ++path) {
      conv2d_force_path(path ? ConvPath::Direct : ConvPath::Gemm);
      y[path].assign(N * out_n, NAN), dx[path].assign(N * in_n, NAN);
      dw[path].assign(wn, NAN), db[path].assign(M, NAN);
      conv2d_forward_cpu(g, N, M, x.data(), w.data(), b.data(), y[path].data(), ws.data(),
                         path == 1 && c[6] == 2);
      if (path == 1 && c[6] == 2) {  // fused ReLU on the direct path: compare with the relu
                                     // of the GEMM path's output
        for (float& v : y[0]) v = v > 0.f ? v : 0.f;
      }
      conv2d_backward_cpu(g, N, M, x.data(), w.data(), dy.data(), dx[path].data(),
                          dw[path].data(), db[path].data(), ws.data());
    }
    conv2d_force_path(ConvPath::Auto);
    auto close = [](const std::vector<float>& a, const std::vector<float>& e, double tol) {
      for (size_t i = 0; i < a.size(); ++i)
        if (!(std::fabs(a[i] - e[i]) <= tol * (1.0 + std::fabs(e[i])))) return false;
      return true;
    };
    // Float sums of up to a few hundred terms in another order: relative error ~1e-5.
    CHECK(close(y[1], y[0], 5e-5));
    CHECK(close(dx[1], dx[0], 5e-5));
    CHECK(close(dw[1], dw[0], 1e-4));
    CHECK(close(db[1], db[0], 1e-5));
  }
}

// The direct kernels' loops at AVX-512's shape on any CPU: 16 lanes and 32 registers (so
// AVX-512's tiles, blocks and 16-bit masks), on a portable policy of lane loops whose fused
// multiply-adds round once, as vfmadd does. The AVX-512 build differs from this only in its
// policy's one-line intrinsics, so this checks its loops where no AVX-512 CPU is at hand.
namespace hc::conv_direct {
namespace {
// Its operations are not inlined: the kernels' unrolled tiles would otherwise take minutes to
// compile as scalar lane loops.
struct Lanes16 {
  struct Vec {
    float v[16];
  };
  using Mask = uint16_t;
  static constexpr int kLanes = 16, kRegs = 32;
  static constexpr Mask kAll = 0xFFFF;
  [[gnu::noinline]] static Vec zero() { return Vec{}; }
  [[gnu::noinline]] static Vec set1(float f) {
    Vec r;
    for (float& x : r.v) x = f;
    return r;
  }
  [[gnu::noinline]] static Vec loadu(const float* p) { return load(kAll, p); }
  [[gnu::noinline]] static Vec load(Mask m, const float* p) {  // masked-off lanes are not read
    Vec r;
    for (int j = 0; j < 16; ++j) r.v[j] = (m >> j) & 1 ? p[j] : 0.f;
    return r;
  }
  [[gnu::noinline]] static void storeu(float* p, Vec v) { store(kAll, p, v); }
  [[gnu::noinline]] static void store(Mask m, float* p, Vec v) {
    for (int j = 0; j < 16; ++j)
      if ((m >> j) & 1) p[j] = v.v[j];
  }
  [[gnu::noinline]] static Vec fmadd(Vec a, Vec b, Vec c) {
    for (int j = 0; j < 16; ++j) c.v[j] = std::fma(a.v[j], b.v[j], c.v[j]);
    return c;
  }
  [[gnu::noinline]] static Vec add(Vec a, Vec b) {
    for (int j = 0; j < 16; ++j) a.v[j] += b.v[j];
    return a;
  }
  [[gnu::noinline]] static Vec relu(Vec v) {
    for (float& x : v.v) x = x <= 0.f ? 0.f : x;  // NaN kept
    return v;
  }
  [[gnu::noinline]] static float sum(Vec v) {
    for (int w = 8; w >= 1; w /= 2)
      for (int j = 0; j < w; ++j) v.v[j] += v.v[j + w];
    return v.v[0];
  }
};
}  // namespace
}  // namespace hc::conv_direct

TEST(direct_kernels_at_avx512_shape_on_portable_lanes) {
  // On kDirectCases: forward (bias, and the fused ReLU on every other case) of the row or flat
  // kernels and, where the output is narrow and M a multiple of 16, of the channel-vector ones,
  // against the GEMM path to rounding, and against the direct kernels this CPU runs bit for bit
  // (every variant adds the same fused products in the same order); dw of both against the
  // GEMM path to rounding.
  const conv_direct::Kernels& k = conv_direct::kernels_of<conv_direct::Lanes16>;
  int index = 0;
  for (const auto& c : kDirectCases) {
    const ConvGeom g = make_conv_geom(c[0], c[1], c[2], c[3], 1, c[4]);
    const int64_t M = c[5], N = c[6], in_n = c[0] * c[1] * c[2], out_n = M * g.Ho * g.Wo;
    const int64_t ckk = g.col_rows();
    const bool relu = index++ % 2 == 1;
    const std::vector<float> x = randn(N * in_n, 17), w = randn(M * ckk, 18), b = randn(M, 19),
                             dy = randn(N * out_n, 20);
    std::vector<float> wt(M * ckk);  // k-major, as conv2d.cpp hands the direct kernels
    for (int64_t m = 0; m < M; ++m)
      for (int64_t q = 0; q < ckk; ++q) wt[q * M + m] = w[m * ckk + q];
    std::vector<float> ws(std::max(conv2d_forward_workspace_cpu(g, M, max_threads()),
                                   conv2d_backward_workspace_cpu(g, M, max_threads())));
    std::vector<float> y_gemm(N * out_n), dw_gemm(M * ckk), db(M);
    conv2d_force_path(ConvPath::Gemm);
    conv2d_forward_cpu(g, N, M, x.data(), w.data(), b.data(), y_gemm.data(), ws.data(), relu);
    conv2d_backward_cpu(g, N, M, x.data(), w.data(), dy.data(), nullptr, dw_gemm.data(),
                        db.data(), ws.data());
    conv2d_force_path(ConvPath::Auto);
    std::vector<float> y_cpu;  // the direct kernels this CPU runs, where it runs some
    if (conv_direct::available()) {
      y_cpu.assign(N * out_n, NAN);
      conv_direct::forward(g, M, N, x.data(), wt.data(), b.data(), y_cpu.data(), relu);
    }
    auto close = [](const std::vector<float>& a, const std::vector<float>& e, double tol) {
      for (size_t i = 0; i < a.size(); ++i)
        if (!(std::fabs(a[i] - e[i]) <= tol * (1.0 + std::fabs(e[i])))) return false;
      return true;
    };
    const bool channels = g.Wo <= conv_direct::kMaxChannelWidth && M % 16 == 0;
    for (int variant = 0; variant < (channels ? 2 : 1); ++variant) {
      std::vector<float> y(N * out_n, NAN), dw(M * ckk, 0.f);
      (variant ? k.forward_channels : k.forward)(g, M, N, x.data(), wt.data(), b.data(),
                                                 y.data(), relu);
      (variant ? k.weight_grad_channels : k.weight_grad)(g, M, N, x.data(), dy.data(),
                                                         dw.data());
      CHECK(close(y, y_gemm, 5e-5));
      if (!y_cpu.empty()) CHECK(std::memcmp(y.data(), y_cpu.data(), y.size() * 4) == 0);
      CHECK(close(dw, dw_gemm, 1e-4));
    }
  }
}

// Winograd's F(2x2, 3x3), with the transforms conv_winograd::force_transforms chose, against
// the im2col GEMM path, forward (bias or none, fused ReLU) and backward (dx through a ReLU mask
// or none, dw, db or none): padding 0, 1 and 2; odd output sizes (a last tile half outside),
// outputs of 1 x 1 and 2 x 1, non-square images; one channel in or out; batches whose blocks of
// tile rows end inside a sample or span several; planes larger than a block (rows of more than
// 16 tiles: 40 wide); bnnet's and convnet's layers.
static void winograd_equals_gemm();

TEST(conv2d_winograd_path_equals_gemm_path) {
  // Each instruction set's transforms that this CPU runs.
  if (!conv_winograd::available()) {
    std::printf("  skipped: this CPU has neither AVX-512F nor AVX2 + FMA, so no Winograd path\n");
    return;
  }
  for (const char* isa : {"avx512", "avx2"}) {
    if (!conv_winograd::force_transforms(isa)) {
      std::printf("  %s transforms skipped: this CPU does not run them\n", isa);
      continue;
    }
    winograd_equals_gemm();
  }
  conv_winograd::force_transforms(nullptr);
}

static void winograd_equals_gemm() {
  // {C, H, W, pad, M, N}
  const int64_t cases[][6] = {{3, 9, 8, 1, 5, 2},    {1, 7, 7, 1, 1, 3},    {2, 3, 3, 0, 4, 2},
                              {5, 4, 3, 0, 3, 1},    {4, 5, 6, 2, 7, 3},    {6, 11, 13, 1, 9, 4},
                              {17, 7, 7, 1, 33, 5},  {32, 14, 14, 1, 64, 3}, {16, 28, 28, 1, 16, 2},
                              {64, 7, 7, 1, 128, 3}, {3, 30, 40, 0, 2, 1},  {8, 1, 9, 2, 3, 2}};
  auto close = [](const std::vector<float>& a, const std::vector<float>& e, double tol) {
    for (size_t i = 0; i < a.size(); ++i)
      if (!(std::fabs(a[i] - e[i]) <= tol * (1.0 + std::fabs(e[i])))) return false;
    return true;
  };
  for (const auto& c : cases) {
    const ConvGeom g = make_conv_geom(c[0], c[1], c[2], 3, 1, c[3]);
    const int64_t M = c[4], N = c[5], in_n = c[0] * c[1] * c[2], out_n = M * g.Ho * g.Wo;
    const size_t wn = M * g.col_rows();
    std::vector<float> x = randn(N * in_n, 31);
    for (size_t i = 0; i < x.size(); i += 3) x[i] = 0.f;  // a ReLU's output, for the mask
    const std::vector<float> w = randn(wn, 32), b = randn(M, 33), dy = randn(N * out_n, 34);
    std::vector<float> ws(std::max(conv2d_forward_workspace_cpu(g, M, max_threads()),
                                   conv2d_backward_workspace_cpu(g, M, max_threads())));
    for (int variant = 0; variant < 2; ++variant) {  // 0: bias, relu, dx, db; 1: none of them
      const bool full = variant == 0;
      std::vector<float> y[2], dx[2], dw[2], db[2];
      for (int path = 0; path < 2; ++path) {
        conv2d_force_path(path ? ConvPath::Winograd : ConvPath::Gemm);
        y[path].assign(N * out_n, NAN), dx[path].assign(N * in_n, NAN);
        dw[path].assign(wn, NAN), db[path].assign(M, NAN);
        conv2d_forward_cpu(g, N, M, x.data(), w.data(), full ? b.data() : nullptr,
                           y[path].data(), ws.data(), full);
        conv2d_backward_cpu(g, N, M, x.data(), w.data(), dy.data(),
                            full ? dx[path].data() : nullptr, dw[path].data(),
                            full ? db[path].data() : nullptr, ws.data(), full);
      }
      conv2d_force_path(ConvPath::Auto);
      // Sums of up to 9 C terms (dx: 9 M, dw: N Ho Wo) in another order, through transforms
      // that add up to 16 inputs first.
      CHECK(close(y[1], y[0], 1e-4));
      if (full) CHECK(close(dx[1], dx[0], 1e-4));
      CHECK(close(dw[1], dw[0], 2e-4));
      if (full) CHECK(close(db[1], db[0], 1e-5));
    }
  }
}

TEST(conv2d_weight_grad_close_to_float64_sum) {
  // dw of every path against a float64 sum, over a batch long enough that a float sum carried
  // through every sample drifts (the channel-vector dw's first version: 1.5-2.1e-6 of the
  // largest entry here, the GEMM path 3e-7): lenet5's conv1 (flat direct kernel) and conv2
  // (channel-vector kernel), and a 64 -> 64 3x3 convolution (Winograd's dw: 3.3e-7, the GEMM
  // 2.8e-7, the direct 1.6e-7) at 33 samples. Bound: 8e-7 of the largest entry.
  const int64_t cases[][6] = {{1, 28, 28, 5, 2, 6}, {6, 14, 14, 5, 0, 16},
                              {64, 7, 7, 3, 1, 64}};  // C,H,W,K,pad,M
  const int64_t N = 33;
  for (const auto& c : cases) {
    const ConvGeom g = make_conv_geom(c[0], c[1], c[2], c[3], 1, c[4]);
    const int64_t M = c[5], K = c[3], in_n = c[0] * c[1] * c[2], plane = g.Ho * g.Wo;
    const size_t wn = M * g.col_rows();
    const std::vector<float> x = randn(N * in_n, 11), w = randn(wn, 12),
                             dy = randn(N * M * plane, 13);
    std::vector<double> ref(wn, 0.0);
    for (int64_t n = 0; n < N; ++n)
      for (int64_t m = 0; m < M; ++m)
        for (int64_t ci = 0; ci < g.C; ++ci)
          for (int64_t kh = 0; kh < K; ++kh)
            for (int64_t kw = 0; kw < K; ++kw)
              for (int64_t oh = 0; oh < g.Ho; ++oh)
                for (int64_t ow = 0; ow < g.Wo; ++ow) {
                  const int64_t ih = oh + kh - g.pad, iw = ow + kw - g.pad;
                  if (ih < 0 || iw < 0 || ih >= g.H || iw >= g.W) continue;
                  ref[((m * g.C + ci) * K + kh) * K + kw] +=
                      double(dy[(n * M + m) * plane + oh * g.Wo + ow]) *
                      x[(n * g.C + ci) * g.H * g.W + ih * g.W + iw];
                }
    double largest = 0;
    for (double v : ref) largest = std::max(largest, std::fabs(v));
    std::vector<float> ws(conv2d_backward_workspace_cpu(g, M, max_threads())), dw(wn), db(M);
    for (ConvPath path : {ConvPath::Gemm, ConvPath::Direct, ConvPath::Winograd}) {
      conv2d_force_path(path);
      conv2d_backward_cpu(g, N, M, x.data(), w.data(), dy.data(), nullptr, dw.data(), db.data(),
                          ws.data());
      double worst = 0;
      for (size_t i = 0; i < wn; ++i) worst = std::max(worst, std::fabs(dw[i] - ref[i]));
      CHECK(worst <= 8e-7 * largest);
    }
    conv2d_force_path(ConvPath::Auto);
    // The direct kernels given all the samples in one call, as conv2d_backward_cpu does where
    // a core's L2 holds them (a 2 MiB L2 takes all 33 of the first case: its float sums drifted
    // to 1.07e-6 before the flat dw summed in two levels, CPU_PERF.md entry 18).
    // With each instruction set's kernels this CPU runs.
    for (const char* isa : {"avx512", "avx2"}) {
      if (!conv_direct::fits(g) || !conv_direct::force_kernels(isa)) continue;
      std::fill(dw.begin(), dw.end(), 0.f);
      conv_direct::weight_grad(g, M, N, x.data(), dy.data(), dw.data());
      double worst = 0;
      for (size_t i = 0; i < wn; ++i) worst = std::max(worst, std::fabs(dw[i] - ref[i]));
      CHECK(worst <= 8e-7 * largest);
    }
    conv_direct::force_kernels(nullptr);
  }
}

TEST(conv2d_gemm_groups_equal_one_sample_gemms) {
  // The GEMM path with several samples unrolled side by side per GEMM (forced group sizes and
  // the automatic one) against one sample per GEMM: forward with and without bias, with the
  // fused ReLU; backward with dx (through a ReLU mask) and without, with and without db.
  // Batches the groups do not divide, stride 2, a 1x1 kernel, a deep 7 x 7 convolution.
  // {C, H, W, K, stride, pad, M, N}
  const int64_t cases[][8] = {{3, 9, 8, 3, 1, 1, 5, 5},  {4, 11, 10, 3, 2, 1, 6, 7},
                              {5, 6, 7, 1, 1, 0, 3, 4},  {2, 8, 8, 5, 1, 2, 4, 3},
                              {64, 7, 7, 3, 1, 1, 128, 5}};
  auto close = [](const std::vector<float>& a, const std::vector<float>& e, double tol) {
    for (size_t i = 0; i < a.size(); ++i)
      if (!(std::fabs(a[i] - e[i]) <= tol * (1.0 + std::fabs(e[i])))) return false;
    return true;
  };
  conv2d_force_path(ConvPath::Gemm);
  for (const auto& c : cases) {
    const ConvGeom g = make_conv_geom(c[0], c[1], c[2], c[3], c[4], c[5]);
    const int64_t M = c[6], N = c[7], in_n = c[0] * c[1] * c[2], out_n = M * g.Ho * g.Wo;
    const size_t wn = M * g.col_rows();
    std::vector<float> x = randn(N * in_n, 21);
    for (size_t i = 0; i < x.size(); i += 3) x[i] = 0.f;  // a ReLU's output, for the mask
    const std::vector<float> w = randn(wn, 22), b = randn(M, 23), dy = randn(N * out_n, 24);
    for (int variant = 0; variant < 2; ++variant) {  // 0: bias, relu, dx; 1: none of them
      const float* bp = variant == 0 ? b.data() : nullptr;
      std::vector<float> y[2], dx[2], dw[2], db[2];
      for (int64_t group : {1, 2, 3, 0}) {
        conv2d_force_group(group);
        std::vector<float> ws(std::max(conv2d_forward_workspace_cpu(g, M, max_threads()),
                                       conv2d_backward_workspace_cpu(g, M, max_threads())));
        const int r = group == 1 ? 0 : 1;
        y[r].assign(N * out_n, NAN), dx[r].assign(N * in_n, NAN);
        dw[r].assign(wn, NAN), db[r].assign(M, NAN);
        conv2d_forward_cpu(g, N, M, x.data(), w.data(), bp, y[r].data(), ws.data(),
                           variant == 0);
        conv2d_backward_cpu(g, N, M, x.data(), w.data(), dy.data(),
                            variant == 0 ? dx[r].data() : nullptr, dw[r].data(),
                            variant == 0 ? db[r].data() : nullptr, ws.data(), variant == 0);
        if (r == 0) continue;
        CHECK(close(y[1], y[0], 1e-5));
        if (variant == 0) CHECK(close(dx[1], dx[0], 1e-5));
        CHECK(close(dw[1], dw[0], 1e-4));
        if (variant == 0) CHECK(close(db[1], db[0], 1e-5));
      }
    }
  }
  conv2d_force_group(0);
  conv2d_force_path(ConvPath::Auto);
}

// Every path of the 2x2 / stride-2 pooling (each instruction set's kernels this CPU runs for
// widths <= 32, the portable loops for any width) against a tap-by-tap reference: first maximum
// in tap order, a NaN wins, ties from ReLU-like zeros, odd sizes (floor mode), with and without
// the ReLU mask.
static void maxpool_2x2_equals_reference();

TEST(maxpool_2x2_against_a_reference) {
  for (const char* isa : {"avx512", "avx2", "portable"}) {
    if (!maxpool_2x2::force_kernels(isa)) {
      std::printf("  %s kernels skipped: this CPU does not run them\n", isa);
      continue;
    }
    maxpool_2x2_equals_reference();
  }
  maxpool_2x2::force_kernels(nullptr);
}

static void maxpool_2x2_equals_reference() {
  for (int64_t W : {1, 2, 3, 7, 10, 14, 15, 16, 17, 18, 23, 28, 31, 32, 33, 40}) {
    for (int64_t H : {2, 5, 28}) {
      const int64_t P = 3, Ho = H / 2, Wo = W / 2;
      if (Wo == 0) continue;
      std::vector<float> x = randn(P * H * W, 20 + W), dy = randn(P * Ho * Wo, 21);
      for (size_t i = 0; i < x.size(); ++i) x[i] = i % 3 == 0 ? 0.f : std::max(x[i], 0.f);
      x[1] = NAN;
      x[P * H * W - 2] = NAN;
      std::vector<float> y(P * Ho * Wo), want_y(y.size());
      std::vector<float> want_dx(x.size(), 0.f), want_masked(x.size(), 0.f);
      for (int64_t p = 0; p < P; ++p)
        for (int64_t oh = 0; oh < Ho; ++oh)
          for (int64_t ow = 0; ow < Wo; ++ow) {
            int64_t best = -1;
            for (int64_t kh = 0; kh < 2; ++kh)
              for (int64_t kw = 0; kw < 2; ++kw) {
                const int64_t i = (p * H + 2 * oh + kh) * W + 2 * ow + kw;
                if (best < 0 || x[i] > x[best] || (std::isnan(x[i]) && !std::isnan(x[best])))
                  best = i;
              }
            const int64_t o = (p * Ho + oh) * Wo + ow;
            want_y[o] = x[best];
            want_dx[best] = dy[o];
            want_masked[best] = x[best] > 0.f ? dy[o] : 0.f;
          }
      maxpool2d_forward_cpu(P, H, W, 2, 2, x.data(), y.data());
      std::vector<float> dx(x.size(), NAN), masked(x.size(), NAN);
      maxpool2d_backward_cpu(P, H, W, 2, 2, x.data(), dy.data(), dx.data());
      maxpool2d_backward_cpu(P, H, W, 2, 2, x.data(), dy.data(), masked.data(), true);
      CHECK(std::memcmp(y.data(), want_y.data(), y.size() * sizeof(float)) == 0);
      CHECK(std::memcmp(dx.data(), want_dx.data(), dx.size() * sizeof(float)) == 0);
      CHECK(std::memcmp(masked.data(), want_masked.data(), dx.size() * sizeof(float)) == 0);
    }
  }
}

TEST(maxpool_backward_with_relu_mask_equals_relu_backward_after_it) {
  // The ReLU's backward applied inside the pooling's backward gives bit for bit what running
  // relu_backward_cpu on its result gives: ReLU-like inputs (zeros, NaN, ties), 2x2 windows
  // (even and odd sizes) and the general path (3x3 stride 2).
  const int64_t cases[][4] = {{28, 28, 2, 2}, {9, 7, 2, 2}, {10, 11, 3, 2}};
  for (const auto& c : cases) {
    const int64_t P = 5, H = c[0], W = c[1], K = c[2], s = c[3];
    const int64_t Ho = (H - K) / s + 1, Wo = (W - K) / s + 1;
    std::vector<float> x = randn(P * H * W, 11), dy = randn(P * Ho * Wo, 12);
    for (size_t i = 0; i < x.size(); ++i) x[i] = i % 7 == 0 ? 0.f : std::max(x[i], 0.f);
    x[3] = NAN;
    x[W + 5] = -0.f;
    std::vector<float> pooled(x.size()), want(x.size()), got(x.size());
    maxpool2d_backward_cpu(P, H, W, K, s, x.data(), dy.data(), pooled.data());
    relu_backward_cpu(P * H * W, x.data(), pooled.data(), want.data());
    maxpool2d_backward_cpu(P, H, W, K, s, x.data(), dy.data(), got.data(), true);
    CHECK(std::memcmp(got.data(), want.data(), got.size() * sizeof(float)) == 0);
  }
}

TEST(conv_and_linear_backward_with_relu_mask_equal_relu_backward_after_them) {
  // dx through the backward of the ReLU before the layer, applied by the layer: bit for bit
  // relu_backward_cpu of its dx; dw and db unchanged. Every conv path (Winograd's applies
  // the mask in one pass over its thread's share of dx), and Linear.
  std::vector<float> x = randn(2 * 3 * 9 * 8, 13);
  for (size_t i = 0; i < x.size(); ++i) x[i] = i % 5 == 0 ? 0.f : std::max(x[i], 0.f);
  x[4] = NAN;
  for (ConvPath path : {ConvPath::Gemm, ConvPath::Direct, ConvPath::Winograd}) {
    conv2d_force_path(path);
    const ConvGeom g = make_conv_geom(3, 9, 8, 3, 1, 1);
    const int64_t N = 2, M = 4;
    const std::vector<float> w = randn(M * 27, 14), dy = randn(N * M * 72, 15);
    std::vector<float> ws(conv2d_backward_workspace_cpu(g, M, max_threads()));
    std::vector<float> dx(x.size()), want(x.size()), got(x.size()), dw(w.size()), db(M);
    conv2d_backward_cpu(g, N, M, x.data(), w.data(), dy.data(), dx.data(), dw.data(), db.data(),
                        ws.data());
    relu_backward_cpu(x.size(), x.data(), dx.data(), want.data());
    conv2d_backward_cpu(g, N, M, x.data(), w.data(), dy.data(), got.data(), dw.data(), db.data(),
                        ws.data(), true);
    CHECK(std::memcmp(got.data(), want.data(), got.size() * sizeof(float)) == 0);
  }
  conv2d_force_path(ConvPath::Auto);
  const int64_t N = 6, I = 72, O = 5;
  const std::vector<float> w = randn(O * I, 16), dy = randn(N * O, 17);
  std::vector<float> dx(N * I), want(N * I), got(N * I), dw(O * I), db(O);
  linear_backward_cpu(N, I, O, x.data(), w.data(), dy.data(), dx.data(), dw.data(), db.data());
  relu_backward_cpu(N * I, x.data(), dx.data(), want.data());
  linear_backward_cpu(N, I, O, x.data(), w.data(), dy.data(), got.data(), dw.data(), db.data(),
                      true);
  CHECK(std::memcmp(got.data(), want.data(), got.size() * sizeof(float)) == 0);
}

TEST(sgd_all_equals_sgd_per_parameter) {
  // One parallel loop over several arrays gives bit for bit what one call per array gives,
  // whatever the team size, with and without momentum.
  const int64_t sizes[] = {3, 40000, 17, 1, 25000, 64};
  for (float mu : {0.f, 0.9f}) {
    for (int threads : {1, 2, 3, 7}) {
      std::vector<std::vector<float>> p1, v1, g, p2, v2;
      for (size_t s = 0; s < 6; ++s) {
        g.push_back(randn(sizes[s], 10 + s));
        p1.push_back(randn(sizes[s], 20 + s));
        v1.push_back(randn(sizes[s], 30 + s));
      }
      p2 = p1;
      v2 = v1;
      const SgdConfig cfg{0.05f, mu, 1e-3f};
      std::vector<SgdSlice> slices;
      for (size_t s = 0; s < 6; ++s) {
        sgd_update_cpu(sizes[s], p1[s].data(), g[s].data(), v1[s].data(), cfg);
        slices.push_back({sizes[s], p2[s].data(), g[s].data(), v2[s].data()});
      }
      const int before = max_threads();
      set_threads(threads);
      sgd_update_all_cpu(slices.data(), slices.size(), cfg);
      set_threads(before);
      for (size_t s = 0; s < 6; ++s) {
        CHECK(std::memcmp(p1[s].data(), p2[s].data(), sizes[s] * sizeof(float)) == 0);
        CHECK(std::memcmp(v1[s].data(), v2[s].data(), sizes[s] * sizeof(float)) == 0);
      }
    }
  }
  sgd_update_all_cpu(nullptr, 0, SgdConfig{});  // nothing to update
}

TEST(maxpool_by_hand) {
  // 3x4 plane, 2x2 windows, stride 2: the last row does not fit and is dropped (floor).
  const float x[] = {1, 5, 2, 0, 3, 4, 8, 7, 9, 9, 9, 9};
  float y[2], dx[12];
  maxpool2d_forward_cpu(1, 3, 4, 2, 2, x, y);
  CHECK(y[0] == 5 && y[1] == 8);
  const float dy[] = {10, 20};
  maxpool2d_backward_cpu(1, 3, 4, 2, 2, x, dy, dx);
  for (int i = 0; i < 12; ++i) CHECK(dx[i] == (i == 1 ? 10 : i == 6 ? 20 : 0));
}

TEST(activations_by_hand) {
  const float x[] = {-2, -0.f, 0.5f, 3};
  float y[4], dx[4];
  const float dy[] = {1, 1, 2, 3};
  relu_forward_cpu(4, x, y);
  CHECK(y[0] == 0 && y[1] == 0 && y[2] == 0.5f && y[3] == 3);
  relu_backward_cpu(4, y, dy, dx);
  CHECK(dx[0] == 0 && dx[1] == 0 && dx[2] == 2 && dx[3] == 3);
  sigmoid_forward_cpu(4, x, y);
  CHECK_NEAR(y[1], 0.5, 1e-7);
  CHECK_NEAR(y[3], 1 / (1 + std::exp(-3.0)), 1e-7);
  sigmoid_backward_cpu(4, y, dy, dx);
  CHECK_NEAR(dx[1], 0.25, 1e-7);
}

TEST(losses_by_hand) {
  // Equal logits: loss log(K), gradient (1/K - onehot)/N.
  const float z[] = {0, 0, 0, 0, 0, 0};
  const int64_t labels[] = {2, 0};
  float d[6];
  LossResult r = softmax_cross_entropy_cpu(2, 3, z, labels, d);
  CHECK_NEAR(r.loss, std::log(3.0), 1e-6);
  CHECK_NEAR(d[2], (1.0 / 3 - 1) / 2, 1e-6);
  CHECK_NEAR(d[1], 1.0 / 6, 1e-6);
  // BCE at z = 0: loss log 2, gradient (0.5 - y)/N; at z = 100, y = 1: loss ~ 0, finite.
  const float zb[] = {0, 100};
  const int64_t yb[] = {0, 1};
  r = sigmoid_bce_cpu(2, zb, yb, d);
  CHECK_NEAR(r.loss, std::log(2.0) / 2, 1e-7);
  CHECK_NEAR(d[0], 0.25, 1e-7);
  CHECK(std::isfinite(d[1]) && std::fabs(d[1]) < 1e-30 + 1e-7);
  CHECK(r.correct == 2);  // z = 0 predicts 0, z = 100 predicts 1
}

// Rows enough for the team (301 x 10 logits, with and without label smoothing), on 5, 3, 2 and
// 1 threads in that order: each agrees with a float64 computation (the loss, the correct count,
// every gradient) and all four are the same to the bit.
TEST(softmax_cross_entropy_on_the_team) {
  const int before = hc::max_threads();
  const int64_t N = 301, K = 10;
  std::mt19937 rng(7);
  std::normal_distribution<float> g(0.f, 3.f);
  std::vector<float> z(N * K);
  std::vector<int64_t> labels(N);
  for (float& v : z) v = g(rng);
  for (int64_t& y : labels) y = static_cast<int64_t>(rng() % K);
  for (const float smoothing : {0.f, 0.1f}) {
    std::vector<double> grad(N * K);  // float64: the gradient, the mean loss, the count
    double loss = 0;
    int64_t correct = 0;
    for (int64_t n = 0; n < N; ++n) {
      const float* zn = z.data() + n * K;
      const double zmax = *std::max_element(zn, zn + K);
      double sum = 0;
      for (int64_t k = 0; k < K; ++k) sum += std::exp(zn[k] - zmax);
      for (int64_t k = 0; k < K; ++k) {
        const double p = std::exp(zn[k] - zmax) / sum;
        const double q = (k == labels[n]) * (1.0 - smoothing) + smoothing / K;
        loss -= q * std::log(p) / N;
        grad[n * K + k] = (p - q) / N;
      }
      correct += std::max_element(zn, zn + K) - zn == labels[n];
    }
    LossResult first;
    std::vector<float> first_d;
    for (int threads : {5, 3, 2, 1}) {
      hc::set_threads(threads);
      std::vector<float> d(N * K, 0.f);
      const LossResult r =
          softmax_cross_entropy_cpu(N, K, z.data(), labels.data(), d.data(), 1.f, smoothing);
      CHECK_NEAR(r.loss, loss, 1e-6 * std::max(1.0, loss));
      CHECK(r.correct == correct);
      for (int64_t i = 0; i < N * K; ++i) CHECK_NEAR(d[i], grad[i], 1e-7);
      if (threads == 5) first = r, first_d = d;
      CHECK(r.loss == first.loss && r.correct == first.correct && d == first_d);
    }
  }
  hc::set_threads(before);
}

TEST(sgd_by_hand) {
  // Two steps of torch.optim.SGD(lr=0.1, momentum=0.9, weight_decay=0.01), g = 1 each time.
  float p[] = {1}, v[] = {0};
  const float g[] = {1};
  SgdConfig cfg{0.1f, 0.9f, 0.01f};
  sgd_update_cpu(1, p, g, v, cfg);  // v = 1.01, p = 0.899
  CHECK_NEAR(v[0], 1.01, 1e-6);
  CHECK_NEAR(p[0], 0.899, 1e-6);
  sgd_update_cpu(1, p, g, v, cfg);  // v = 0.909 + 1.00899, p = 0.899 - 0.191789
  CHECK_NEAR(v[0], 0.9 * 1.01 + 1 + 0.01 * 0.899, 1e-6);
  CHECK_NEAR(p[0], 0.899 - 0.1 * (0.9 * 1.01 + 1 + 0.01 * 0.899), 1e-6);
  bool threw = false;
  try {
    validate(SgdConfig{NAN, 0, 0});
  } catch (const Error& e) {
    threw = e.kind() == ErrorKind::Value;
  }
  CHECK(threw);
}

TEST(label_smoothing_by_hand) {
  // Equal logits: loss log(K) whatever the smoothing; gradient (1/K - q)/N with q the
  // smoothed target (0.7 + 0.1 at the label, 0.1 elsewhere for eps = 0.3, K = 3).
  const float z[] = {0, 0, 0, 0, 0, 0};
  const int64_t labels[] = {2, 0};
  float d[6];
  const LossResult r = softmax_cross_entropy_cpu(2, 3, z, labels, d, 1.f, 0.3f);
  CHECK_NEAR(r.loss, std::log(3.0), 1e-6);
  CHECK_NEAR(d[2], (1.0 / 3 - 0.8) / 2, 1e-6);
  CHECK_NEAR(d[1], (1.0 / 3 - 0.1) / 2, 1e-6);
}

TEST(adam_by_hand) {
  // The first step of torch.optim.Adam(lr=0.1) with g = 1 moves p by lr (bias-corrected
  // m / sqrt(v) = 1); AdamW(weight_decay=0.01) first decays p by 1 - lr * wd.
  const float g[] = {1};
  float p[] = {1}, m[] = {0}, v[] = {0};
  AdamConfig cfg;
  cfg.lr = 0.1f;
  adam_update_cpu(1, p, g, m, v, adam_step(cfg, 1));
  CHECK_NEAR(p[0], 0.9, 1e-6);
  CHECK_NEAR(m[0], 0.1, 1e-7);
  CHECK_NEAR(v[0], 0.001, 1e-7);
  float q[] = {1}, mq[] = {0}, vq[] = {0};
  cfg.weight_decay = 0.01f;
  cfg.decoupled = true;
  adam_update_cpu(1, q, g, mq, vq, adam_step(cfg, 1));
  CHECK_NEAR(q[0], 0.999 - 0.1, 1e-6);
  bool threw = false;
  try {
    adam_step(cfg, 0);  // an update before its step began
  } catch (const Error& e) {
    threw = e.kind() == ErrorKind::Value;
  }
  CHECK(threw);
  threw = false;
  try {
    cfg.beta2 = 1.f;
    validate(cfg);
  } catch (const Error& e) {
    threw = e.kind() == ErrorKind::Value && std::string(e.what()).find("beta2") != std::string::npos;
  }
  CHECK(threw);
}

TEST(net_begins_one_optimizer_step_per_training_step) {
  Net net;
  net.add(make_layer("Linear", {4, 3}));
  net.init(1);
  const Shape in{2, 4};
  const float x[] = {1, 2, 3, 4, 5, 6, 7, 8};
  const int64_t y[] = {0, 2};
  Adam opt(AdamConfig{});
  net.train_step(x, in, y, opt);
  net.train_step(x, in, y, opt);
  CHECK(opt.steps() == 2);
  net.compute_grads(x, in, y);
  net.apply_update(opt);
  CHECK(opt.steps() == 3);
  opt.reset();
  CHECK(opt.steps() == 0);
}

TEST(net_step_reduces_loss_and_rejects_bad_input) {
  Net net;
  net.add(make_layer("Conv2d", {2, 4, 3, 1, 1}));
  net.add(make_layer("ReLU", {}));
  net.add(make_layer("MaxPool2d", {2, 2}));
  net.add(make_layer("Flatten", {}));
  net.add(make_layer("Linear", {4 * 3 * 2, 3}));
  net.init(7);
  const Shape in{5, 2, 6, 5};
  auto x = randn(in.numel(), 3);
  const int64_t y[] = {0, 1, 2, 1, 0};
  Sgd cfg(SgdConfig{0.05f, 0.9f, 0});
  const double first = net.train_step(x.data(), in, y, cfg).loss;
  double last = first;
  for (int i = 0; i < 30; ++i) last = net.train_step(x.data(), in, y, cfg).loss;
  CHECK_MSG(last < 0.5 * first, std::to_string(first) + " -> " + std::to_string(last));
  // A label out of range is rejected before anything changes.
  float before[3];
  net.layers()[4]->params()[1].value.copy_to_host(before, 3);
  const int64_t bad[] = {0, 1, 3, 1, 0};
  bool threw = false;
  try {
    net.train_step(x.data(), in, bad, cfg);
  } catch (const Error& e) {
    threw = e.kind() == ErrorKind::Value && std::string(e.what()).find("label 3 at index 2") != std::string::npos;
  }
  CHECK(threw);
  float after[3];
  net.layers()[4]->params()[1].value.copy_to_host(after, 3);
  for (int i = 0; i < 3; ++i) CHECK(before[i] == after[i]);
  // A shape that does not fit names the layer.
  threw = false;
  try {
    net.output_shape(Shape{1, 3, 6, 5});
  } catch (const Error& e) {
    threw = e.kind() == ErrorKind::Shape && std::string(e.what()).find("layer 0 (Conv2d)") != std::string::npos;
  }
  CHECK(threw);
}

// Sizes: every Shape is bounded (dims and element count <= 2^40), sizes computed from shapes
// use checked arithmetic, and a layer whose output or workspace would not fit is a Shape error
// naming the layer; constructor arguments the core cannot hold are Value errors.
template <typename F>
bool throws(F f, ErrorKind kind, const std::string& needle = "") {
  try {
    f();
  } catch (const Error& e) {
    return e.kind() == kind && std::string(e.what()).find(needle) != std::string::npos;
  }
  return false;
}

TEST(sizes_are_bounded_and_checked) {
  CHECK(Shape({int64_t{1} << 20, int64_t{1} << 20}).numel() == kMaxNumel);
  CHECK(throws([] { Shape({int64_t{1} << 21, int64_t{1} << 20}); }, ErrorKind::Shape, "2^40"));
  CHECK(throws([] { Shape({-1, 3}); }, ErrorKind::Shape, "negative"));
  CHECK(throws([] { Shape({0, int64_t{1} << 41}); }, ErrorKind::Shape));
  Shape raw;  // filled in by hand: checked where it is used
  raw.ndim = 4;
  for (int i = 0; i < 4; ++i) raw.d[i] = int64_t{1} << 16;  // 2^64 elements
  CHECK(throws([&] { (void)raw.numel(); }, ErrorKind::Shape));
  CHECK(throws([] { checked_mul(INT64_MAX / 2, int64_t{3}, "x"); }, ErrorKind::Shape, "x: "));
  CHECK(throws([] { checked_add(INT64_MAX, int64_t{1}, "y"); }, ErrorKind::Shape, "y: "));
  CHECK(throws([] { checked_mul(SIZE_MAX / 2, size_t{3}, "z"); }, ErrorKind::Shape, "z: "));
  CHECK(checked_mul(int64_t{1} << 30, int64_t{1} << 30, "w") == int64_t{1} << 60);
  CHECK(throws([] { make_layer("Linear", {1, int64_t{1} << 62}); }, ErrorKind::Value, "2^40"));
  CHECK(throws([] { make_layer("Conv2d", {1 << 20, 1 << 20, 3, 1, 0}); }, ErrorKind::Value));
  CHECK(throws([] { make_layer("Conv2d", {1, 1, 1, 1, 0x1p61}); }, ErrorKind::Value));
  CHECK(throws([] { make_layer("MaxPool2d", {0x1p62, 1}); }, ErrorKind::Value));
  CHECK(throws([] { make_layer("MaxPool2d", {0x1p63, 1}); }, ErrorKind::Value, "integer"));
  CHECK(throws([] { make_layer("MaxPool2d", {2.5, 1}); }, ErrorKind::Value, "integer"));
  // The example: padding 2^30 - 1 makes a (1, 1, 2^31, 2^31) output.
  Net net;
  net.add(make_layer("Conv2d", {1, 1, 1, 1, (1 << 30) - 1}));
  net.add(make_layer("MaxPool2d", {int64_t{1} << 31, int64_t{1} << 31}));
  net.add(make_layer("Flatten", {}));
  net.add(make_layer("Linear", {1, 2}));
  CHECK(throws([&] { net.output_shape(Shape{1, 1, 2, 2}); }, ErrorKind::Shape,
               "layer 0 (Conv2d)"));
  CHECK(throws([&] { net.step_bytes(Shape{1, 1, 2, 2}); }, ErrorKind::Shape, "layer 0 (Conv2d)"));
  // A batch so large that its bytes would wrap.
  Net small;
  small.add(make_layer("Flatten", {}));
  small.add(make_layer("Linear", {4, 2}));
  CHECK(throws([&] { small.step_bytes(Shape{int64_t{1} << 62, 4}); }, ErrorKind::Shape));
  CHECK(small.step_bytes(Shape{int64_t{1} << 38, 4})[0].buffers >= size_t{8} << 40);  // no wrap
  // An unrolled-window matrix beyond 2^40 (a large kernel over a large batch).
  auto conv = make_layer("Conv2d", {64, 1, 64, 1, 32});
  CHECK(throws([&] { conv->output_shape(Shape{1 << 16, 64, 64, 64}); }, ErrorKind::Shape,
               "unrolled windows"));
}

TEST(avgpool_by_hand) {
  // 3x4 plane, 2x2 windows, stride 2, padding 1: 2x3 outputs, each over 4 (the padding counts).
  const float x[] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
  float y[6], dx[12];
  avgpool2d_forward_cpu(1, 3, 4, 2, 2, 1, x, y);
  const float want[] = {1 / 4.f, 5 / 4.f, 4 / 4.f, 14 / 4.f, 34 / 4.f, 20 / 4.f};
  for (int i = 0; i < 6; ++i) CHECK(y[i] == want[i]);
  const float dy[] = {4, 8, 12, 16, 20, 24};
  avgpool2d_backward_cpu(1, 3, 4, 2, 2, 1, x, dy, dx);
  const float dwant[] = {1, 2, 2, 3, 4, 5, 5, 6, 4, 5, 5, 6};
  for (int i = 0; i < 12; ++i) CHECK(dx[i] == dwant[i]);
  // Adaptive 3x3 of the 3x4 plane: rows one each, columns [0,2), [1,3), [2,4); global: the
  // mean.
  float a[9], g[1], da[4];
  adaptive_avgpool2d_forward_cpu(1, 3, 4, 3, x, a);
  CHECK(a[0] == 1.5f && a[1] == 2.5f && a[2] == 3.5f && a[8] == 11.5f);
  const float row[] = {1, 2, 3, 4};
  adaptive_avgpool2d_forward_cpu(1, 2, 2, 1, row, g);
  CHECK(g[0] == 2.5f);
  const float dg[] = {8};
  adaptive_avgpool2d_backward_cpu(1, 2, 2, 1, row, dg, da);
  for (int i = 0; i < 4; ++i) CHECK(da[i] == 2);
}

TEST(avgpool_backward_with_relu_mask_equals_relu_backward_after_it) {
  const int64_t P = 4, H = 9, W = 7;
  std::vector<float> x = randn(P * H * W, 21);
  for (size_t i = 0; i < x.size(); ++i) x[i] = i % 7 == 0 ? 0.f : std::max(x[i], 0.f);
  x[3] = NAN;
  const int64_t Ho = (H + 2 - 3) / 2 + 1, Wo = (W + 2 - 3) / 2 + 1;
  std::vector<float> dy = randn(P * Ho * Wo, 22), dya = randn(P * 9, 23);
  std::vector<float> pooled(x.size()), want(x.size()), got(x.size());
  avgpool2d_backward_cpu(P, H, W, 3, 2, 1, x.data(), dy.data(), pooled.data());
  relu_backward_cpu(P * H * W, x.data(), pooled.data(), want.data());
  avgpool2d_backward_cpu(P, H, W, 3, 2, 1, x.data(), dy.data(), got.data(), true);
  CHECK(std::memcmp(got.data(), want.data(), got.size() * sizeof(float)) == 0);
  for (int64_t out : {1, 3}) {
    adaptive_avgpool2d_backward_cpu(P, H, W, out, x.data(), dya.data(), pooled.data());
    relu_backward_cpu(P * H * W, x.data(), pooled.data(), want.data());
    adaptive_avgpool2d_backward_cpu(P, H, W, out, x.data(), dya.data(), got.data(), true);
    CHECK(std::memcmp(got.data(), want.data(), got.size() * sizeof(float)) == 0);
  }
}

TEST(new_activations_by_hand) {
  const float x[] = {-2, -0.f, 0.5f, 3};
  const float dy[] = {1, 1, 2, 3};
  float y[4], dx[4];
  leaky_relu_forward_cpu(4, 0.1f, x, y);
  CHECK(y[0] == -0.2f && y[1] == 0 && y[2] == 0.5f && y[3] == 3);
  leaky_relu_backward_cpu(4, 0.1f, x, dy, dx);
  CHECK(dx[0] == 0.1f && dx[1] == 0.1f && dx[2] == 2 && dx[3] == 3);
  tanh_forward_cpu(4, x, y);
  CHECK_NEAR(y[0], std::tanh(-2.0), 1e-7);
  tanh_backward_cpu(4, y, dy, dx);
  CHECK_NEAR(dx[2], 2 * (1 - std::tanh(0.5) * std::tanh(0.5)), 1e-6);
  gelu_forward_cpu(4, x, y);
  CHECK_NEAR(y[3], 3 * 0.5 * (1 + std::erf(3 / std::sqrt(2.0))), 1e-6);
  CHECK(y[1] == 0);
  gelu_backward_cpu(4, x, dy, dx);
  CHECK_NEAR(dx[1], 0.5, 1e-7);  // Phi(0) + 0
  // Conv2d and Linear without bias: no bias parameter; the spec flag is checked.
  CHECK(make_layer("Conv2d", {1, 2, 3, 1, 0, 0})->params().size() == 1);
  CHECK(make_layer("Conv2d", {1, 2, 3, 1, 0})->params().size() == 2);
  CHECK(make_layer("Linear", {3, 2, 0})->params().size() == 1);
  CHECK(throws([] { make_layer("Linear", {3, 2, 2}); }, ErrorKind::Value, "0 or 1"));
  CHECK(throws([] { make_layer("AvgPool2d", {3, 1, 2}); }, ErrorKind::Value, "at most"));
}

TEST(gelu_tanh_and_cumulative_batchnorm_by_hand) {
  const float x[] = {-2, -0.f, 0.5f, 3};
  const float dy[] = {1, 1, 2, 3};
  float y[4], dx[4];
  gelu_tanh_forward_cpu(4, x, y);
  const double u = std::sqrt(2 / M_PI) * (3 + 0.044715 * 27);
  CHECK_NEAR(y[3], 1.5 * (1 + std::tanh(u)), 1e-6);
  CHECK(y[1] == 0);
  gelu_tanh_backward_cpu(4, x, dy, dx);
  CHECK_NEAR(dx[1], 0.5, 1e-7);  // (1 + tanh 0) / 2 + 0
  CHECK(throws([] { make_layer("GELU", {2}); }, ErrorKind::Value, "0 or 1"));
  // momentum=None: the running mean is the plain mean of the batches' means (1, 3, 8 -> 4),
  // whatever the momentum argument says.
  BatchNormArgs a{2, 1, 1, 1e-5, 0.9, /*cumulative=*/true, /*training=*/true, /*relu=*/false};
  float mean = 0, var = 1, stats[2], out[2];
  int64_t count = 0;
  std::vector<float> ws(batchnorm_workspace_cpu(2, 1, 1));
  for (const float m : {1.f, 3.f, 8.f}) {
    const float batch[] = {m - 1, m + 1};
    batchnorm_forward_cpu(a, batch, nullptr, nullptr, &mean, &var, &count, stats, out, ws.data());
  }
  CHECK(count == 3);
  CHECK_NEAR(mean, 4.0, 1e-6);
  CHECK_NEAR(var, 2.0, 1e-6);  // each batch's unbiased variance is 2
}

TEST_MAIN()
