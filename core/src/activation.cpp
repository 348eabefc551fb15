// x (any shape) -> y (same shape)
#include "heterocnn/activation.h"

#include <cmath>
#include <string>

#include "heterocnn/error.h"
#include "heterocnn/parallel.h"

namespace hc {

void relu_forward_cpu(int64_t n, const float* x, float* y) {
#pragma omp parallel for simd schedule(static) if (parallel : team_pays(2 * n))
  for (int64_t i = 0; i < n; ++i) y[i] = relu(x[i]);
}

void relu_backward_cpu(int64_t n, const float* y, const float* dy, float* dx) {
#pragma omp parallel for simd schedule(static) if (parallel : team_pays(3 * n))
  for (int64_t i = 0; i < n; ++i) {
    const float g = dy[i];  // loaded unconditionally, so the select needs no branch
    dx[i] = y[i] > 0.f ? g : 0.f;
  }
}

void sigmoid_forward_cpu(int64_t n, const float* x, float* y) {
#pragma omp parallel for simd schedule(static) if (parallel : team_pays(2 * n))
  for (int64_t i = 0; i < n; ++i) y[i] = sigmoid(x[i]);
}

void sigmoid_backward_cpu(int64_t n, const float* y, const float* dy, float* dx) {
#pragma omp parallel for simd schedule(static) if (parallel : team_pays(3 * n))
  for (int64_t i = 0; i < n; ++i) dx[i] = dy[i] * y[i] * (1.f - y[i]);
}

void tanh_forward_cpu(int64_t n, const float* x, float* y) {
#pragma omp parallel for simd schedule(static) if (parallel : team_pays(2 * n))
  for (int64_t i = 0; i < n; ++i) y[i] = std::tanh(x[i]);
}

void tanh_backward_cpu(int64_t n, const float* y, const float* dy, float* dx) {
#pragma omp parallel for simd schedule(static) if (parallel : team_pays(3 * n))
  for (int64_t i = 0; i < n; ++i) dx[i] = dy[i] * (1.f - y[i] * y[i]);
}

void leaky_relu_forward_cpu(int64_t n, float slope, const float* x, float* y) {
#pragma omp parallel for simd schedule(static) if (parallel : team_pays(2 * n))
  for (int64_t i = 0; i < n; ++i) {
    const float v = x[i];
    y[i] = v > 0.f ? v : slope * v;  // a NaN takes the second arm and stays NaN
  }
}

void leaky_relu_backward_cpu(int64_t n, float slope, const float* x, const float* dy, float* dx) {
#pragma omp parallel for simd schedule(static) if (parallel : team_pays(3 * n))
  for (int64_t i = 0; i < n; ++i) {
    const float g = dy[i];
    dx[i] = x[i] > 0.f ? g : slope * g;
  }
}

void gelu_forward_cpu(int64_t n, const float* x, float* y) {
#pragma omp parallel for simd schedule(static) if (parallel : team_pays(2 * n))
  for (int64_t i = 0; i < n; ++i) y[i] = gelu(x[i]);
}

void gelu_backward_cpu(int64_t n, const float* x, const float* dy, float* dx) {
#pragma omp parallel for simd schedule(static) if (parallel : team_pays(3 * n))
  for (int64_t i = 0; i < n; ++i) dx[i] = dy[i] * gelu_grad(x[i]);
}

void gelu_tanh_forward_cpu(int64_t n, const float* x, float* y) {
#pragma omp parallel for simd schedule(static) if (parallel : team_pays(2 * n))
  for (int64_t i = 0; i < n; ++i) y[i] = gelu_tanh(x[i]);
}

void gelu_tanh_backward_cpu(int64_t n, const float* x, const float* dy, float* dx) {
#pragma omp parallel for simd schedule(static) if (parallel : team_pays(3 * n))
  for (int64_t i = 0; i < n; ++i) dx[i] = dy[i] * gelu_tanh_grad(x[i]);
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

void Tanh::forward_cpu(const Tensor& x, Tensor& y, float*) {
  tanh_forward_cpu(x.numel(), x.data, y.data);
}

void Tanh::backward_cpu(const Tensor&, const Tensor& y, const Tensor& dy, Tensor* dx, float*) {
  if (dx) tanh_backward_cpu(y.numel(), y.data, dy.data, dx->data);
}

LeakyReLU::LeakyReLU(double negative_slope) : slope_(static_cast<float>(negative_slope)) {
  if (!std::isfinite(negative_slope) || !std::isfinite(slope_))
    fail_value("LeakyReLU(negative_slope=" + std::to_string(negative_slope) +
               "): the slope must be a finite float32");
}

void LeakyReLU::forward_cpu(const Tensor& x, Tensor& y, float*) {
  leaky_relu_forward_cpu(x.numel(), slope_, x.data, y.data);
}

void LeakyReLU::backward_cpu(const Tensor& x, const Tensor&, const Tensor& dy, Tensor* dx,
                             float*) {
  if (dx) leaky_relu_backward_cpu(x.numel(), slope_, x.data, dy.data, dx->data);
}

void GELU::forward_cpu(const Tensor& x, Tensor& y, float*) {
  (tanh_ ? gelu_tanh_forward_cpu : gelu_forward_cpu)(x.numel(), x.data, y.data);
}

void GELU::backward_cpu(const Tensor& x, const Tensor&, const Tensor& dy, Tensor* dx, float*) {
  if (dx)
    (tanh_ ? gelu_tanh_backward_cpu : gelu_backward_cpu)(x.numel(), x.data, dy.data, dx->data);
}

}  // namespace hc
