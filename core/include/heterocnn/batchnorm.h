// BatchNorm2d and BatchNorm1d, as torch.nn.BatchNorm2d / BatchNorm1d: per channel c,
//   y = (x - mean_c) / sqrt(var_c + eps) * weight_c + bias_c
// with the batch's mean and biased variance in training (num_batches_tracked += 1, then
// running_mean/running_var moved by the factor f towards the batch's mean and unbiased
// variance: r = (1 - f) r + f batch, f = momentum, or f = 1 / num_batches_tracked for torch's
// momentum=None, the cumulative average of every batch so far), the running estimates in
// evaluation. Without affine there is no weight or bias (1 and 0).
//   BatchNorm2d: x (N,C,H,W) -> y (N,C,H,W); BatchNorm1d: x (N,C) or (N,C,L) -> y (same)
// Every op below sees the input as (N, C, S), S = H*W, L or 1, and M = N*S values a channel.
//
// Buffers: running_mean (C), running_var (C), num_batches_tracked (int64 scalar), as torch's
// (in state_dict), and batch_stats (2C, not in state_dict): the mean and 1/sqrt(var + eps)
// used by the last forward (the batch's in training, the running ones in evaluation), which
// backward reads; so backward needs nothing but x and the statistics and works after a fused
// ReLU overwrote the output (it recomputes x_hat = (x - mean) * inv_std from x).
//
// Deterministic: the per-channel sums are partial sums over fixed pieces combined in a fixed
// order (on the CPU one piece per (n, c) plane, so the result does not depend on the thread
// count; on a GPU fixed-size block partials and one fixed-order final sum, no atomics).
#pragma once
#include "heterocnn/layer.h"

namespace hc {

struct BatchNormArgs {
  int64_t N, C, S;
  double eps, momentum;
  bool cumulative;  // momentum=None: the factor is 1 / num_batches_tracked (after its += 1)
  bool training;    // batch statistics and running-estimate update (else the running ones)
  bool relu;        // forward writes relu(y)
};

// Pointers on the op's device: weight/bias (C) or null (affine=False), running_mean/var (C),
// num_batches_tracked (one int64: a training forward adds 1 before it moves the running
// estimates, and reads the new count for the cumulative factor), stats (2C: mean, inv_std;
// written by forward, read by backward). ws: batchnorm_workspace_cpu floats.
size_t batchnorm_workspace_cpu(int64_t N, int64_t C, int64_t S);
void batchnorm_forward_cpu(const BatchNormArgs& a, const float* x, const float* weight,
                           const float* bias, float* running_mean, float* running_var,
                           int64_t* num_batches_tracked, float* stats, float* y, float* ws);
// dweight/dbias (C) are overwritten (null without affine); dx may be null.
void batchnorm_backward_cpu(const BatchNormArgs& a, const float* x, const float* weight,
                            const float* stats, const float* dy, float* dx, float* dweight,
                            float* dbias, float* ws);

class BatchNorm : public Layer {
 public:
  // dims: 2 for BatchNorm2d (4-d input), 1 for BatchNorm1d (2-d or 3-d input). cumulative:
  // torch's momentum=None (momentum is then not used).
  BatchNorm(int dims, int64_t num_features, double eps, double momentum, bool affine,
            bool cumulative = false);
  std::string kind() const override { return dims_ == 2 ? "BatchNorm2d" : "BatchNorm1d"; }
  Shape output_shape(const Shape& in) const override;
  bool can_fuse_relu() const override { return true; }  // CPU and CUDA alike
  // weight 1, bias 0, running_mean 0, running_var 1, num_batches_tracked 0 (as torch).
  void init_params(Rng& rng) override;
  // In training, one value a channel (N * S == 1) is a Value error, as in torch.
  void check_batch(const Shape& in) const override { args(in, true); }

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
  // The (N, C, S) view of `in` with this layer's settings. `running` (check_batch and forward):
  // in training a batch of one value a channel is a Value error, as in torch (not when a step
  // is planned, so that planning a batch of one for estimates works).
  BatchNormArgs args(const Shape& in, bool running = false) const;
  const float* weight() const { return affine_ ? params_[0].value.data() : nullptr; }
  const float* bias() const { return affine_ ? params_[1].value.data() : nullptr; }
  float* buffer(int k) { return buffers_[k].value.data(); }
  int dims_;
  int64_t C_;
  double eps_, momentum_;
  bool affine_, cumulative_;
};

}  // namespace hc
