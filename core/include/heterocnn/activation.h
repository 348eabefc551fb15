// Element-wise activations, as torch.nn.ReLU and torch.nn.Sigmoid.
//   x (any shape) -> y (same shape); backward uses the forward's output y.
#pragma once
#include "heterocnn/layer.h"

namespace hc {

// max(v, 0) with NaN passed through, as torch.relu: every CPU ReLU (the layer's and those fused
// into Conv2d and Linear) applies this one select, so fused and unfused outputs are identical.
inline float relu(float v) { return v > 0.f ? v : (v != v ? v : 0.f); }

void relu_forward_cpu(int64_t n, const float* x, float* y);
void relu_backward_cpu(int64_t n, const float* y, const float* dy, float* dx);
void sigmoid_forward_cpu(int64_t n, const float* x, float* y);
void sigmoid_backward_cpu(int64_t n, const float* y, const float* dy, float* dx);

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

}  // namespace hc
