// x (N,I), w (O,I), b (O,) or none -> y (N,O)
#include <optional>

#include "check.h"
#include "column_sum.cuh"
#include "ops_cuda.h"
#include "side_branch.h"
#include "heterocnn/linear.h"

namespace hc {

namespace {

// db[o] = sum over n of dy[n,o] (column_sum.cuh's fixed order).
__global__ void column_sum_kernel(int64_t N, int64_t O, const float* __restrict__ dy,
                                  float* __restrict__ db) {
  column_sums(N, O, dy, [&](int64_t o, float s) { db[o] = s; });
}

void forward(int64_t N, int64_t I, int64_t O, const float* x, const float* w, const float* b,
             float* y, float* ws, bool relu, cudaStream_t stream) {
  GemmEpilogue ep;
  ep.bias = b;
  ep.bias_mode = BiasMode::PerCol;
  ep.relu = relu;
  // A small batch against a wide input leaves few output tiles: split K when given room.
  const int splits = ws ? sgemm_splitk_count(N, O, I) : 1;
  sgemm_splitk_cuda(Trans::N, Trans::T, N, O, I, 1.f, x, I, w, I, 0.f, y, O, splits, ws, ep,
                    stream);
}

// mask: null, or x itself when dx is to be masked by x > 0.
void backward(int64_t N, int64_t I, int64_t O, const float* x, const float* w, const float* dy,
              const float* mask, float* dx, float* dw, float* db, cudaStream_t stream) {
  // dw and db on a side branch beside dx (side_branch.h) when there is a dx.
  std::optional<SideBranch> side;
  if (dx) side.emplace(stream);
  const cudaStream_t wstream = side ? side->stream() : stream;
  // dw (O,I) = dy^T (O,N) * x (N,I)
  sgemm_cuda(Trans::T, Trans::N, O, I, N, 1.f, dy, O, x, I, 0.f, dw, I, wstream);
  if (O > 0 && db) {
    column_sum_kernel<<<column_sum_blocks(O), dim3(32, kColSumRows), 0, wstream>>>(N, O, dy, db);
    HC_CUDA_CHECK_LAUNCH("column_sum_kernel");
  }
  // dx (N,I) = dy (N,O) * w (O,I)
  if (dx) {
    GemmEpilogue ep;
    ep.mask = mask;
    sgemm_epilogue_cuda(Trans::N, Trans::N, N, I, O, 1.f, dy, O, w, I, 0.f, dx, I, ep, stream);
    side->join();
  }
}

}  // namespace

size_t linear_forward_workspace_cuda(int64_t N, int64_t I, int64_t O) {
  return sgemm_splitk_workspace(N, O, sgemm_splitk_count(N, O, I));
}

void linear_forward_cuda(int64_t N, int64_t I, int64_t O, const float* x, const float* w,
                         const float* b, float* y, float* ws, cudaStream_t stream) {
  forward(N, I, O, x, w, b, y, ws, false, stream);
}

void linear_relu_forward_cuda(int64_t N, int64_t I, int64_t O, const float* x, const float* w,
                              const float* b, float* y, float* ws, cudaStream_t stream) {
  forward(N, I, O, x, w, b, y, ws, true, stream);
}

void linear_backward_cuda(int64_t N, int64_t I, int64_t O, const float* x, const float* w,
                          const float* dy, float* dx, float* dw, float* db, bool relu_mask,
                          cudaStream_t stream) {
  backward(N, I, O, x, w, dy, relu_mask ? x : nullptr, dx, dw, db, stream);
}

// The layer on its CUDA device (the CPU side is in core/src/linear.cpp).

size_t Linear::workspace_size_cuda(const Shape& in) const {
  return linear_forward_workspace_cuda(in[0], I_, O_);
}

void Linear::forward_cuda(const Tensor& x, Tensor& y, float* ws, cudaStream_t stream) {
  (fused_relu_ ? linear_relu_forward_cuda : linear_forward_cuda)(
      x.shape[0], I_, O_, x.data, params_[0].value.data(), bias(), y.data, ws, stream);
}

void Linear::backward_cuda(const Tensor& x, const Tensor&, const Tensor& dy, Tensor* dx, float*,
                           cudaStream_t stream) {
  linear_backward_cuda(x.shape[0], I_, O_, x.data, params_[0].value.data(), dy.data,
                       dx ? dx->data : nullptr, params_[0].grad.data(), bias_grad(), masked_dx_,
                       stream);
}

}  // namespace hc
