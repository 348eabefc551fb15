// x (N,I), w (O,I), b (O,) -> y (N,O)
#include "heterocnn/linear.h"

#include <algorithm>

#include "heterocnn/activation.h"
#include "heterocnn/error.h"
#include "heterocnn/gemm.h"
#include "heterocnn/parallel.h"

namespace hc {

void linear_forward_cpu(int64_t N, int64_t I, int64_t O, const float* x, const float* w,
                        const float* b, float* y, bool relu) {
  // y starts as the bias (each element a read of b and a write of y), rows over the team, and
  // the GEMM adds x w^T to it (beta 1): the bias's rounding comes first, as in torch's addmm.
  if (b) {
#pragma omp parallel for schedule(static) if (team_pays(2 * N * O))
    for (int64_t n = 0; n < N; ++n) std::copy(b, b + O, y + n * O);
  }
  sgemm(Trans::N, Trans::T, N, O, I, 1.f, x, I, w, I, b ? 1.f : 0.f, y, O);
  if (relu) relu_forward_cpu(N * O, y, y);  // the fused ReLU, while y is still in cache
}

void linear_backward_cpu(int64_t N, int64_t I, int64_t O, const float* x, const float* w,
                         const float* dy, float* dx, float* dw, float* db, bool relu_mask) {
  // dw (O,I) = dy^T (O,N) * x (N,I)
  sgemm(Trans::T, Trans::N, O, I, N, 1.f, dy, O, x, I, 0.f, dw, I);
  // db (O,) = column sums of dy, each summed over the rows in order (the same for every build
  // and thread count); each thread of the team takes a range of whole cache lines of columns.
  if (db) {
#pragma omp parallel if (team_pays(N * O))
    {
      const int t = thread_id(), team = team_size();
      const int64_t o0 = split_at(O, t, team), o1 = split_at(O, t + 1, team);
      float* __restrict__ s = db;
      for (int64_t o = o0; o < o1; ++o) s[o] = 0.f;
      for (int64_t n = 0; n < N; ++n) {
        const float* __restrict__ d = dy + n * O;
#pragma omp simd
        for (int64_t o = o0; o < o1; ++o) s[o] += d[o];
      }
    }
  }
  // dx (N,I) = dy (N,O) * w (O,I)
  if (!dx) return;
  sgemm(Trans::N, Trans::N, N, I, O, 1.f, dy, O, w, I, 0.f, dx, I);
  if (relu_mask) relu_backward_cpu(N * I, x, dx, dx);
}

Linear::Linear(int64_t in_features, int64_t out_features, bool bias)
    : I_(in_features), O_(out_features) {
  if (I_ <= 0 || O_ <= 0)
    fail_value("Linear(in_features=" + std::to_string(I_) + ", out_features=" +
               std::to_string(O_) + "): sizes must be positive");
  if (!fits_numel({O_, I_}))
    fail_value("Linear(in_features=" + std::to_string(I_) + ", out_features=" +
               std::to_string(O_) + "): the weight would hold more than 2^40 elements");
  add_param("weight", Shape{O_, I_});
  if (bias) add_param("bias", Shape{O_});
}

Shape Linear::output_shape(const Shape& in) const {
  if (in.ndim != 2 || in[1] != I_)
    fail_shape("Linear(" + std::to_string(I_) + ", " + std::to_string(O_) +
               ") expects input (N, " + std::to_string(I_) + "), got " + in.str() +
               (in.ndim > 2 ? " (add a Flatten before it)" : ""));
  return Shape{in[0], O_};
}

void Linear::forward_cpu(const Tensor& x, Tensor& y, float*) {
  linear_forward_cpu(x.shape[0], I_, O_, x.data, params_[0].value.data(), bias(), y.data,
                     fused_relu_);
}

void Linear::backward_cpu(const Tensor& x, const Tensor&, const Tensor& dy, Tensor* dx, float*) {
  linear_backward_cpu(x.shape[0], I_, O_, x.data, params_[0].value.data(), dy.data,
                      dx ? dx->data : nullptr, params_[0].grad.data(), bias_grad(), masked_dx_);
}

}  // namespace hc
