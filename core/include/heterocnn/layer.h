// The layer interface. A layer owns its parameters, knows its output shape, and runs forward
// and backward on the place it was put on. Layer::forward/backward are the one point where the
// CPU and CUDA implementations are chosen.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "heterocnn/buffer.h"
#include "heterocnn/place.h"
#include "heterocnn/rng.h"
#include "heterocnn/tensor.h"

typedef struct CUstream_st* cudaStream_t;  // as CUDA declares it; no CUDA headers needed here

namespace hc {

// One learnable array: its value and the gradient of the last backward (in a net, views into
// its ParamStore; an optimizer keeps its own state for it).
struct Param {
  std::string name;  // "weight" or "bias", as in torch.nn
  Shape shape;
  Buffer value, grad;
};

// State of a layer that is not learned (BatchNorm's running statistics, Dropout's step
// counter): on the layer's place, moved with it, copied from the master to every data-parallel
// replica after each update (as torch DDP broadcasts rank 0's buffers), saved in checkpoints.
// `persistent` ones are in state_dict, as torch.nn's persistent buffers; `scratch` ones are
// rewritten by every forward before anything reads them (BatchNorm's batch statistics), so
// replicas do not copy them. An int64 buffer (num_batches_tracked) holds its values in the
// memory of two floats each; a 0-d shape (torch's scalar buffers) holds one value.
struct LayerBuffer {
  std::string name;
  Shape shape;
  bool is_int64 = false;
  bool persistent = true;
  bool scratch = false;
  Buffer value;
};

class Layer {
 public:
  virtual ~Layer() = default;

  virtual std::string kind() const = 0;  // "Conv2d", "ReLU", ...
  // Output shape for input shape `in` (batch first); throws a Shape error that names the layer.
  virtual Shape output_shape(const Shape& in) const = 0;
  // Floats of scratch memory forward and backward need for input `in` on this layer's place
  // (with `threads` CPU threads).
  size_t workspace_size(const Shape& in, int threads) const;
  // True when the output is the input reinterpreted (Flatten): no data moves either way.
  virtual bool is_view() const { return false; }
  // True when forward can apply a ReLU that follows it (in its GEMM epilogue) on its place.
  virtual bool can_fuse_relu() const { return false; }
  // Set by the net: forward then writes relu(layer(x)), and the ReLU layer after it moves no
  // data (its backward still runs: it needs only its output, which is this one's).
  void set_fused_relu(bool on) { fused_relu_ = on; }
  // True when backward can also apply the backward of a ReLU just before it, on its place:
  // dx = x > 0 ? dx : 0 (x, this layer's input, is that ReLU's output).
  virtual bool can_mask_dx() const { return false; }
  // Set by the net: backward then writes the gradient of that ReLU's input, and the ReLU's
  // backward moves no data.
  void set_masked_dx(bool on) { masked_dx_ = on; }
  // He/Kaiming normal weights (std sqrt(2/fan_in)) and zero biases (a layer with other
  // parameters or buffers overrides this and resets them too).
  virtual void init_params(Rng& rng);
  // Training or evaluation mode, as torch.nn.Module.train()/eval(): BatchNorm normalises by
  // the batch and updates its running estimates in training, by the estimates in evaluation;
  // Dropout drops in training and is the identity in evaluation. Training by default.
  void set_training(bool on) { training_ = on; }
  bool training() const { return training_; }
  // Which random stream a layer that draws random numbers (Dropout) takes: 0 for a model on
  // its own; replica r of a data-parallel model takes r, so that replicas draw independent
  // masks from the same seed and step.
  virtual void set_random_stream(uint64_t) {}
  // Refuses (a Value error naming the layer) an input this layer cannot run in its current
  // mode although its shape is valid: BatchNorm in training with one value per channel. The
  // net asks every layer before a step or a forward pass runs anything, so a refused batch
  // changes nothing (planning such a shape, e.g. for memory estimates, stays possible).
  virtual void check_batch(const Shape&) const {}

  // y = layer(x), all on this layer's place. `ws` holds workspace_size(x.shape) floats.
  // On a CUDA device the work is enqueued on `stream` (a cudaStream_t; null: the device's
  // default compute stream).
  void forward(const Tensor& x, Tensor& y, float* ws, void* stream = nullptr);
  // Given dL/dy, writes dL/dx into dx (when dx is not null) and dL/dparams into each
  // Param::grad (overwritten, not accumulated). x and y are the forward's input and output.
  void backward(const Tensor& x, const Tensor& y, const Tensor& dy, Tensor* dx, float* ws,
                void* stream = nullptr);
  // These three are the one place where the CPU or the CUDA implementation is chosen.

  std::vector<Param>& params() { return params_; }
  std::vector<LayerBuffer>& buffers() { return buffers_; }
  const std::vector<LayerBuffer>& buffers() const { return buffers_; }
  std::vector<size_t> param_counts() const;  // floats of each parameter
  Place place() const { return place_; }
  // Says the layer runs on `place` from now on; its parameters must be there already (the
  // net's ParamStore puts them there), and so must its buffers (moved_buffers makes them).
  void set_place(Place place) { place_ = place; }
  // Copies of the buffers on `place`, for set_place (allocated before anything changes).
  std::vector<Buffer> moved_buffers(Place place) const;
  void adopt_buffers(std::vector<Buffer> values);

 protected:
  virtual size_t workspace_size_cpu(const Shape& in, int threads) const;
  virtual void forward_cpu(const Tensor& x, Tensor& y, float* ws) = 0;
  virtual void backward_cpu(const Tensor& x, const Tensor& y, const Tensor& dy, Tensor* dx,
                            float* ws) = 0;
#ifdef HC_WITH_CUDA
  // The same on the layer's CUDA device, enqueued on `stream` (cuda/src/<layer>.cu).
  virtual size_t workspace_size_cuda(const Shape& in) const;
  virtual void forward_cuda(const Tensor& x, Tensor& y, float* ws, cudaStream_t stream) = 0;
  virtual void backward_cuda(const Tensor& x, const Tensor& y, const Tensor& dy, Tensor* dx,
                             float* ws, cudaStream_t stream) = 0;
#endif

  Param& add_param(const std::string& name, Shape shape);
  LayerBuffer& add_buffer(const std::string& name, Shape shape, bool is_int64 = false,
                          bool persistent = true, bool scratch = false);
  std::vector<Param> params_;
  std::vector<LayerBuffer> buffers_;
  Place place_{};
  bool training_ = true;
  bool fused_relu_ = false;
  bool masked_dx_ = false;
};

// Builds a layer from the spec the Python side sends: its kind and the arguments of its Python
// constructor, in order, as numbers (integers, flags as 0/1, and real numbers):
//   Linear(in, out[, bias]), Conv2d(in, out, kernel, stride, padding[, bias]) (bias 0/1,
//   default 1), MaxPool2d(kernel, stride), Flatten(), ReLU(), Sigmoid(),
//   AvgPool2d(kernel, stride, padding), AdaptiveAvgPool2d(output_size), Tanh(),
//   LeakyReLU(negative_slope) (a real number), GELU([tanh]) (1: the tanh approximation,
//   default 0: the exact form),
//   BatchNorm2d(num_features, eps, momentum, affine[, cumulative]) (cumulative 1: torch's
//   momentum=None, momentum then unused), BatchNorm1d(the same), Dropout(p), Dropout2d(p).
// An argument that must be an integer and is not (or is beyond 2^62) is a Value error.
std::unique_ptr<Layer> make_layer(const std::string& kind, const std::vector<double>& args);

}  // namespace hc
