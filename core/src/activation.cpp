// x (any shape) -> y (same shape)
#include "heterocnn/activation.h"

#include <cmath>

namespace hc {

// Below this many elements a loop is cheaper on one thread than waking the team.
constexpr int64_t kParallelElems = 1 << 16;

void relu_forward_cpu(int64_t n, const float* x, float* y) {
#pragma omp parallel for simd schedule(static) if (parallel : n > kParallelElems)
  for (int64_t i = 0; i < n; ++i) y[i] = relu(x[i]);
}

void relu_backward_cpu(int64_t n, const float* y, const float* dy, float* dx) {
#pragma omp parallel for simd schedule(static) if (parallel : n > kParallelElems)
  for (int64_t i = 0; i < n; ++i) {
    const float g = dy[i];  // loaded unconditionally, so the select needs no branch
    dx[i] = y[i] > 0.f ? g : 0.f;
  }
}

void sigmoid_forward_cpu(int64_t n, const float* x, float* y) {
#pragma omp parallel for simd schedule(static) if (parallel : n > kParallelElems)
  for (int64_t i = 0; i < n; ++i) y[i] = 1.f / (1.f + std::exp(-x[i]));
}

void sigmoid_backward_cpu(int64_t n, const float* y, const float* dy, float* dx) {
#pragma omp parallel for simd schedule(static) if (parallel : n > kParallelElems)
  for (int64_t i = 0; i < n; ++i) dx[i] = dy[i] * y[i] * (1.f - y[i]);
}

void ReLU::forward_cpu(const Tensor& x, Tensor& y, float*) {
  relu_forward_cpu(x.numel(), x.data, y.data);
}

void ReLU::backward_cpu(const Tensor&, const Tensor& y, const Tensor& dy, Tensor* dx, float*) {
  if (dx) relu_backward_cpu(y.numel(), y.data, dy.data, dx->data);
}

void Sigmoid::forward_cpu(const Tensor& x, Tensor& y, float*) {
  sigmoid_forward_cpu(x.numel(), x.data, y.data);
}

void Sigmoid::backward_cpu(const Tensor&, const Tensor& y, const Tensor& dy, Tensor* dx,
                           float*) {
  if (dx) sigmoid_backward_cpu(y.numel(), y.data, dy.data, dx->data);
}

}  // namespace hc
