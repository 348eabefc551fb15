// x (N,C,H,W), w (M,C,K,K), b (M,) or none -> y (N,M,Ho,Wo)
#include "heterocnn/conv2d.h"

#include <algorithm>

#include "conv_direct.h"
#include "cpu_features.h"
#include "heterocnn/activation.h"
#include "heterocnn/error.h"
#include "heterocnn/gemm.h"
#include "heterocnn/parallel.h"

namespace hc {

namespace {

// A 1x1 kernel with stride 1 and no padding reads the image as its own im2col matrix.
bool col_is_input(const ConvGeom& g) { return g.K == 1 && g.stride == 1 && g.pad == 0; }

size_t col_size(const ConvGeom& g) {
  return static_cast<size_t>(checked_mul(g.col_rows(), g.col_cols(), "Conv2d im2col matrix"));
}

ConvPath& forced_path() {
  static ConvPath path = ConvPath::Auto;
  return path;
}

enum class Pass { Forward, WeightGrad, InputGrad };

// Whether the direct kernels (conv_direct.h) compute this pass: wherever they apply, except the
// weight gradient of convolutions with many input channels on rows of one vector (14 x 14),
// where the GEMM over im2row's matrix was measured faster (CPU_PERF.md, entry 8).
bool use_direct(const ConvGeom& g, Pass pass) {
  if (forced_path() == ConvPath::Gemm || !conv_direct::fits(g) || !cpu_has_avx512f()) return false;
  return forced_path() == ConvPath::Direct || pass != Pass::WeightGrad || g.col_rows() <= 150 ||
         g.Wo > 16;
}

// Floats of the direct path's rearranged weights (forward's wt, backward's wf), at ws.
size_t direct_weights_size(const ConvGeom& g, int64_t M) {
  return conv_direct::fits(g) ? static_cast<size_t>(M * g.col_rows()) : 0;
}

// Floats of backward's per-thread part: the unrolled sample, dw and db partials.
size_t backward_per_thread(const ConvGeom& g, int64_t M) {
  return col_size(g) + static_cast<size_t>(M * g.col_rows() + M);
}

// The fused ReLU over one sample's output, still in cache after its GEMM (activation.h's
// select), on the calling thread: it runs inside the per-sample parallel loop.
void relu_in_place(int64_t n, float* y) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) y[i] = relu(y[i]);
}

}  // namespace

void conv2d_force_path(ConvPath path) { forced_path() = path; }

// Sizes below are products of bounded shapes (Conv2d::output_shape: the batch's unrolled
// windows fit in 2^40 elements) and the thread count, checked all the same.
size_t conv2d_forward_workspace_cpu(const ConvGeom& g, int64_t M, int threads) {
  // GEMM path: [w | b], and per thread the unrolled sample with a row of ones below it.
  // Direct path: the weights k-major. Sized for either, so that the path may be forced.
  constexpr const char* what = "Conv2d forward workspace";
  const size_t gemm =
      col_is_input(g)
          ? 0
          : checked_add(checked_mul(static_cast<size_t>(M), static_cast<size_t>(g.col_rows()) + 1,
                                    what),
                        checked_mul(col_size(g) + static_cast<size_t>(g.col_cols()),
                                    static_cast<size_t>(threads), what),
                        what);
  return std::max(gemm, direct_weights_size(g, M));
}

size_t conv2d_backward_workspace_cpu(const ConvGeom& g, int64_t M, int threads) {
  // The direct dx's flipped weights, then each thread's part (either path).
  constexpr const char* what = "Conv2d backward workspace";
  return checked_add(direct_weights_size(g, M),
                     checked_mul(backward_per_thread(g, M), static_cast<size_t>(threads), what),
                     what);
}

void conv2d_forward_cpu(const ConvGeom& g, int64_t N, int64_t M, const float* x, const float* w,
                        const float* b, float* y, float* ws, bool relu) {
  const int64_t ckk = g.col_rows(), hw = g.col_cols(), in_n = g.C * g.H * g.W;
  if (col_is_input(g)) {
#pragma omp parallel for schedule(static)
    for (int64_t n = 0; n < N; ++n) {
      float* yn = y + n * M * hw;
      if (b)
        for (int64_t m = 0; m < M; ++m) std::fill(yn + m * hw, yn + (m + 1) * hw, b[m]);
      sgemm(Trans::N, Trans::N, M, hw, ckk, 1.f, w, ckk, x + n * in_n, hw, b ? 1.f : 0.f, yn,
            hw);
      if (relu) relu_in_place(M * hw, yn);
    }
    return;
  }
  if (use_direct(g, Pass::Forward)) {
    float* wt = ws;  // (CKK, M): wt[k * M + m] = w[m, k]
    for (int64_t m = 0; m < M; ++m)
      for (int64_t k = 0; k < ckk; ++k) wt[k * M + m] = w[m * ckk + k];
#pragma omp parallel for schedule(static)
    for (int64_t n = 0; n < N; ++n)
      conv_direct::forward(g, M, x + n * in_n, wt, b, y + n * M * hw, relu);
    return;
  }
  // y_n = [w | b] (M,CKK+1) * [col(x_n); 1] (CKK+1,HoWo): the bias is one more step of the
  // GEMM's reduction, so y is written once (no bias fill, no read-back of C). Without a bias,
  // y_n = w * col(x_n).
  const int64_t kb = b ? ckk + 1 : ckk;
  const float* wb = w;
  if (b) {
    float* wbias = ws;
    for (int64_t m = 0; m < M; ++m) {
      std::copy(w + m * ckk, w + (m + 1) * ckk, wbias + m * kb);
      wbias[m * kb + ckk] = b[m];
    }
    wb = wbias;
  }
  float* cols = ws + M * (ckk + 1);
#pragma omp parallel for schedule(static)
  for (int64_t n = 0; n < N; ++n) {
    float* col = cols + thread_id() * (col_size(g) + hw);
    im2col_cpu(g, x + n * in_n, col);
    std::fill(col + ckk * hw, col + kb * hw, 1.f);  // the ones row (none without a bias)
    float* yn = y + n * M * hw;
    sgemm(Trans::N, Trans::N, M, hw, kb, 1.f, wb, kb, col, hw, 0.f, yn, hw);
    if (relu) relu_in_place(M * hw, yn);
  }
}

namespace {

// db_t[m] += the sum of dy_n's plane m.
void add_bias_grad(int64_t M, int64_t hw, const float* dyn, float* db_t) {
  for (int64_t m = 0; m < M; ++m) {
    const float* d = dyn + m * hw;
    float s = 0.f;
#pragma omp simd reduction(+ : s)
    for (int64_t i = 0; i < hw; ++i) s += d[i];
    db_t[m] += s;
  }
}

}  // namespace

void conv2d_backward_cpu(const ConvGeom& g, int64_t N, int64_t M, const float* x,
                         const float* w, const float* dy, float* dx, float* dw, float* db,
                         float* ws, bool relu_mask) {
  const int64_t ckk = g.col_rows(), hw = g.col_cols(), in_n = g.C * g.H * g.W, K = g.K;
  const bool dw_direct = use_direct(g, Pass::WeightGrad);
  const bool dx_direct = dx && use_direct(g, Pass::InputGrad);
  // The direct dx: dx_n = conv(dy_n, wf), dy (M,Ho,Wo) -> dx (C,H,W) padded by K-1-pad, with
  // the kernel transposed and flipped, stored k-major:
  //   wf[((m*K + kh)*K + kw) * C + c] = w[m, c, K-1-kh, K-1-kw].
  const ConvGeom gt = make_conv_geom(M, g.Ho, g.Wo, K, 1, K - 1 - g.pad);
  float* wf = ws;
  if (dx_direct)
    for (int64_t m = 0; m < M; ++m)
      for (int64_t c = 0; c < g.C; ++c)
        for (int64_t kh = 0; kh < K; ++kh)
          for (int64_t kw = 0; kw < K; ++kw)
            wf[((m * K + kh) * K + kw) * g.C + c] =
                w[((m * g.C + c) * K + K - 1 - kh) * K + K - 1 - kw];
  float* parts = ws + direct_weights_size(g, M);
  const size_t per_thread = backward_per_thread(g, M);
  int team = 1;
#pragma omp parallel
  {
    // This thread's unrolled sample (reused for dcol), and dw and db partials.
    float* col = parts + thread_id() * per_thread;
    float* dw_t = col + col_size(g);
    float* db_t = dw_t + M * ckk;
    std::fill(dw_t, db_t + M, 0.f);
#pragma omp single
    team = team_size();
    if (dw_direct) {
      // This thread's share of the samples, in groups whose x and dy stay in L2 (~256 KiB)
      // while the kernel sweeps them once per (channel block, kernel row).
      const int64_t n0 = N * thread_id() / team, n1 = N * (thread_id() + 1) / team;
      const int64_t group = std::max<int64_t>(1, (64 << 10) / (in_n + M * hw));
      for (int64_t n = n0; n < n1; n += group)
        conv_direct::weight_grad(g, M, std::min(group, n1 - n), x + n * in_n, dy + n * M * hw,
                                 dw_t);
    }
#pragma omp for schedule(static)
    for (int64_t n = 0; n < N; ++n) {
      const float* xn = x + n * in_n;
      const float* dyn = dy + n * M * hw;
      // dw += dy_n (M,HoWo) * col^T (HoWo,CKK). The windows are unrolled as rows (im2row), so
      // that col^T is read in place, k-major, instead of being transposed into packed panels.
      if (dw_direct)
        ;  // done above
      else if (col_is_input(g))
        sgemm(Trans::N, Trans::T, M, ckk, hw, 1.f, dyn, hw, xn, hw, 1.f, dw_t, ckk);
      else {
        im2row_cpu(g, xn, col);
        sgemm(Trans::N, Trans::N, M, ckk, hw, 1.f, dyn, hw, col, ckk, 1.f, dw_t, ckk);
      }
      if (db) add_bias_grad(M, hw, dyn, db_t);
      if (!dx) continue;
      // dcol (CKK,HoWo) = w^T (CKK,M) * dy_n (M,HoWo), then folded back into dx_n.
      float* dxn = dx + n * in_n;
      if (dx_direct) {
        conv_direct::forward(gt, g.C, dyn, wf, nullptr, dxn, false);
      } else if (col_is_input(g)) {
        sgemm(Trans::T, Trans::N, ckk, hw, M, 1.f, w, ckk, dyn, hw, 0.f, dxn, hw);
      } else {
        sgemm(Trans::T, Trans::N, ckk, hw, M, 1.f, w, ckk, dyn, hw, 0.f, col, hw);
        col2im_cpu(g, col, dxn);
      }
      if (relu_mask) relu_backward_cpu(in_n, xn, dxn, dxn);
    }
    // Sum the partials in thread order, so a fixed thread count gives bit-identical results.
    const float* first = parts + col_size(g);
#pragma omp for schedule(static)
    for (int64_t i = 0; i < M * ckk + (db ? M : 0); ++i) {
      float s = 0.f;
      for (int t = 0; t < team; ++t) s += first[t * per_thread + i];
      (i < M * ckk ? dw[i] : db[i - M * ckk]) = s;
    }
  }
}

Conv2d::Conv2d(int64_t in_channels, int64_t out_channels, int64_t kernel, int64_t stride,
               int64_t padding, bool bias)
    : C_(in_channels), M_(out_channels), K_(kernel), stride_(stride), pad_(padding) {
  if (C_ <= 0 || M_ <= 0 || K_ <= 0 || stride_ <= 0 || pad_ < 0)
    fail_value("Conv2d(in_channels=" + std::to_string(C_) + ", out_channels=" +
               std::to_string(M_) + ", kernel_size=" + std::to_string(K_) + ", stride=" +
               std::to_string(stride_) + ", padding=" + std::to_string(pad_) +
               "): sizes and stride must be positive and padding non-negative");
  if (!fits_numel({M_, C_, K_, K_}) || stride_ > kMaxNumel || pad_ > kMaxNumel)
    fail_value("Conv2d(in_channels=" + std::to_string(C_) + ", out_channels=" +
               std::to_string(M_) + ", kernel_size=" + std::to_string(K_) + ", stride=" +
               std::to_string(stride_) + ", padding=" + std::to_string(pad_) +
               "): the weight would hold more than 2^40 elements, or stride or padding exceeds "
               "2^40");
  add_param("weight", Shape{M_, C_, K_, K_});
  if (bias) add_param("bias", Shape{M_});
}

ConvGeom Conv2d::geom(const Shape& in) const {
  return make_conv_geom(C_, in[2], in[3], K_, stride_, pad_);
}

Shape Conv2d::output_shape(const Shape& in) const {
  if (in.ndim != 4 || in[1] != C_)
    fail_shape("Conv2d(" + std::to_string(C_) + ", " + std::to_string(M_) + ") expects input (N, " +
               std::to_string(C_) + ", H, W), got " + in.str());
  in.check();  // every dim <= 2^40, so H + 2 * pad cannot overflow
  if (in[2] + 2 * pad_ < K_ || in[3] + 2 * pad_ < K_)
    fail_shape("Conv2d kernel " + std::to_string(K_) + " with padding " + std::to_string(pad_) +
               " does not fit input " + in.str());
  const ConvGeom g = geom(in);
  if (!fits_numel({in[0], M_, g.Ho, g.Wo}))
    fail_shape("Conv2d kernel " + std::to_string(K_) + ", stride " + std::to_string(stride_) +
               ", padding " + std::to_string(pad_) + " on input " + in.str() + " gives output (" +
               std::to_string(in[0]) + ", " + std::to_string(M_) + ", " + std::to_string(g.Ho) +
               ", " + std::to_string(g.Wo) + "), more than 2^40 elements");
  // The unrolled windows of the whole batch (N x C*K*K x Ho*Wo: the CUDA backward's col
  // matrix, and N times the CPU's per-thread one) must be addressable too, so that every
  // workspace product stays in range.
  if (!fits_numel({in[0], g.col_rows(), g.col_cols()}))
    fail_shape("Conv2d kernel " + std::to_string(K_) + " on input " + in.str() +
               ": the unrolled windows (N * C*K*K * Ho*Wo = " + std::to_string(in[0]) + " * " +
               std::to_string(g.col_rows()) + " * " + std::to_string(g.col_cols()) +
               ") exceed 2^40 elements");
  return Shape{in[0], M_, g.Ho, g.Wo};
}

size_t Conv2d::workspace_size_cpu(const Shape& in, int threads) const {
  const ConvGeom g = geom(in);
  return std::max(conv2d_forward_workspace_cpu(g, M_, threads),
                  conv2d_backward_workspace_cpu(g, M_, threads));
}

void Conv2d::forward_cpu(const Tensor& x, Tensor& y, float* ws) {
  conv2d_forward_cpu(geom(x.shape), x.shape[0], M_, x.data, weight(), bias(), y.data, ws,
                     fused_relu_);
}

void Conv2d::backward_cpu(const Tensor& x, const Tensor&, const Tensor& dy, Tensor* dx,
                          float* ws) {
  conv2d_backward_cpu(geom(x.shape), x.shape[0], M_, x.data, weight(), dy.data,
                      dx ? dx->data : nullptr, params_[0].grad.data(), bias_grad(), ws, masked_dx_);
}

}  // namespace hc
