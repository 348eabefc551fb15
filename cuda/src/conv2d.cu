// x (N,C,H,W), w (M,C,K,K), b (M,) -> y (N,M,Ho,Wo)
// Forward: one batched GEMM launch, y_n (M,HoWo) = w (M,CKK) * col_n (CKK,HoWo) + b, with the
// bias in the epilogue. Backward: dw = dy' (M,N*HoWo) * col^T as one split-K GEMM summed in
// slice order; db by a fixed-order reduction; dcol_n = w^T * dy_n batched, then col2im.
#include <string>

#include "check.h"
#include "launch.h"
#include "ops_cuda.h"
#include "heterocnn/conv2d.h"

namespace hc {

namespace {

bool col_is_input(const ConvGeom& g) { return g.K == 1 && g.stride == 1 && g.pad == 0; }

size_t col_size(const ConvGeom& g, int64_t N) {
  return static_cast<size_t>(g.col_rows() * N * g.col_cols());
}

// dy (N,M,HW) -> dyt (M,N*HW)
__global__ void nchw_to_cn_kernel(int64_t N, int64_t M, int64_t hw, const float* __restrict__ dy,
                                  float* __restrict__ dyt) {
  const int64_t total = N * M * hw;
  for (int64_t idx = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; idx < total;
       idx += (int64_t)gridDim.x * blockDim.x) {
    const int64_t p = idx % hw, m = (idx / hw) % M, n = idx / (hw * M);
    dyt[(m * N + n) * hw + p] = dy[idx];
  }
}

// db[m] = sum of row m of dyt (M, L): one block per row, fixed-order tree.
__global__ void row_sum_kernel(int64_t L, const float* __restrict__ rows, float* __restrict__ out) {
  __shared__ float part[kOpThreads];
  const float* row = rows + blockIdx.x * L;
  float s = 0.f;
  for (int64_t i = threadIdx.x; i < L; i += blockDim.x) s += row[i];
  part[threadIdx.x] = s;
  __syncthreads();
  for (int w = blockDim.x / 2; w > 0; w /= 2) {
    if (threadIdx.x < w) part[threadIdx.x] += part[threadIdx.x + w];
    __syncthreads();
  }
  if (threadIdx.x == 0) out[blockIdx.x] = part[0];
}

int dw_splits(const ConvGeom& g, int64_t N, int64_t M) {
  return sgemm_splitk_count(M, g.col_rows(), N * g.col_cols());
}

void check_geom(const char* fn, const ConvGeom& g, int64_t N, int64_t M) {
  if (N < 0 || M <= 0 || g.C <= 0 || g.K <= 0 || g.stride <= 0 || g.pad < 0 || g.Ho <= 0 ||
      g.Wo <= 0)
    fail_value(std::string(fn) + ": bad geometry (N=" + std::to_string(N) + ", M=" +
               std::to_string(M) + ", C=" + std::to_string(g.C) + ", K=" + std::to_string(g.K) +
               ", Ho=" + std::to_string(g.Ho) + ", Wo=" + std::to_string(g.Wo) + ")");
}

void forward(const ConvGeom& g, int64_t N, int64_t M, const float* x, const float* w,
             const float* b, float* y, float* ws, bool relu, cudaStream_t stream) {
  check_geom("conv2d_forward_cuda", g, N, M);
  if (N == 0) return;
  const int64_t ckk = g.col_rows(), hw = g.col_cols();
  const float* B = x;
  int64_t ldb = hw, sB = g.C * g.H * g.W;
  if (!col_is_input(g)) {
    im2col_cuda(g, N, x, ws, stream);
    B = ws;
    ldb = N * hw;
    sB = hw;
  }
  GemmEpilogue ep;
  ep.bias = b;
  ep.bias_mode = BiasMode::PerRow;
  ep.relu = relu;
  sgemm_batched_cuda(Trans::N, Trans::N, M, hw, ckk, 1.f, w, ckk, 0, B, ldb, sB, 0.f, y, hw,
                     M * hw, N, ep, stream);
}

}  // namespace

size_t conv2d_forward_workspace_cuda(const ConvGeom& g, int64_t N, int64_t) {
  return col_is_input(g) ? 0 : col_size(g, N);
}

size_t conv2d_backward_workspace_cuda(const ConvGeom& g, int64_t N, int64_t M) {
  // col (reused for dcol), dy as (M, N*HoWo), split-K partials of dw.
  return col_size(g, N) + static_cast<size_t>(M * N * g.col_cols()) +
         sgemm_splitk_workspace(M, g.col_rows(), dw_splits(g, N, M));
}

void conv2d_forward_cuda(const ConvGeom& g, int64_t N, int64_t M, const float* x, const float* w,
                         const float* b, float* y, float* ws, cudaStream_t stream) {
  forward(g, N, M, x, w, b, y, ws, false, stream);
}

void conv2d_relu_forward_cuda(const ConvGeom& g, int64_t N, int64_t M, const float* x,
                              const float* w, const float* b, float* y, float* ws,
                              cudaStream_t stream) {
  forward(g, N, M, x, w, b, y, ws, true, stream);
}

void conv2d_backward_cuda(const ConvGeom& g, int64_t N, int64_t M, const float* x,
                          const float* w, const float* dy, float* dx, float* dw, float* db,
                          float* ws, cudaStream_t stream) {
  check_geom("conv2d_backward_cuda", g, N, M);
  const int64_t ckk = g.col_rows(), hw = g.col_cols(), L = N * hw;
  if (N == 0) {  // no samples: zero gradients
    HC_CUDA_CHECK(cudaMemsetAsync(dw, 0, sizeof(float) * M * ckk, stream));
    HC_CUDA_CHECK(cudaMemsetAsync(db, 0, sizeof(float) * M, stream));
    return;
  }
  float* col = ws;
  float* dyt = col + col_size(g, N);
  float* part = dyt + M * L;
  im2col_cuda(g, N, x, col, stream);
  nchw_to_cn_kernel<<<op_blocks(M * L), kOpThreads, 0, stream>>>(N, M, hw, dy, dyt);
  HC_CUDA_CHECK_LAUNCH("nchw_to_cn_kernel");
  // dw (M,CKK) = dyt (M,L) * col^T (L,CKK)
  sgemm_splitk_cuda(Trans::N, Trans::T, M, ckk, L, 1.f, dyt, L, col, L, 0.f, dw, ckk,
                    dw_splits(g, N, M), part, GemmEpilogue{}, stream);
  row_sum_kernel<<<static_cast<unsigned>(M), kOpThreads, 0, stream>>>(L, dyt, db);
  HC_CUDA_CHECK_LAUNCH("row_sum_kernel");
  if (!dx) return;
  // dcol_n (CKK,HoWo) = w^T (CKK,M) * dy_n (M,HoWo), into col's place (col is no longer needed).
  if (col_is_input(g)) {
    sgemm_batched_cuda(Trans::T, Trans::N, ckk, hw, M, 1.f, w, ckk, 0, dy, hw, M * hw, 0.f, dx,
                       hw, g.C * g.H * g.W, N, GemmEpilogue{}, stream);
    return;
  }
  sgemm_batched_cuda(Trans::T, Trans::N, ckk, hw, M, 1.f, w, ckk, 0, dy, hw, M * hw, 0.f, col,
                     L, hw, N, GemmEpilogue{}, stream);
  col2im_cuda(g, N, col, dx, stream);
}

// The layer on its CUDA device (the CPU side is in core/src/conv2d.cpp).

size_t Conv2d::workspace_size_cuda(const Shape& in) const {
  const ConvGeom g = geom(in);
  return std::max(conv2d_forward_workspace_cuda(g, in[0], M_),
                  conv2d_backward_workspace_cuda(g, in[0], M_));
}

void Conv2d::forward_cuda(const Tensor& x, Tensor& y, float* ws, cudaStream_t stream) {
  conv2d_forward_cuda(geom(x.shape), x.shape[0], M_, x.data, weight(), bias(), y.data, ws, stream);
}

void Conv2d::backward_cuda(const Tensor& x, const Tensor&, const Tensor& dy, Tensor* dx,
                           float* ws, cudaStream_t stream) {
  conv2d_backward_cuda(geom(x.shape), x.shape[0], M_, x.data, weight(), dy.data,
                       dx ? dx->data : nullptr, params_[0].grad.data(), params_[1].grad.data(),
                       ws, stream);
}

}  // namespace hc
