// Average pooling, as torch.nn.AvgPool2d (count_include_pad=True, floor mode) and
// torch.nn.AdaptiveAvgPool2d (an int output size; 1 is global average pooling).
//   AvgPool2d:         x (N,C,H,W) -> y (N,C,Ho,Wo), Ho = (H + 2*pad - K) / stride + 1
//   AdaptiveAvgPool2d: x (N,C,H,W) -> y (N,C,out,out)
#pragma once
#include "heterocnn/host_device.h"
#include "heterocnn/layer.h"

namespace hc {

// The window of adaptive pooling's output i of `out` along an input of `in`:
// [floor(i*in/out), ceil((i+1)*in/out)), as torch (shared by the CPU and CUDA kernels).
HC_HOST_DEVICE int64_t adaptive_start(int64_t i, int64_t in, int64_t out) {
  return i * in / out;
}
HC_HOST_DEVICE int64_t adaptive_end(int64_t i, int64_t in, int64_t out) {
  return ((i + 1) * in + out - 1) / out;
}

// P = N*C planes of H x W. Each output is the sum of its window's taps in row-major order
// divided by K*K (zero padding counted, so every window divides by K*K in floor mode).
void avgpool2d_forward_cpu(int64_t P, int64_t H, int64_t W, int64_t K, int64_t stride,
                           int64_t pad, const float* x, float* y);
// dx is overwritten: each input pixel gets dy / (K*K) of every window holding it, added in
// (oh, ow) order. relu_mask: also apply the backward of a ReLU whose output x is, i.e. dx = 0
// wherever x is not > 0 (maxpool2d_backward_cpu's flag).
void avgpool2d_backward_cpu(int64_t P, int64_t H, int64_t W, int64_t K, int64_t stride,
                            int64_t pad, const float* x, const float* dy, float* dx,
                            bool relu_mask = false);
// The same for adaptive windows (each divided by its own size); out == 1 sums whole planes.
void adaptive_avgpool2d_forward_cpu(int64_t P, int64_t H, int64_t W, int64_t out, const float* x,
                                    float* y);
void adaptive_avgpool2d_backward_cpu(int64_t P, int64_t H, int64_t W, int64_t out,
                                     const float* x, const float* dy, float* dx,
                                     bool relu_mask = false);

class AvgPool2d : public Layer {
 public:
  AvgPool2d(int64_t kernel, int64_t stride, int64_t padding);
  std::string kind() const override { return "AvgPool2d"; }
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
  int64_t K_, stride_, pad_;
};

class AdaptiveAvgPool2d : public Layer {
 public:
  explicit AdaptiveAvgPool2d(int64_t output_size);
  std::string kind() const override { return "AdaptiveAvgPool2d"; }
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
  int64_t out_;
};

}  // namespace hc
