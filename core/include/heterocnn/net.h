// The net: a chain of layers, each on its own place, and a loss. One call runs a whole
// training step (forward, loss, backward, SGD update); buffers are sized on the first call
// for a batch shape and reused after, so a steady-state step allocates nothing.
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

#include "heterocnn/layer.h"
#include "heterocnn/loss.h"
#include "heterocnn/sgd.h"

namespace hc {

// Wall time of one layer's forward and backward, summed over the steps run while profiling.
struct LayerTimes {
  double forward_s = 0, backward_s = 0;
  int64_t forward_calls = 0, backward_calls = 0;
};

class Net {
 public:
  explicit Net(LossKind loss = LossKind::CrossEntropy) : loss_(loss) {}

  void add(std::unique_ptr<Layer> layer);
  std::vector<std::unique_ptr<Layer>>& layers() { return layers_; }
  LossKind loss() const { return loss_; }

  // He-normal weights and zero biases from `seed`; momentum buffers zeroed.
  void init(uint64_t seed);
  void reset_momentum();

  // Output shape for input shape `in`; throws a Shape error naming the first layer that does
  // not accept what it is given.
  Shape output_shape(const Shape& in) const;

  // logits (output_shape(in)) = net(x). x and out are host memory.
  void forward(const float* x, const Shape& in, float* out);
  // Loss of (x, labels), leaving dL/dparam in every Param::grad.
  LossResult loss_and_grads(const float* x, const Shape& in, const int64_t* labels);
  // loss_and_grads, then one SGD update. Nothing changes when it throws on bad input.
  LossResult train_step(const float* x, const Shape& in, const int64_t* labels,
                        const SgdConfig& cfg);

  // Per-layer timing: on() clears the counters; off by default (it costs a clock read per
  // layer call).
  void set_profiling(bool on);
  const std::vector<LayerTimes>& layer_times() const { return times_; }

 private:
  void prepare(const Shape& in);
  void check_input(const float* x, const Shape& in) const;
  void check_labels(const int64_t* labels, int64_t n) const;
  void run_forward(const float* x);
  LossResult run_loss(const int64_t* labels, float* dlogits);
  void run_backward(const float* x);

  std::vector<std::unique_ptr<Layer>> layers_;
  std::vector<bool> needs_dx_;  // some earlier layer has parameters
  LossKind loss_;

  // Sized by prepare() for in_shape_ and threads_.
  Shape in_shape_;
  int threads_ = 0;
  std::vector<Tensor> outs_;  // output of each layer (a view of the one before for Flatten)
  std::vector<Buffer> out_bufs_;
  Buffer grad_bufs_[2];  // dL/d(activation), ping-ponged through backward
  Buffer workspace_;

  bool profiling_ = false;
  std::vector<LayerTimes> times_;
};

}  // namespace hc
