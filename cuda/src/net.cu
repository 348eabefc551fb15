// The net's work on CUDA devices (the rest of the net is core/src/net.cpp): its own streams,
// the transfer steps between places, the loss with its readback, the optimizer's update, the
// per-layer timing events, and, for a net on one GPU, the step pipeline:
//  - two slots, each with a pinned host block and device buffers for the batch (input or
//    indices), labels, optimizer hyper-parameters and loss result;
//  - step k uses slot k % 2: the host fills the slot's pinned block, the copy stream uploads
//    it once step k-2 (the slot's last user) is done, and the compute stream replays the
//    step's CUDA graph (captured once per batch shape, slot, optimizer and weight) after the
//    upload;
//  - start_*_cuda returns the result of step k-1 (waiting for it) while step k runs, so the
//    caller prepares batch k+1 while the GPU computes.
// A replica's gradient pass (no optimizer) is the same graph without the update.
#include <cuda_runtime.h>

#include <cstring>
#include <deque>
#include <vector>

#include "check.h"
#include "heterocnn/cuda_api.h"
#include "heterocnn/net.h"
#include "ops_cuda.h"
#include "stream_sync.h"

namespace hc {

namespace {

constexpr int kSlots = 2;
constexpr size_t kConfigFloats = Optimizer::kMaxConfigBytes / sizeof(float);

// The layout of a slot's pinned block:
//   [config (up) | loss result (down) | labels or indices (n, up) | x (count floats, up)].
struct HostBlock {
  void* config;
  LossResult* result;
  int64_t* labels;
  float* x;
};

HostBlock host_block(PinnedBytes& host, int64_t n, int64_t x_count) {
  static_assert(Optimizer::kMaxConfigBytes <= 32 && sizeof(LossResult) <= 32, "slots of 32 bytes");
  const size_t labels_at = 64, x_at = labels_at + ((n * sizeof(int64_t) + 63) / 64) * 64;
  char* base = host.reserve(x_at + x_count * sizeof(float));
  return {base, reinterpret_cast<LossResult*>(base + 32),
          reinterpret_cast<int64_t*>(base + labels_at), reinterpret_cast<float*>(base + x_at)};
}

// A graph of the step: for this input shape and slot, with this optimizer (null: the
// gradient pass alone) and state, and this gradient weight.
struct GraphKey {
  Shape shape;
  int slot;
  const Optimizer* opt;
  uint64_t state_generation;
  float weight;
  bool operator==(const GraphKey& o) const {
    return shape == o.shape && slot == o.slot && opt == o.opt &&
           state_generation == o.state_generation && weight == o.weight;
  }
};

}  // namespace

// What the net has on one CUDA device: its compute stream (the layers' kernels, the loss and
// the update), a copy stream for the pipeline's uploads, the transfer event, and the step
// pipeline's device buffers.
struct DeviceStep {
  explicit DeviceStep(int d)
      : device(d),
        labels(0, Place{Device::CUDA, d}),
        indices(0, Place{Device::CUDA, d}),
        result(kSlots * floats_for<LossResult>(1), Place{Device::CUDA, d}),
        config(kSlots * kConfigFloats, Place{Device::CUDA, d}) {
    cuda::use_device(d);
    compute = static_cast<cudaStream_t>(cuda::create_stream(d));
    HC_CUDA_CHECK(cudaStreamCreateWithFlags(&copy, cudaStreamNonBlocking));
  }
  ~DeviceStep() {
    cudaSetDevice(device);
    cudaStreamSynchronize(copy);
    cudaStreamDestroy(copy);
    cuda::destroy_stream(compute);  // waits for it first
    cudaGetLastError();
  }
  DeviceStep(const DeviceStep&) = delete;
  DeviceStep& operator=(const DeviceStep&) = delete;

  // Each slot's part starts at a multiple of the capacity (not of this batch's size), so the
  // slots never overlap whatever the batch sizes of neighbouring steps.
  int64_t* labels_at(int slot) {
    return reinterpret_cast<int64_t*>(labels.data()) + slot * (labels.size() / floats_for<int64_t>(1) / kSlots);
  }
  int64_t* indices_at(int slot) {
    return reinterpret_cast<int64_t*>(indices.data()) + slot * (indices.size() / floats_for<int64_t>(1) / kSlots);
  }
  void* config_at(int slot) { return config.data() + slot * kConfigFloats; }
  LossResult* result_at(int slot) {
    return reinterpret_cast<LossResult*>(result.data() + slot * floats_for<LossResult>(1));
  }

  int device;
  cudaStream_t compute = nullptr, copy = nullptr;
  Buffer labels, indices, result, config;  // labels and indices: kSlots * n each
  PinnedBytes host[kSlots];
  Event uploaded[kSlots], done[kSlots];
  Event produced;        // a transfer step's source is ready (recorded on this stream)
  Event began[kSlots] = {Event{true}, Event{true}};  // around each slot's gradient pass
  Event ended[kSlots] = {Event{true}, Event{true}};
  int reported = -1;     // the slot of the step reported last
  int next = 0;          // the slot the next step uses
  int running = -1;      // the slot of the step whose result is not reported yet
};

// Start and stop events around one layer's forward or backward while profiling.
struct LayerEvents {
  size_t layer;
  bool forward;
  Event start{true}, stop{true};
};

struct CudaStepState {
  std::deque<DeviceStep> devices;
  std::vector<std::pair<GraphKey, cudaGraphExec_t>> graphs;
  std::deque<LayerEvents> timed;  // recorded and not yet added to the layer times
  size_t timed_used = 0;

  DeviceStep& at(int device) {
    for (DeviceStep& d : devices)
      if (d.device == device) return d;
    devices.emplace_back(device);
    return devices.back();
  }
  void drop_graphs() {
    for (auto& g : graphs) cudaGraphExecDestroy(g.second);
    graphs.clear();
  }
  ~CudaStepState() {
    for (DeviceStep& d : devices) cudaStreamSynchronize(d.compute);
    drop_graphs();
  }
};

void CudaStepStateDeleter::operator()(CudaStepState* s) const { delete s; }

CudaStepState& Net::cuda_state() {
  if (!cuda_) cuda_.reset(new CudaStepState);
  return *cuda_;
}

void* Net::stream_for(Place place) {
  if (place.device != Device::CUDA) return nullptr;
  return cuda_state().at(place.index).compute;
}

namespace {

// Room for n labels (and indices) per slot; true when the labels moved (graphs hold them).
// Growing waits for the running step first: it may still read the old buffers.
bool reserve_batch(DeviceStep& ds, int64_t n) {
  const size_t floats = kSlots * floats_for<int64_t>(n);
  if (ds.labels.size() >= floats && ds.indices.size() >= floats) return false;
  HC_CUDA_CHECK(cudaStreamSynchronize(ds.compute));
  ds.indices.reserve(floats);
  return ds.labels.reserve(floats);
}

// Where slot `slot` of the net's input staging starts (two slots, see StepPlan).
float* input_slot(Buffer& stage, int slot) { return stage.data() + slot * (stage.size() / kSlots); }

void upload_async(DeviceStep& ds, void* dst, const void* src, size_t bytes) {
  if (bytes) HC_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, ds.copy));
}

}  // namespace

// ---- transfer steps ------------------------------------------------------------------------

void Net::transfer(float* dst, Place to, const float* src, Place from, size_t count) {
  if (count == 0) return;
  const size_t bytes = count * sizeof(float);
  if (from.device == Device::CPU && to.device == Device::CPU) {
    std::memcpy(dst, src, bytes);
    return;
  }
  if (to.device == Device::CPU) {  // device -> host: after the work that made it, then wait
    DeviceStep& s = cuda_state().at(from.index);
    cuda::use_device(from.index);
    HC_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, s.compute));
    HC_CUDA_CHECK(cudaStreamSynchronize(s.compute));
    return;
  }
  DeviceStep& d = cuda_state().at(to.index);
  if (from.device == Device::CPU) {  // host -> device: the host data is ready now
    cuda::use_device(to.index);
    HC_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, d.compute));
    return;
  }
  // Device -> device: the destination's stream waits for the source's work, then copies;
  // the source's stream waits for the copy before it writes anything more.
  DeviceStep& s = cuda_state().at(from.index);
  cuda::use_device(from.index);
  HC_CUDA_CHECK(cudaEventRecord(s.produced.get(), s.compute));
  cuda::use_device(to.index);
  HC_CUDA_CHECK(cudaStreamWaitEvent(d.compute, s.produced.get(), 0));
  if (from.index == to.index)
    HC_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, d.compute));
  else
    HC_CUDA_CHECK(cudaMemcpyPeerAsync(dst, to.index, src, from.index, bytes, d.compute));
  if (from.index != to.index) {
    HC_CUDA_CHECK(cudaEventRecord(d.produced.get(), d.compute));
    cuda::use_device(from.index);
    HC_CUDA_CHECK(cudaStreamWaitEvent(s.compute, d.produced.get(), 0));
  }
}

void Net::wait_cuda() {
  if (!cuda_) return;
  for (DeviceStep& ds : cuda_->devices) {
    cuda::use_device(ds.device);
    HC_CUDA_CHECK(cudaStreamSynchronize(ds.copy));
    HC_CUDA_CHECK(cudaStreamSynchronize(ds.compute));
  }
}

void Net::add_into_device(Place place, size_t n, float* y, const float* x) {
  cuda::use_device(place.index);
  add_into_cuda(static_cast<int64_t>(n), y, x, cuda_state().at(place.index).compute);
}

// ---- per-layer timing ----------------------------------------------------------------------

void Net::profile_cuda_mark(size_t layer, bool forward, Place place, bool start) {
  CudaStepState& st = cuda_state();
  if (start) {
    if (st.timed_used == st.timed.size()) st.timed.emplace_back();
    LayerEvents& e = st.timed[st.timed_used++];
    e.layer = layer;
    e.forward = forward;
    cuda::use_device(place.index);
    HC_CUDA_CHECK(cudaEventRecord(e.start.get(), st.at(place.index).compute));
    return;
  }
  LayerEvents& e = st.timed[st.timed_used - 1];
  HC_CUDA_CHECK(cudaEventRecord(e.stop.get(), st.at(place.index).compute));
}

void Net::collect_profile_cuda() {
  if (!cuda_ || cuda_->timed_used == 0) return;
  wait_cuda();
  for (size_t k = 0; k < cuda_->timed_used; ++k) {
    const LayerEvents& e = cuda_->timed[k];
    float ms = 0.f;
    HC_CUDA_CHECK(cudaEventElapsedTime(&ms, e.start.get(), e.stop.get()));
    LayerTimes& t = times_[e.layer];
    (e.forward ? t.forward_s : t.backward_s) += ms * 1e-3;
    ++(e.forward ? t.forward_calls : t.backward_calls);
  }
  cuda_->timed_used = 0;
}

// ---- the loss and the update, op by op (mixed placements, compute_grads) -----------------

LossResult Net::loss_cuda(const int64_t* labels, bool with_grad, float weight) {
  const int device = plan_->output_place().index;
  CudaStepState& st = cuda_state();
  DeviceStep& ds = st.at(device);
  const int64_t n = plan_->in[0];
  if (reserve_batch(ds, n)) st.drop_graphs();
  cuda::use_device(device);
  HC_CUDA_CHECK(cudaMemcpyAsync(ds.labels_at(0), labels, n * sizeof(int64_t),
                                cudaMemcpyHostToDevice, ds.compute));
  enqueue_loss_cuda(device, ds.labels_at(0), ds.result_at(0), with_grad, weight);
  LossResult r;
  HC_CUDA_CHECK(cudaMemcpyAsync(&r, ds.result_at(0), sizeof(LossResult), cudaMemcpyDeviceToHost,
                                ds.compute));
  HC_CUDA_CHECK(cudaStreamSynchronize(ds.compute));
  return r;
}

void Net::enqueue_loss_cuda(int device, const int64_t* labels, LossResult* result,
                            bool with_grad, float weight) {
  const Tensor& z = outs_.back();
  float* d = with_grad ? dlogits_.data : nullptr;
  cuda::use_device(device);
  cudaStream_t s = cuda_state().at(device).compute;
  if (loss_ == LossKind::BCE)
    sigmoid_bce_cuda(z.shape[0], z.data, labels, d, result, weight, s);
  else
    softmax_cross_entropy_cuda(z.shape[0], z.shape[1], z.data, labels, d, result, weight,
                               label_smoothing_, s);
}

void Net::update_cuda(int device, Optimizer& opt) {
  DeviceStep& ds = cuda_state().at(device);
  cuda::use_device(device);
  alignas(16) char cfg[Optimizer::kMaxConfigBytes] = {};
  opt.write_config(cfg);
  HC_CUDA_CHECK(cudaMemcpyAsync(ds.config_at(0), cfg, opt.config_bytes(), cudaMemcpyHostToDevice,
                                ds.compute));
  opt.update(store_, Place{Device::CUDA, device}, ds.config_at(0), ds.compute);
  // The host copy above is pageable: cudaMemcpyAsync returned once it was staged.
}

// ---- the pipeline of a net on one GPU ----------------------------------------------------

int Net::upload_host_batch_cuda(const float* x, const int64_t* labels, Optimizer* opt) {
  const int device = single_cuda_device();
  CudaStepState& st = cuda_state();
  DeviceStep& ds = st.at(device);
  const int64_t n = plan_->in[0], count = plan_->in.numel();
  if (reserve_batch(ds, n)) st.drop_graphs();
  const int slot = ds.next;
  // The slot's last user (step k-2) was waited for when step k-1 started.
  const HostBlock h = host_block(ds.host[slot], n, count);
  if (opt) opt->write_config(h.config);
  std::memcpy(h.labels, labels, n * sizeof(int64_t));
  std::memcpy(h.x, x, count * sizeof(float));
  cuda::use_device(device);
  HC_CUDA_CHECK(cudaStreamWaitEvent(ds.copy, ds.done[slot].get(), 0));
  if (opt) upload_async(ds, ds.config_at(slot), h.config, opt->config_bytes());
  upload_async(ds, ds.labels_at(slot), h.labels, n * sizeof(int64_t));
  upload_async(ds, input_slot(in_stage_[0], slot), h.x, count * sizeof(float));
  HC_CUDA_CHECK(cudaEventRecord(ds.uploaded[slot].get(), ds.copy));
  HC_CUDA_CHECK(cudaStreamWaitEvent(ds.compute, ds.uploaded[slot].get(), 0));
  return slot;
}

int Net::upload_gather_batch_cuda(const DeviceDataset& data, const int64_t* idx, int64_t n,
                                  Optimizer* opt) {
  const int device = single_cuda_device();
  CudaStepState& st = cuda_state();
  DeviceStep& ds = st.at(device);
  if (reserve_batch(ds, n)) st.drop_graphs();
  const int slot = ds.next;
  const HostBlock h = host_block(ds.host[slot], n, 0);
  if (opt) opt->write_config(h.config);
  std::memcpy(h.labels, idx, n * sizeof(int64_t));  // the indices ride in the labels' slot
  cuda::use_device(device);
  HC_CUDA_CHECK(cudaStreamWaitEvent(ds.copy, ds.done[slot].get(), 0));
  if (opt) upload_async(ds, ds.config_at(slot), h.config, opt->config_bytes());
  upload_async(ds, ds.indices_at(slot), h.labels, n * sizeof(int64_t));
  HC_CUDA_CHECK(cudaEventRecord(ds.uploaded[slot].get(), ds.copy));
  HC_CUDA_CHECK(cudaStreamWaitEvent(ds.compute, ds.uploaded[slot].get(), 0));
  gather_batch_cuda(data.images(), data.is_uint8(), plan_->in.sample_numel(), data.labels(),
                    ds.indices_at(slot), n, input_slot(in_stage_[0], slot), ds.labels_at(slot),
                    ds.compute);
  return slot;
}

int Net::launch_step_cuda(int device, int slot, Optimizer* opt, float weight, LossResult* out) {
  CudaStepState& st = cuda_state();
  DeviceStep& ds = st.at(device);
  const Place place{Device::CUDA, device};
  if (opt) opt->follow(store_);  // its state where the parameters are, before any capture
  ins_[0].data = input_slot(in_stage_[0], slot);
  cudaStream_t s = ds.compute;
  auto enqueue = [&] {
    run_forward();
    enqueue_loss_cuda(device, ds.labels_at(slot), ds.result_at(slot), true, weight);
    run_backward();
    if (opt) opt->update(store_, place, ds.config_at(slot), s);
  };
  if (profiling_) {  // op by op, so each layer can be timed
    enqueue();
  } else {
    const GraphKey key{plan_->in, slot, opt, opt ? opt->state_generation() : 0, weight};
    cudaGraphExec_t exec = nullptr;
    for (auto& [k, g] : st.graphs)
      if (k == key) exec = g;
    if (!exec) {
      // Graphs of another optimizer or weight will not be replayed again soon: drop them.
      for (auto it = st.graphs.begin(); it != st.graphs.end();) {
        if (it->first.opt != opt || it->first.weight != weight ||
            it->first.state_generation != key.state_generation) {
          cudaGraphExecDestroy(it->second);
          it = st.graphs.erase(it);
        } else {
          ++it;
        }
      }
      cuda::use_device(device);
      HC_CUDA_CHECK(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal));
      try {
        enqueue();
      } catch (...) {
        cudaGraph_t broken = nullptr;
        cudaStreamEndCapture(s, &broken);
        if (broken) cudaGraphDestroy(broken);
        cudaGetLastError();
        throw;
      }
      cudaGraph_t graph = nullptr;
      HC_CUDA_CHECK(cudaStreamEndCapture(s, &graph));
      const cudaError_t made = cudaGraphInstantiate(&exec, graph, 0);
      cudaGraphDestroy(graph);
      HC_CUDA_CHECK(made);
      st.graphs.emplace_back(key, exec);
    }
    cuda::use_device(device);
    if (!opt) HC_CUDA_CHECK(cudaEventRecord(ds.began[slot].get(), s));
    HC_CUDA_CHECK(cudaGraphLaunch(exec, s));
    if (!opt) HC_CUDA_CHECK(cudaEventRecord(ds.ended[slot].get(), s));
  }
  HC_CUDA_CHECK(cudaMemcpyAsync(host_block(ds.host[slot], 0, 0).result, ds.result_at(slot),
                                sizeof(LossResult), cudaMemcpyDeviceToHost, s));
  HC_CUDA_CHECK(cudaEventRecord(ds.done[slot].get(), s));
  // Report the step before this one (it ran while this one was being prepared); a gradient
  // pass without `out` reports nothing here (finish_grads waits for it).
  const int reported = out ? finish_steps_cuda(out) : 0;
  ds.running = slot;
  ds.next = (slot + 1) % kSlots;
  return reported;
}

double Net::last_grads_seconds_cuda() {
  DeviceStep& ds = cuda_state().at(single_cuda_device());
  if (ds.reported < 0) return 0.0;
  float ms = 0.f;
  const int slot = ds.reported;
  HC_CUDA_CHECK(cudaEventSynchronize(ds.ended[slot].get()));
  if (cudaEventElapsedTime(&ms, ds.began[slot].get(), ds.ended[slot].get()) != cudaSuccess) {
    cudaGetLastError();  // not recorded (profiling ran the pass op by op)
    return 0.0;
  }
  return ms * 1e-3;
}

void Net::forget_addresses() {
  if (cuda_) cuda_->drop_graphs();
}

int Net::finish_steps_cuda(LossResult* out) {
  if (!cuda_) return 0;
  for (DeviceStep& ds : cuda_->devices) {
    if (ds.running < 0) continue;
    const int slot = ds.running;
    ds.running = -1;
    ds.reported = slot;
    HC_CUDA_CHECK(cudaEventSynchronize(ds.done[slot].get()));
    *out = *host_block(ds.host[slot], 0, 0).result;
    return 1;
  }
  return 0;
}

}  // namespace hc
