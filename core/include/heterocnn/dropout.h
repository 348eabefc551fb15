// Dropout and Dropout2d, as torch.nn.Dropout / torch.nn.Dropout2d: in training each element
// (Dropout) or each whole channel plane (Dropout2d) is zeroed with probability p and the kept
// ones are scaled by 1/(1-p) (p = 1: all zeros); in evaluation the identity.
//   Dropout:   x (any shape) -> y (same shape)
//   Dropout2d: x (N,C,H,W)   -> y (N,C,H,W), one draw per (n, c) plane
//
// The random numbers come from Philox-4x32-10 (philox.h), a counter-based generator: unit
// `u` (element, or plane for Dropout2d) of step s is kept iff
//   philox_word(seed, s, u) >> 8 < round((1 - p) * 2^24),
// a pure function of (seed, s, u), so the CPU and a GPU give bit-identical masks. The layer's
// one buffer, "rng_state" (int64 (2,), not in state_dict, kept by checkpoints), holds the seed
// (drawn in init_params from the net's seed) and the step: every training forward first
// advances the step where the layer runs (on a GPU a one-thread kernel, so a replayed CUDA
// graph draws a new mask each step), then draws; backward recomputes the same mask from the
// same state, nothing else is stored between the two.
//
// Data-parallel replicas are copies with the same rng_state (broadcast after each update);
// replica r draws from its own stream (set_random_stream(r)): the key is seed ^ stream_key(r),
// stream_key(0) = 0, so a model on its own draws what the reference says for its seed, and
// the replicas' masks are independent of each other (not those a single device would draw for
// the same rows).
#pragma once
#include "heterocnn/layer.h"

namespace hc {

// round((1 - p) * 2^24): the keep threshold of philox_keep, and the scale of the kept values
// (1/(1-p), 0 for p = 1).
uint32_t dropout_keep_below(double p);
float dropout_scale(double p);

// The key mixed into the seed of random stream `stream` (0 for stream 0).
uint64_t dropout_stream_key(uint64_t stream);

// y (n) = x * (keep(u) ? scale : 0) with u = i / group (group = 1 for Dropout, H*W for Dropout2d);
// state = {seed, step} (host memory here; the step is read, not advanced), drawn with the key
// seed ^ stream_key.
void dropout_forward_cpu(int64_t n, int64_t group, const float* x, float* y, const int64_t* state,
                         uint64_t stream_key, uint32_t keep_below, float scale);
// The step of a training forward: state[1] += 1.
void dropout_advance_cpu(int64_t* state);

class Dropout : public Layer {
 public:
  // channels: Dropout2d (one draw per (n, c) plane of a 4-d input).
  Dropout(double p, bool channels);
  std::string kind() const override { return channels_ ? "Dropout2d" : "Dropout"; }
  Shape output_shape(const Shape& in) const override;
  // The seed from `rng` (in [0, 2^62)), the step 0.
  void init_params(Rng& rng) override;
  void set_random_stream(uint64_t stream) override { stream_key_ = dropout_stream_key(stream); }

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
  int64_t group(const Shape& in) const { return channels_ ? in[2] * in[3] : 1; }
  int64_t* state() { return reinterpret_cast<int64_t*>(buffers_[0].value.data()); }
  double p_;
  bool channels_;
  uint32_t keep_below_;
  float scale_;
  uint64_t stream_key_ = 0;
};

}  // namespace hc
