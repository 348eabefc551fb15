// Conv2d: cross-correlation, NCHW, square kernel, as torch.nn.Conv2d.
//   x (N,C,H,W), w (M,C,K,K), b (M,) or none -> y (N,M,Ho,Wo)
// Computed as GEMMs over the im2col matrix (thesis 4.1-4.2): y_n = w * col(x_n) + b, several
// samples side by side per GEMM; on AVX-512 CPUs, where they win, by direct kernels or by
// Winograd's F(2x2, 3x3) (ConvPath below; core/CPU_PERF.md, entries 8-15).
#pragma once
#include "heterocnn/im2col.h"
#include "heterocnn/layer.h"

namespace hc {

// Which CPU kernels compute the convolution: GEMMs over the unrolled windows of sample groups
// (im2col / im2row / col2im), the direct kernels (AVX-512, stride 1, K 3 or 5, width <= 32)
// that never unroll, or Winograd's F(2x2, 3x3) (AVX-512, 3x3 at stride 1: 16 GEMMs over
// transformed tiles). Auto picks, for each pass, the one that wins on the geometry.
enum class ConvPath { Auto, Gemm, Direct, Winograd };
// Test hook: use `path` where it applies (Direct and Winograd fall back to Gemm where they do
// not).
// Not thread-safe: call it only while no convolution is running.
void conv2d_force_path(ConvPath path);

// Test hook: the GEMM path unrolls this many samples into one matrix per GEMM (0: chosen from
// the L2 size, the geometry and the thread count). Not thread-safe, as conv2d_force_path.
void conv2d_force_group(int64_t samples);

// Workspace floats the CPU ops need with `threads` worker threads.
size_t conv2d_forward_workspace_cpu(const ConvGeom& g, int64_t M, int threads);
size_t conv2d_backward_workspace_cpu(const ConvGeom& g, int64_t M, int threads);

// relu: y = max(conv(x) + b, 0), applied to each sample's output right after its GEMM.
// b may be null (a convolution without bias), and so may db below.
void conv2d_forward_cpu(const ConvGeom& g, int64_t N, int64_t M, const float* x, const float* w,
                        const float* b, float* y, float* ws, bool relu = false);
// dx may be null (first layer). dw and db are overwritten. relu_mask: each dx_n also goes
// through the backward of a ReLU whose output x is (dx = 0 where x is not > 0), in cache.
void conv2d_backward_cpu(const ConvGeom& g, int64_t N, int64_t M, const float* x,
                         const float* w, const float* dy, float* dx, float* dw, float* db,
                         float* ws, bool relu_mask = false);

class Conv2d : public Layer {
 public:
  Conv2d(int64_t in_channels, int64_t out_channels, int64_t kernel, int64_t stride,
         int64_t padding, bool bias = true);
  std::string kind() const override { return "Conv2d"; }
  Shape output_shape(const Shape& in) const override;
  bool can_fuse_relu() const override { return true; }  // CPU and CUDA alike
  bool can_mask_dx() const override { return true; }  // CPU and CUDA alike

 protected:
  size_t workspace_size_cpu(const Shape& in, int threads) const override;
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
  ConvGeom geom(const Shape& in) const;
  float* weight() { return params_[0].value.data(); }
  // The bias and its gradient, null without one (bias=False: no "bias" parameter at all).
  float* bias() { return params_.size() > 1 ? params_[1].value.data() : nullptr; }
  float* bias_grad() { return params_.size() > 1 ? params_[1].grad.data() : nullptr; }
  int64_t C_, M_, K_, stride_, pad_;
};

}  // namespace hc
