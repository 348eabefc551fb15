// Linear: y = x w^T + b over the whole minibatch as one GEMM (thesis 4.3), as torch.nn.Linear.
//   x (N,I), w (O,I), b (O,) or none -> y (N,O)
#pragma once
#include "heterocnn/layer.h"

namespace hc {

// relu: y = max(x w^T + b, 0) (a ReLU fused into the GEMM's output pass; NaN passes through).
// b may be null (a layer without bias), and so may db below.
void linear_forward_cpu(int64_t N, int64_t I, int64_t O, const float* x, const float* w,
                        const float* b, float* y, bool relu = false);
// dx may be null (first layer). dw and db are overwritten. relu_mask: dx also goes through the
// backward of a ReLU whose output x is (dx = 0 where x is not > 0).
void linear_backward_cpu(int64_t N, int64_t I, int64_t O, const float* x, const float* w,
                         const float* dy, float* dx, float* dw, float* db,
                         bool relu_mask = false);

class Linear : public Layer {
 public:
  Linear(int64_t in_features, int64_t out_features, bool bias = true);
  std::string kind() const override { return "Linear"; }
  Shape output_shape(const Shape& in) const override;
  bool can_fuse_relu() const override { return true; }  // CPU and CUDA alike
  bool can_mask_dx() const override { return true; }  // CPU and CUDA alike

 protected:
  void forward_cpu(const Tensor& x, Tensor& y, float* ws) override;
  void backward_cpu(const Tensor& x, const Tensor& y, const Tensor& dy, Tensor* dx,
                    float* ws) override;
#ifdef HC_WITH_CUDA
  size_t workspace_size_cuda(const Shape& in) const override;
  void forward_cuda(const Tensor& x, Tensor& y, float* ws, cudaStream_t stream) override;
  void backward_cuda(const Tensor& x, const Tensor& y, const Tensor& dy, Tensor* dx, float* ws,
                     cudaStream_t stream) override;
#endif

 private:
  // The bias and its gradient, null without one (bias=False: no "bias" parameter at all).
  float* bias() { return params_.size() > 1 ? params_[1].value.data() : nullptr; }
  float* bias_grad() { return params_.size() > 1 ? params_[1].grad.data() : nullptr; }
  int64_t I_, O_;
};

}  // namespace hc
