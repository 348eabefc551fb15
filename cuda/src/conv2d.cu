// x (N,C,H,W), w (M,C,K,K), b (M,) or none -> y (N,M,Ho,Wo)
// Every pass is an implicit GEMM (conv_gemm.cu) that gathers the im2col entries while loading
// its tiles, so the unrolled matrix never goes through device memory: forward with bias (and
// ReLU) in the epilogue; dw and db together as one split GEMM over N*Ho*Wo summed in slice
// order; dx as the forward convolution of dy with the flipped kernel. Only a dx of stride > 1
// (or pad >= K) takes the explicit path: dcol_n = w^T * dy_n batched, then col2im.
#include <algorithm>
#include <string>

#include "check.h"
#include "conv_gemm_cuda.h"
#include "ops_cuda.h"
#include "side_branch.h"
#include "heterocnn/conv2d.h"

namespace hc {

namespace {

size_t col_size(const ConvGeom& g, int64_t N) {
  return static_cast<size_t>(g.col_rows() * N * g.col_cols());
}

// dw's slice partials, rounded up to whole 256-byte lines so that dx's part stays aligned.
size_t wgrad_workspace(const ConvGeom& g, int64_t N, int64_t M) {
  return (conv2d_implicit_wgrad_workspace(g, N, M) + 63) / 64 * 64;
}

size_t dgrad_workspace(const ConvGeom& g, int64_t N, int64_t M) {
  return conv2d_implicit_dgrad_fits(g) ? conv2d_implicit_dgrad_workspace(g, M) : col_size(g, N);
}

void check_geom(const char* fn, const ConvGeom& g, int64_t N, int64_t M) {
  if (N < 0 || M <= 0 || g.C <= 0 || g.K <= 0 || g.stride <= 0 || g.pad < 0 || g.Ho <= 0 ||
      g.Wo <= 0)
    fail_value(std::string(fn) + ": bad geometry (N=" + std::to_string(N) + ", M=" +
               std::to_string(M) + ", C=" + std::to_string(g.C) + ", K=" + std::to_string(g.K) +
               ", Ho=" + std::to_string(g.Ho) + ", Wo=" + std::to_string(g.Wo) + ")");
}

void forward(const ConvGeom& g, int64_t N, int64_t M, const float* x, const float* w,
             const float* b, float* y, bool relu, cudaStream_t stream) {
  check_geom("conv2d_forward_cuda", g, N, M);
  if (N == 0) return;
  conv2d_implicit_forward_cuda(g, N, M, x, w, b, relu, y, stream);
}

// mask: null, or x itself when dx is to be masked by x > 0.
void backward(const ConvGeom& g, int64_t N, int64_t M, const float* x, const float* w,
              const float* dy, const float* mask, float* dx, float* dw, float* db, float* ws,
              cudaStream_t stream) {
  check_geom("conv2d_backward_cuda", g, N, M);
  const int64_t ckk = g.col_rows(), hw = g.col_cols();
  if (N == 0) {  // no samples: zero gradients
    HC_CUDA_CHECK(cudaMemsetAsync(dw, 0, sizeof(float) * M * ckk, stream));
    if (db) HC_CUDA_CHECK(cudaMemsetAsync(db, 0, sizeof(float) * M, stream));
    return;
  }
  if (!dx) {
    conv2d_implicit_wgrad_cuda(g, N, M, x, dy, dw, db, ws, stream);
    return;
  }
  // dw and db on a side branch, beside dx (side_branch.h): both only read dy, and each has its
  // own part of the workspace.
  SideBranch side(stream);
  conv2d_implicit_wgrad_cuda(g, N, M, x, dy, dw, db, ws, side.stream());
  float* dx_ws = ws + wgrad_workspace(g, N, M);
  if (conv2d_implicit_dgrad_fits(g)) {
    conv2d_implicit_dgrad_cuda(g, N, M, w, dy, mask, dx, dx_ws, stream);
  } else {
    // dcol_n (CKK,HoWo) = w^T (CKK,M) * dy_n (M,HoWo), into col (N*HoWo columns), then col2im.
    sgemm_batched_cuda(Trans::T, Trans::N, ckk, hw, M, 1.f, w, ckk, 0, dy, hw, M * hw, 0.f,
                       dx_ws, N * hw, hw, N, GemmEpilogue{}, stream);
    col2im_masked_cuda(g, N, dx_ws, mask, dx, stream);
  }
  side.join();
}

}  // namespace

size_t conv2d_forward_workspace_cuda(const ConvGeom&, int64_t, int64_t) { return 0; }

size_t conv2d_backward_workspace_cuda(const ConvGeom& g, int64_t N, int64_t M) {
  // dw's slice partials, then dx's flipped kernel or col: side by side, as they run at once.
  return wgrad_workspace(g, N, M) + dgrad_workspace(g, N, M);
}

void conv2d_forward_cuda(const ConvGeom& g, int64_t N, int64_t M, const float* x, const float* w,
                         const float* b, float* y, float*, cudaStream_t stream) {
  forward(g, N, M, x, w, b, y, false, stream);
}

void conv2d_relu_forward_cuda(const ConvGeom& g, int64_t N, int64_t M, const float* x,
                              const float* w, const float* b, float* y, float*,
                              cudaStream_t stream) {
  forward(g, N, M, x, w, b, y, true, stream);
}

void conv2d_backward_cuda(const ConvGeom& g, int64_t N, int64_t M, const float* x,
                          const float* w, const float* dy, float* dx, float* dw, float* db,
                          float* ws, bool relu_mask, cudaStream_t stream) {
  backward(g, N, M, x, w, dy, relu_mask ? x : nullptr, dx, dw, db, ws, stream);
}

// The layer on its CUDA device (the CPU side is in core/src/conv2d.cpp).

size_t Conv2d::workspace_size_cuda(const Shape& in) const {
  const ConvGeom g = geom(in);
  return std::max(conv2d_forward_workspace_cuda(g, in[0], M_),
                  conv2d_backward_workspace_cuda(g, in[0], M_));
}

void Conv2d::forward_cuda(const Tensor& x, Tensor& y, float* ws, cudaStream_t stream) {
  (fused_relu_ ? conv2d_relu_forward_cuda : conv2d_forward_cuda)(
      geom(x.shape), x.shape[0], M_, x.data, weight(), bias(), y.data, ws, stream);
}

void Conv2d::backward_cuda(const Tensor& x, const Tensor&, const Tensor& dy, Tensor* dx,
                           float* ws, cudaStream_t stream) {
  conv2d_backward_cuda(geom(x.shape), x.shape[0], M_, x.data, weight(), dy.data,
                       dx ? dx->data : nullptr, params_[0].grad.data(), bias_grad(), ws,
                       masked_dx_, stream);
}

}  // namespace hc
