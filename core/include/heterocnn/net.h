// The net: a chain of layers, each on its own place (CPU or a CUDA device), and a loss; the
// executor of one replica of the model. Its parts:
//   - the parameters in a ParamStore (per place, values | gradients as flat spans);
//   - the StepPlan of the current (placement, input shape, mode), which sizes every buffer;
//   - the buffers, allocated by that plan and reused, so a steady-state step allocates nothing;
//   - per CUDA device its own compute stream; activations cross between places as explicit
//     transfer steps ordered by CUDA events;
//   - on one CUDA device, the step captured once as a CUDA graph and replayed.
// compute_grads leaves the gradients of a batch in the store; an Optimizer (which owns its
// state) applies the update; train_step does both in one call.
#pragma once
#include <cstdint>
#include <deque>
#include <memory>
#include <vector>

#include "heterocnn/device_dataset.h"
#include "heterocnn/layer.h"
#include "heterocnn/loss.h"
#include "heterocnn/optimizer.h"
#include "heterocnn/param_store.h"
#include "heterocnn/step_plan.h"

namespace hc {

// Time of one layer's forward and backward, summed over the steps run while profiling (on a
// GPU from events around its kernels, without synchronising between layers).
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

// Told during a backward pass on the CPU that the gradients from float `offset` of the CPU
// span of the store to its end are final (offset decreasing from call to call), so that whoever
// sums gradients over processes starts on them while the pass goes on. A plain function and
// its context, callable from C; it must not throw.
struct GradsReady {
  void (*fn)(void* ctx, size_t offset) = nullptr;
  void* ctx = nullptr;
};

struct CudaStepState;  // net.cu: streams, events, device-side labels and results, graphs
struct CudaStepStateDeleter {
  void operator()(CudaStepState* s) const;
};

class Net {
 public:
  // label_smoothing: of the cross-entropy's target (see loss.h), in [0, 1]; 0 for BCE.
  explicit Net(LossKind loss = LossKind::CrossEntropy, float label_smoothing = 0.f);
  ~Net();

  void add(std::unique_ptr<Layer> layer);
  const std::vector<std::unique_ptr<Layer>>& layers() const { return layers_; }
  LossKind loss() const { return loss_; }
  float label_smoothing() const { return label_smoothing_; }

  // He-normal weights and zero biases from `seed`.
  void init(uint64_t seed);
  // Every layer in training (true) or evaluation mode (Layer::set_training); what the step and
  // the forward pass do follows it. Training after construction.
  void set_training(bool on);
  bool training() const { return training_; }
  // Layer::set_random_stream for every layer (a data-parallel replica's index).
  void set_random_stream(uint64_t stream);
  // Puts layer i on places[i]. All or nothing: if a move fails (out of device memory, no such
  // device) every layer stays where it was.
  void to(const std::vector<Place>& places);
  ParamStore& params() { return store_; }
  const ParamStore& params() const { return store_; }

  // Output shape for input shape `in`; throws a Shape error naming the first layer that does
  // not accept what it is given.
  Shape output_shape(const Shape& in) const;
  // The plan of a step on input `in` as the net is placed now (pure: nothing changes).
  StepPlan plan(const Shape& in, StepMode mode) const;

  // logits (output_shape(in)) = net(x), by the forward-only plan. x and out are host memory.
  void forward(const float* x, const Shape& in, float* out);
  // Loss of (x, labels); leaves weight * dL/dparam in the store's gradients (added to what
  // they hold when `accumulate`). Nothing changes when it throws on bad input. `ready` is
  // told as the gradients become final where the whole net is on the CPU and `accumulate` is
  // false (elsewhere they are final when this returns, and it is not called).
  LossResult compute_grads(const float* x, const Shape& in, const int64_t* labels,
                           float weight = 1.f, bool accumulate = false, GradsReady ready = {});
  // compute_grads, then opt's update, waiting for the result. Nothing changes when it throws
  // on bad input.
  LossResult train_step(const float* x, const Shape& in, const int64_t* labels, Optimizer& opt);
  // train_step started without waiting where the whole net is on one GPU: the step runs
  // while the caller prepares the next one, whose upload (pinned memory, copy stream)
  // overlaps it. Each call writes the results of the steps finished since the last report
  // into out (at most 2), oldest first, and returns how many: on a GPU the step before this
  // one, on the CPU this step. start_step_on does the same on the batch idx[0..n) (host
  // memory) of a data set held on the CUDA device the whole net is on: the batch is gathered
  // there; only the indices cross.
  int start_step(const float* x, const Shape& in, const int64_t* labels, Optimizer& opt,
                 LossResult* out);
  int start_step_on(const DeviceDataset& data, const int64_t* idx, int64_t n, Optimizer& opt,
                    LossResult* out);
  // Waits for the step still running, if any: writes its result to *out and returns 1, else 0.
  int finish_steps(LossResult* out);
  // Waits for all the work the net has enqueued (a running step's result is kept for
  // finish_steps): before anyone else reads or writes its memory.
  void wait();

  // The gradient pass of a replica, started without waiting where the whole net is on one
  // GPU (its captured gradient graph); on the CPU it runs at once. finish_grads waits and
  // returns the loss. `weight` as in compute_grads (never accumulated). Given `earlier`, a
  // pass still running on the GPU is reported there once this one is enqueued behind it (the
  // call returns 1, else 0), so that the host waits for it while the GPU goes on.
  int start_grads(const float* x, const Shape& in, const int64_t* labels, float weight,
                  LossResult* earlier = nullptr);
  int start_grads_on(const DeviceDataset& data, const int64_t* idx, int64_t n, float weight,
                     LossResult* earlier = nullptr);
  LossResult finish_grads();
  // Seconds of the gradient pass reported last (on a GPU between events around its graph).
  double last_grads_seconds();
  // The optimizer's update of every parameter from the gradients in the store, waited for.
  // It, start_step and start_step_on are the steps of training: each calls opt.begin_step()
  // once (after checking its input), however many places the update covers.
  void apply_update(Optimizer& opt);
  // The same update enqueued on the net's streams without waiting (on the CPU it runs at
  // once): wait() before anyone else reads the parameters.
  void enqueue_update(Optimizer& opt);
  // The net's own stream on `place` (a cudaStream_t; null on the CPU): work enqueued on it
  // is ordered with the net's steps.
  void* stream_for(Place place);
  // The CUDA device every computing layer is on, else -1.
  int single_cuda_device() const;

  // Per-layer timing: on() clears the counters; off by default (it costs a clock read per
  // layer and, on a GPU, two events per layer call and a wait at the end of each step).
  void set_profiling(bool on);
  const std::vector<LayerTimes>& layer_times();
  // Bytes of the net's step arena on CUDA device `device` (0 when it has none there).
  size_t arena_bytes(int device);

  // What a step on input `in` needs on each place, in bytes: the parameters (value, gradient
  // and `optimizer_states` optimizer spans), the step's buffers (activations, gradient
  // buffers, staging, workspaces) and how much of those is not allocated yet. Read from the
  // plan; nothing is allocated.
  struct PlaceBytes {
    Place place;
    size_t parameters, buffers, missing;
  };
  std::vector<PlaceBytes> step_bytes(const Shape& in, StepMode mode = StepMode::Train,
                                     int optimizer_states = 1);

 private:
  // Makes the plan for (in, mode) current and its buffers allocated (a training plan of the
  // same input also serves inference).
  void prepare(const Shape& in, StepMode mode);
  void apply_fusion(const StepPlan& plan);
  // Every buffer a plan needs and where.
  struct BufferRequest {
    Buffer* buffer;
    size_t count;
    Place place;
  };
  std::vector<BufferRequest> buffer_requests(const StepPlan& plan);
  void allocate_step_buffers(const StepPlan& plan);
  // Sizes a buffer for this step: at once on the CPU; on a CUDA device as a request that
  // pack_arenas() lays out in that device's arena. True when the buffer moved.
  bool reserve_at(Buffer& b, size_t count, Place place);
  // prepare() for a training batch, after checking it: x and labels from the host, or the
  // indices idx[0..n) of a data set held on the GPU the whole net is on.
  void prepare_host_batch(const float* x, const Shape& in, const int64_t* labels);
  void prepare_device_batch(const DeviceDataset& data, const int64_t* idx, int64_t n);
  void check_input(const float* x, const Shape& in) const;
  // Layer::check_batch of every layer on its input in the prepared plan.
  void check_batch() const;
  void check_labels(const int64_t* labels, int64_t n) const;
  void stage_input(const float* x);
  void run_forward();
  LossResult run_loss(const int64_t* labels, bool with_grad, float weight);
  // Forward, loss and backward of a checked, prepared batch.
  LossResult run_grads(const float* x, const int64_t* labels, float weight,
                       GradsReady ready = {});
  void run_backward(GradsReady ready = {});
  void run_update(Optimizer& opt);
  // Copies `count` floats of an activation or gradient from one place to another: an
  // explicit transfer step, ordered after the work that made it and before the work that
  // reads it (CUDA events between the two places' streams).
  void transfer(float* dst, Place to, const float* src, Place from, size_t count);
  void invalidate();  // buffers or parameters moved: forget the plan and captured graphs
  void profile_begin(size_t layer, bool forward, Place place);
  void profile_end(size_t layer, bool forward, Place place);

  std::vector<std::unique_ptr<Layer>> layers_;
  LossKind loss_;
  float label_smoothing_;
  ParamStore store_;
  bool training_ = true;

  std::unique_ptr<const StepPlan> plan_;  // the prepared plan (null: none)
  std::vector<Tensor> ins_;    // input of each layer, on its place (staged where places differ)
  std::vector<Tensor> outs_;   // output of each layer (a view of its input for Flatten)
  std::vector<Buffer> out_bufs_, in_stage_;
  PlaceBuffers grad_a_, grad_b_;  // dL/d(activation), ping-ponged through backward, per place
  PlaceBuffers workspace_;
  PlaceBuffers stash_;            // the gradients being accumulated into (compute_grads)
  Tensor dlogits_;
  LossResult pending_grads_;      // the CPU result of start_grads, for finish_grads
  double grads_seconds_ = 0;      // the CPU time of the last start_grads

  bool profiling_ = false;
  std::vector<LayerTimes> times_;
  std::vector<double> started_;   // per layer, the clock at profile_begin (CPU layers)

#ifdef HC_WITH_CUDA
  // Per CUDA device, one allocation (the arena) holds the activations, gradient buffers and
  // workspaces of the step: grown (once) by the first step of a larger batch shape, never
  // touched in the steady state.
  struct ArenaRequest {
    Buffer* buffer;
    size_t count;
    int device;
  };
  std::vector<ArenaRequest> arena_requests_;
  PlaceBuffers arenas_;
  // Lays out each device's pending requests; true when an address changed.
  bool pack_arenas();
  friend struct CudaStepState;
  CudaStepState& cuda_state();
  // net.cu: the loss and the update on a CUDA device, and the captured step.
  LossResult loss_cuda(const int64_t* labels, bool with_grad, float weight);
  void enqueue_loss_cuda(int device, const int64_t* labels, LossResult* result, bool with_grad,
                         float weight);
  void update_cuda(int device, Optimizer& opt);
  // The two-slot pipeline of a net on one GPU (see net.cu): start a step from host data or
  // from a device data set, reporting the step before it; finish the one still running.
  // `opt` null: the gradient pass alone (a replica's), with `weight`.
  int upload_host_batch_cuda(const float* x, const int64_t* labels, Optimizer* opt);
  int upload_gather_batch_cuda(const DeviceDataset& data, const int64_t* idx, int64_t n,
                               Optimizer* opt);
  int launch_step_cuda(int device, int slot, Optimizer* opt, float weight, LossResult* out);
  int finish_steps_cuda(LossResult* out);
  void wait_cuda();
  double last_grads_seconds_cuda();
  void profile_cuda_mark(size_t layer, bool forward, Place place, bool start);
  void collect_profile_cuda();
  void add_into_device(Place place, size_t n, float* y, const float* x);
  // Buffers moved: drop the captured graphs that hold their old addresses (a step still
  // running keeps its result for the next report).
  void forget_addresses();
  std::unique_ptr<CudaStepState, CudaStepStateDeleter> cuda_;
#endif
};

}  // namespace hc
