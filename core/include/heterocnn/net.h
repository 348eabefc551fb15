// The net: a chain of layers, each on its own place (CPU or a CUDA device), and a loss. One
// call runs a whole training step (forward, loss, backward, SGD update). Activations cross
// between places where neighbouring layers differ. Buffers are sized on the first call for a
// batch shape and reused after, so a steady-state step allocates nothing; on one CUDA device
// the step is captured once as a CUDA graph and replayed.
#pragma once
#include <cstdint>
#include <deque>
#include <memory>
#include <vector>

#include "heterocnn/device_dataset.h"
#include "heterocnn/layer.h"
#include "heterocnn/loss.h"
#include "heterocnn/sgd.h"

namespace hc {

// Wall time of one layer's forward and backward, summed over the steps run while profiling.
struct LayerTimes {
  double forward_s = 0, backward_s = 0;
  int64_t forward_calls = 0, backward_calls = 0;
};

// One growable buffer per place, made on first use (references stay valid).
class PlaceBuffers {
 public:
  Buffer& at(Place place);
  std::vector<Place> places() const;

 private:
  std::deque<Buffer> items_;
};

struct CudaStepState;  // net.cu: device-side labels, loss result, SGD tables, graphs
struct CudaStepStateDeleter {
  void operator()(CudaStepState* s) const;
};

class Net {
 public:
  explicit Net(LossKind loss = LossKind::CrossEntropy);
  ~Net();

  void add(std::unique_ptr<Layer> layer);
  std::vector<std::unique_ptr<Layer>>& layers() { return layers_; }
  LossKind loss() const { return loss_; }

  // He-normal weights and zero biases from `seed`; momentum buffers zeroed.
  void init(uint64_t seed);
  void reset_momentum();
  // Puts layer i on places[i]. All or nothing: if a move fails (out of device memory, no such
  // device) every layer stays where it was.
  void to(const std::vector<Place>& places);

  // Output shape for input shape `in`; throws a Shape error naming the first layer that does
  // not accept what it is given.
  Shape output_shape(const Shape& in) const;

  // logits (output_shape(in)) = net(x). x and out are host memory.
  void forward(const float* x, const Shape& in, float* out);
  // Loss of (x, labels), leaving dL/dparam in every Param::grad.
  LossResult loss_and_grads(const float* x, const Shape& in, const int64_t* labels);
  // loss_and_grads, then one SGD update, waiting for the result. Nothing changes when it
  // throws on bad input.
  LossResult train_step(const float* x, const Shape& in, const int64_t* labels,
                        const SgdConfig& cfg);
  // train_step started without waiting where the whole net is on one GPU: the step runs
  // while the caller prepares the next one, whose upload (pinned memory, copy stream)
  // overlaps it. Each call writes the results of the steps finished since the last report
  // into out (at most 2), oldest first, and returns how many: on a GPU the step before this
  // one, on the CPU this step. start_step_on does the same on the batch idx[0..n) (host
  // memory) of a data set held on the CUDA device the whole net is on: the batch is gathered
  // there; only the indices cross.
  int start_step(const float* x, const Shape& in, const int64_t* labels, const SgdConfig& cfg,
                 LossResult* out);
  int start_step_on(const DeviceDataset& data, const int64_t* idx, int64_t n,
                    const SgdConfig& cfg, LossResult* out);
  // Waits for the step still running, if any: writes its result to *out and returns 1, else 0.
  int finish_steps(LossResult* out);

  // Per-layer timing: on() clears the counters; off by default (it costs a clock read and,
  // on a GPU, a synchronisation per layer call).
  void set_profiling(bool on);
  const std::vector<LayerTimes>& layer_times() const { return times_; }
  // Bytes of the net's arena on CUDA device `device` (0 when it has none there).
  size_t arena_bytes(int device);

  // What a step on input `in` needs on each place, in bytes: the parameters (value, gradient,
  // momentum), the step's buffers (activations, gradient buffers, staging, workspaces) and
  // how much of those is not allocated yet. Computed by the same plan the step allocates by;
  // nothing is allocated.
  struct PlaceBytes {
    Place place;
    size_t parameters, buffers, missing;
  };
  std::vector<PlaceBytes> step_bytes(const Shape& in);

 private:
  // Where the output of layer i lives: a view stays with its input; leading views stay with
  // the staged input, on the first computing layer's place.
  Place act_place(size_t i) const;
  // The single CUDA device of a net whose every computing layer is on it, else -1.
  int single_cuda_device() const;
  // The output shape of every layer for input `in` (validating the chain) and the fusion plan.
  std::vector<Shape> plan_step(const Shape& in);
  void prepare(const Shape& in);
  // Marks each ReLU that the layer before it on the same place can compute in its epilogue.
  void plan_fusion();
  // Every buffer a step on `in` needs (with the layer output shapes) and where.
  struct BufferRequest {
    Buffer* buffer;
    size_t count;
    Place place;
  };
  std::vector<BufferRequest> plan_buffers(const Shape& in, const std::vector<Shape>& shapes,
                                          int threads);
  void allocate_step_buffers(const Shape& in, const std::vector<Shape>& shapes, int threads);
  // Sizes a buffer for this step: at once on the CPU; on a CUDA device as a request that
  // pack_arenas() lays out in that device's arena. True when the buffer moved.
  bool reserve_at(Buffer& b, size_t count, Place place);
  void check_input(const float* x, const Shape& in) const;
  void check_labels(const int64_t* labels, int64_t n) const;
  void stage_input(const float* x);
  void run_forward();
  LossResult run_loss(const int64_t* labels, bool with_grad);
  // Forward, loss and backward of a checked, prepared batch (loss_and_grads after its checks).
  LossResult run_step(const float* x, const int64_t* labels);
  void run_backward();
  void run_sgd(const SgdConfig& cfg);
  void invalidate();  // buffers or parameters moved: forget shapes and captured graphs

  std::vector<std::unique_ptr<Layer>> layers_;
  std::vector<bool> needs_dx_;  // some earlier layer has parameters
  std::vector<bool> fused_;     // a ReLU computed by the layer before it (see Layer)
  std::vector<bool> masked_;    // a ReLU whose backward the layer after it applies (see Layer)
  LossKind loss_;

  // Sized by prepare() for in_shape_ and threads_.
  Shape in_shape_;
  int threads_ = 0;
  std::vector<Tensor> ins_;    // input of each layer, on its place (staged where places differ)
  std::vector<Tensor> outs_;   // output of each layer (a view of its input for Flatten)
  std::vector<Buffer> out_bufs_, in_stage_;
  PlaceBuffers grad_a_, grad_b_;  // dL/d(activation), ping-ponged through backward, per place
  PlaceBuffers workspace_;
  Tensor dlogits_;

  bool profiling_ = false;
  std::vector<LayerTimes> times_;
  std::vector<SgdSlice> sgd_slices_;  // run_sgd's list of CPU parameters (kept: no allocation)
  std::vector<int> sgd_devices_;      // and of the CUDA devices holding parameters (likewise)

#ifdef HC_WITH_CUDA
  // Per CUDA device, one allocation (the arena) holds the parameters, gradients and momenta of
  // its layers and the activations, gradient buffers and workspaces of the step: made when the
  // model is placed, grown (once, with the parameters copied over) by the first step of a
  // larger batch shape, never touched in the steady state.
  struct ArenaRequest {
    Buffer* buffer;
    size_t count;
    int device;
  };
  std::vector<ArenaRequest> arena_requests_;
  PlaceBuffers arenas_;
  // Lays out each device's parameters and the pending requests; true when an address changed.
  bool pack_arenas();
  friend struct CudaStepState;
  // net.cu: the loss and the update on a CUDA device, and the captured step.
  LossResult loss_cuda(const int64_t* labels, bool with_grad);
  void enqueue_loss_cuda(int device, const int64_t* labels, LossResult* result, bool with_grad);
  void sgd_cuda(int device, const SgdConfig& cfg);
  // The two-slot pipeline of a net on one GPU (see net.cu): start a step from host data or
  // from a device data set, reporting the step before it; finish the one still running.
  int start_host_step_cuda(const float* x, const int64_t* labels, const SgdConfig& cfg,
                           LossResult* out);
  int start_gather_step_cuda(const DeviceDataset& data, const int64_t* idx, int64_t n,
                             const SgdConfig& cfg, LossResult* out);
  int launch_step_cuda(int device, int slot, LossResult* out);
  int finish_steps_cuda(LossResult* out);
  // Buffers moved: drop the captured graphs and SGD tables that hold their old addresses
  // (a step still running keeps its result for the next report).
  void forget_addresses();
  std::unique_ptr<CudaStepState, CudaStepStateDeleter> cuda_;
#endif
};

}  // namespace hc
