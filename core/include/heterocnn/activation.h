// Element-wise activations, as torch.nn.ReLU, Sigmoid, Tanh, LeakyReLU and GELU (both forms).
//   x (any shape) -> y (same shape); backward uses the forward's output y (ReLU, Sigmoid,
//   Tanh) or its input x (LeakyReLU, GELU).
#pragma once
#include <cmath>

#include "heterocnn/host_device.h"
#include "heterocnn/layer.h"

namespace hc {

// max(v, 0) with NaN passed through, as torch.relu: every ReLU (the layer's and those fused
// into Conv2d and Linear, on the CPU and in the CUDA kernels) applies this one select, so fused
// and unfused outputs are identical.
HC_HOST_DEVICE float relu(float v) { return v > 0.f ? v : (v != v ? v : 0.f); }
HC_HOST_DEVICE float sigmoid(float v) { return 1.f / (1.f + expf(-v)); }

void relu_forward_cpu(int64_t n, const float* x, float* y);
void relu_backward_cpu(int64_t n, const float* y, const float* dy, float* dx);
void sigmoid_forward_cpu(int64_t n, const float* x, float* y);
void sigmoid_backward_cpu(int64_t n, const float* y, const float* dy, float* dx);
void tanh_forward_cpu(int64_t n, const float* x, float* y);
void tanh_backward_cpu(int64_t n, const float* y, const float* dy, float* dx);
// y = x > 0 ? x : slope * x (NaN passes through); dx = x > 0 ? dy : slope * dy, as torch.
void leaky_relu_forward_cpu(int64_t n, float slope, const float* x, float* y);
void leaky_relu_backward_cpu(int64_t n, float slope, const float* x, const float* dy, float* dx);
// The exact GELU: y = x * Phi(x) = x/2 * (1 + erf(x / sqrt 2));
// dx = dy * (Phi(x) + x * phi(x)), phi the standard normal density (constants for both sides).
constexpr float kSqrtHalf = 0.70710678118654752f;    // 1 / sqrt(2)
constexpr float kInvSqrt2Pi = 0.39894228040143268f;  // 1 / sqrt(2 pi)
HC_HOST_DEVICE float gelu(float v) { return 0.5f * v * (1.f + erff(v * kSqrtHalf)); }
HC_HOST_DEVICE float gelu_grad(float v) {  // dy/dx
  return 0.5f * (1.f + erff(v * kSqrtHalf)) + v * kInvSqrt2Pi * expf(-0.5f * v * v);
}
void gelu_forward_cpu(int64_t n, const float* x, float* y);
void gelu_backward_cpu(int64_t n, const float* x, const float* dy, float* dx);
// The tanh approximation (torch's approximate='tanh'): with u = sqrt(2/pi) (x + 0.044715 x^3),
// y = x/2 * (1 + tanh u); dx = dy * ((1 + tanh u)/2 + x/2 (1 - tanh^2 u) sqrt(2/pi)
// (1 + 3 * 0.044715 x^2)).
constexpr float kSqrt2OverPi = 0.79788456080286536f;  // sqrt(2 / pi)
constexpr float kGeluCubic = 0.044715f;
HC_HOST_DEVICE float gelu_tanh(float v) {
  return 0.5f * v * (1.f + tanhf(kSqrt2OverPi * (v + kGeluCubic * v * v * v)));
}
HC_HOST_DEVICE float gelu_tanh_grad(float v) {  // dy/dx
  const float t = tanhf(kSqrt2OverPi * (v + kGeluCubic * v * v * v));
  const float du = kSqrt2OverPi * (1.f + 3.f * kGeluCubic * v * v);  // d u / d x
  return 0.5f * (1.f + t) + 0.5f * v * (1.f - t * t) * du;
}
void gelu_tanh_forward_cpu(int64_t n, const float* x, float* y);
void gelu_tanh_backward_cpu(int64_t n, const float* x, const float* dy, float* dx);

class ReLU : public Layer {
 public:
  std::string kind() const override { return "ReLU"; }
  Shape output_shape(const Shape& in) const override {
    in.check();
    return in;
  }

 protected:
  void forward_cpu(const Tensor& x, Tensor& y, float* ws) override;
  void backward_cpu(const Tensor& x, const Tensor& y, const Tensor& dy, Tensor* dx,
                    float* ws) override;
#ifdef HC_WITH_CUDA
  void forward_cuda(const Tensor& x, Tensor& y, float* ws, cudaStream_t stream) override;
  void backward_cuda(const Tensor& x, const Tensor& y, const Tensor& dy, Tensor* dx, float* ws,
                     cudaStream_t stream) override;
#endif
};

class Sigmoid : public Layer {
 public:
  std::string kind() const override { return "Sigmoid"; }
  Shape output_shape(const Shape& in) const override {
    in.check();
    return in;
  }

 protected:
  void forward_cpu(const Tensor& x, Tensor& y, float* ws) override;
  void backward_cpu(const Tensor& x, const Tensor& y, const Tensor& dy, Tensor* dx,
                    float* ws) override;
#ifdef HC_WITH_CUDA
  void forward_cuda(const Tensor& x, Tensor& y, float* ws, cudaStream_t stream) override;
  void backward_cuda(const Tensor& x, const Tensor& y, const Tensor& dy, Tensor* dx, float* ws,
                     cudaStream_t stream) override;
#endif
};

// The three below: element-wise layers like ReLU and Sigmoid, no parameters.

class Tanh : public Layer {
 public:
  std::string kind() const override { return "Tanh"; }
  Shape output_shape(const Shape& in) const override {
    in.check();
    return in;
  }

 protected:
  void forward_cpu(const Tensor& x, Tensor& y, float* ws) override;
  void backward_cpu(const Tensor& x, const Tensor& y, const Tensor& dy, Tensor* dx,
                    float* ws) override;
#ifdef HC_WITH_CUDA
  void forward_cuda(const Tensor& x, Tensor& y, float* ws, cudaStream_t stream) override;
  void backward_cuda(const Tensor& x, const Tensor& y, const Tensor& dy, Tensor* dx, float* ws,
                     cudaStream_t stream) override;
#endif
};

class LeakyReLU : public Layer {
 public:
  explicit LeakyReLU(double negative_slope);
  std::string kind() const override { return "LeakyReLU"; }
  Shape output_shape(const Shape& in) const override {
    in.check();
    return in;
  }

 protected:
  void forward_cpu(const Tensor& x, Tensor& y, float* ws) override;
  void backward_cpu(const Tensor& x, const Tensor& y, const Tensor& dy, Tensor* dx,
                    float* ws) override;
#ifdef HC_WITH_CUDA
  void forward_cuda(const Tensor& x, Tensor& y, float* ws, cudaStream_t stream) override;
  void backward_cuda(const Tensor& x, const Tensor& y, const Tensor& dy, Tensor* dx, float* ws,
                     cudaStream_t stream) override;
#endif

 private:
  float slope_;
};

class GELU : public Layer {
 public:
  // tanh: the tanh approximation instead of the exact erf form.
  explicit GELU(bool tanh = false) : tanh_(tanh) {}
  std::string kind() const override { return "GELU"; }
  Shape output_shape(const Shape& in) const override {
    in.check();
    return in;
  }

 protected:
  void forward_cpu(const Tensor& x, Tensor& y, float* ws) override;
  void backward_cpu(const Tensor& x, const Tensor& y, const Tensor& dy, Tensor* dx,
                    float* ws) override;
#ifdef HC_WITH_CUDA
  void forward_cuda(const Tensor& x, Tensor& y, float* ws, cudaStream_t stream) override;
  void backward_cuda(const Tensor& x, const Tensor& y, const Tensor& dy, Tensor* dx, float* ws,
                     cudaStream_t stream) override;
#endif

 private:
  bool tanh_;
};

}  // namespace hc
