// MaxPool2d: max over K x K windows moved by `stride`, no padding, floor mode, as
// torch.nn.MaxPool2d. Backward routes each gradient to the first maximum of its window
// (found again from x, so nothing is stored between forward and backward).
//   x (N,C,H,W) -> y (N,C,Ho,Wo), Ho = (H - K) / stride + 1
#pragma once
#include "heterocnn/layer.h"

namespace hc {

// P = N*C planes of H x W.
void maxpool2d_forward_cpu(int64_t P, int64_t H, int64_t W, int64_t K, int64_t stride,
                           const float* x, float* y);
// dx is overwritten. relu_mask: also apply the backward of a ReLU whose output x is, i.e. dx = 0
// wherever x is not > 0 (NaN included), as relu_backward_cpu would after this.
void maxpool2d_backward_cpu(int64_t P, int64_t H, int64_t W, int64_t K, int64_t stride,
                            const float* x, const float* dy, float* dx, bool relu_mask = false);

class MaxPool2d : public Layer {
 public:
  MaxPool2d(int64_t kernel, int64_t stride);
  std::string kind() const override { return "MaxPool2d"; }
  Shape output_shape(const Shape& in) const override;
  bool can_mask_dx() const override { return true; }  // CPU and CUDA alike

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
  int64_t K_, stride_;
};

}  // namespace hc
