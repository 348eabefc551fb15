// The net's step on CUDA devices (the rest of the net is core/src/net.cpp): the loss with its
// readback, one SGD launch for every parameter of a device, and, for a net on one GPU, the
// step pipeline:
//  - two slots, each with a pinned host block and device buffers for the batch (input or
//    indices), labels, SGD hyper-parameters and loss result;
//  - step k uses slot k % 2: the host fills the slot's pinned block, the copy stream uploads
//    it once step k-2 (the slot's last user) is done, and the compute stream replays the
//    step's CUDA graph (captured once per batch shape and slot) after the upload;
//  - start_*_cuda returns the result of step k-1 (waiting for it) while step k runs, so the
//    caller prepares batch k+1 while the GPU computes.
#include <cuda_runtime.h>

#include <cstring>
#include <deque>
#include <tuple>
#include <vector>

#include "check.h"
#include "heterocnn/cuda_api.h"
#include "heterocnn/net.h"
#include "ops_cuda.h"

namespace hc {

namespace {

cudaStream_t stream_of(int device) { return static_cast<cudaStream_t>(cuda::stream(device)); }

// Page-locked host memory that grows on request (contents lost when it does).
class PinnedBytes {
 public:
  PinnedBytes() = default;
  PinnedBytes(const PinnedBytes&) = delete;
  PinnedBytes& operator=(const PinnedBytes&) = delete;
  ~PinnedBytes() { cuda::release_pinned(data_); }
  char* reserve(size_t bytes) {
    if (bytes > size_) {
      void* fresh = cuda::alloc_pinned(bytes);
      cuda::release_pinned(data_);
      data_ = static_cast<char*>(fresh);
      size_ = bytes;
    }
    return data_;
  }

 private:
  char* data_ = nullptr;
  size_t size_ = 0;
};

// An event that only orders work (no timing).
class Event {
 public:
  Event() { HC_CUDA_CHECK(cudaEventCreateWithFlags(&e_, cudaEventDisableTiming)); }
  Event(const Event&) = delete;
  Event& operator=(const Event&) = delete;
  ~Event() { cudaEventDestroy(e_); }
  cudaEvent_t get() const { return e_; }

 private:
  cudaEvent_t e_ = nullptr;
};

constexpr int kSlots = 2;

// The layout of a slot's pinned block:
//   [config (up) | loss result (down) | labels or indices (n, up) | x (count floats, up)].
struct HostBlock {
  SgdConfig* config;
  LossResult* result;
  int64_t* labels;
  float* x;
};

HostBlock host_block(PinnedBytes& host, int64_t n, int64_t x_count) {
  static_assert(sizeof(SgdConfig) <= 32 && sizeof(LossResult) <= 32, "slots of 32 bytes");
  const size_t labels_at = 64, x_at = labels_at + ((n * sizeof(int64_t) + 63) / 64) * 64;
  char* base = host.reserve(x_at + x_count * sizeof(float));
  return {reinterpret_cast<SgdConfig*>(base), reinterpret_cast<LossResult*>(base + 32),
          reinterpret_cast<int64_t*>(base + labels_at), reinterpret_cast<float*>(base + x_at)};
}

}  // namespace

// What one CUDA device needs for the loss, the update and the step pipeline.
struct DeviceStep {
  explicit DeviceStep(int d)
      : device(d),
        labels(0, Place{Device::CUDA, d}),
        indices(0, Place{Device::CUDA, d}),
        result(kSlots * floats_for<LossResult>(1), Place{Device::CUDA, d}),
        config(kSlots * kConfigFloats, Place{Device::CUDA, d}),
        table(0, Place{Device::CUDA, d}) {
    cuda::use_device(d);
    HC_CUDA_CHECK(cudaStreamCreateWithFlags(&copy, cudaStreamNonBlocking));
  }
  ~DeviceStep() {
    cudaStreamDestroy(copy);
    cudaGetLastError();
  }
  static constexpr size_t kConfigFloats = 4;  // one SgdConfig per slot, 16-byte aligned

  // Each slot's part starts at a multiple of the capacity (not of this batch's size), so the
  // slots never overlap whatever the batch sizes of neighbouring steps.
  int64_t* labels_at(int slot) {
    return reinterpret_cast<int64_t*>(labels.data()) + slot * (labels.size() / floats_for<int64_t>(1) / kSlots);
  }
  int64_t* indices_at(int slot) {
    return reinterpret_cast<int64_t*>(indices.data()) + slot * (indices.size() / floats_for<int64_t>(1) / kSlots);
  }
  SgdConfig* config_at(int slot) {
    return reinterpret_cast<SgdConfig*>(config.data() + slot * kConfigFloats);
  }
  LossResult* result_at(int slot) {
    return reinterpret_cast<LossResult*>(result.data() + slot * floats_for<LossResult>(1));
  }

  int device;
  Buffer labels, indices, result, config, table;  // labels and indices: kSlots * n each
  PinnedBytes host[kSlots];
  Event uploaded[kSlots], done[kSlots];
  cudaStream_t copy = nullptr;
  int table_count = -1;  // -1: the SGD table is not built yet
  int64_t max_n = 0;
  int next = 0;          // the slot the next step uses
  int running = -1;      // the slot of the step whose result is not reported yet
};

struct CudaStepState {
  std::deque<DeviceStep> devices;
  std::vector<std::tuple<Shape, int, cudaGraphExec_t>> graphs;  // per batch shape and slot

  DeviceStep& at(int device) {
    for (DeviceStep& d : devices)
      if (d.device == device) return d;
    devices.emplace_back(device);
    return devices.back();
  }
  void drop_graphs() {
    for (auto& g : graphs) cudaGraphExecDestroy(std::get<2>(g));
    graphs.clear();
  }
  ~CudaStepState() {
    for (DeviceStep& d : devices) cudaStreamSynchronize(stream_of(d.device));
    drop_graphs();
  }
};

void CudaStepStateDeleter::operator()(CudaStepState* s) const { delete s; }

namespace {

CudaStepState& state_of(std::unique_ptr<CudaStepState, CudaStepStateDeleter>& p) {
  if (!p) p.reset(new CudaStepState);
  return *p;
}

// Room for n labels (and indices) per slot; true when the labels moved (graphs hold them).
// Growing waits for the running step first: it may still read the old buffers.
bool reserve_batch(DeviceStep& ds, int64_t n) {
  const size_t floats = kSlots * floats_for<int64_t>(n);
  if (ds.labels.size() >= floats && ds.indices.size() >= floats) return false;
  cuda::synchronize(ds.device);
  ds.indices.reserve(floats);
  return ds.labels.reserve(floats);
}

// Where slot `slot` of the net's input staging starts (two slots, see Net::prepare).
float* input_slot(Buffer& stage, int slot) { return stage.data() + slot * (stage.size() / kSlots); }

// The device's table of {p, g, v, n} for every parameter on it, built once (parameters only
// move through Net::to, which drops this state).
void ensure_sgd_table(DeviceStep& ds, std::vector<std::unique_ptr<Layer>>& layers) {
  if (ds.table_count >= 0) return;
  std::vector<SgdTensorCuda> table;
  ds.max_n = 0;
  for (auto& layer : layers) {
    if (layer->place() != Place{Device::CUDA, ds.device}) continue;
    for (Param& p : layer->params()) {
      table.push_back({p.value.data(), p.grad.data(), p.velocity.data(), p.shape.numel()});
      ds.max_n = std::max(ds.max_n, p.shape.numel());
    }
  }
  ds.table.reserve(floats_for<SgdTensorCuda>(table.size()));
  copy_floats(ds.table.data(), ds.table.place(), reinterpret_cast<const float*>(table.data()),
              Place{}, floats_for<SgdTensorCuda>(table.size()));
  ds.table_count = static_cast<int>(table.size());
}

void enqueue_sgd(DeviceStep& ds, const SgdConfig* cfg) {
  cuda::use_device(ds.device);
  sgd_update_cuda(ds.table_count, reinterpret_cast<const SgdTensorCuda*>(ds.table.data()),
                  ds.max_n, cfg, stream_of(ds.device));
}

void upload_async(DeviceStep& ds, void* dst, const void* src, size_t bytes) {
  if (bytes) HC_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, ds.copy));
}

}  // namespace

// ---- the loss and the update, op by op (mixed placements, loss_and_grads) ----------------

LossResult Net::loss_cuda(const int64_t* labels, bool with_grad) {
  const int device = act_place(layers_.size() - 1).index;
  CudaStepState& st = state_of(cuda_);
  DeviceStep& ds = st.at(device);
  const int64_t n = in_shape_[0];
  if (reserve_batch(ds, n)) st.drop_graphs();
  copy_floats(reinterpret_cast<float*>(ds.labels_at(0)), ds.labels.place(),
              reinterpret_cast<const float*>(labels), Place{}, floats_for<int64_t>(n));
  enqueue_loss_cuda(device, ds.labels_at(0), ds.result_at(0), with_grad);
  LossResult r;
  copy_floats(reinterpret_cast<float*>(&r), Place{}, reinterpret_cast<float*>(ds.result_at(0)),
              ds.result.place(), floats_for<LossResult>(1));
  return r;
}

void Net::enqueue_loss_cuda(int device, const int64_t* labels, LossResult* result,
                            bool with_grad) {
  const Tensor& z = outs_.back();
  float* d = with_grad ? dlogits_.data : nullptr;
  cuda::use_device(device);
  if (loss_ == LossKind::BCE)
    sigmoid_bce_cuda(z.shape[0], z.data, labels, d, result, stream_of(device));
  else
    softmax_cross_entropy_cuda(z.shape[0], z.shape[1], z.data, labels, d, result,
                               stream_of(device));
}

void Net::sgd_cuda(int device, const SgdConfig& cfg) {
  DeviceStep& ds = state_of(cuda_).at(device);
  copy_floats(reinterpret_cast<float*>(ds.config_at(0)), ds.config.place(),
              reinterpret_cast<const float*>(&cfg), Place{}, floats_for<SgdConfig>(1));
  ensure_sgd_table(ds, layers_);
  enqueue_sgd(ds, ds.config_at(0));
}

// ---- the pipeline of a net on one GPU ----------------------------------------------------

int Net::start_host_step_cuda(const float* x, const int64_t* labels, const SgdConfig& cfg,
                              LossResult* out) {
  const int device = single_cuda_device();
  CudaStepState& st = state_of(cuda_);
  DeviceStep& ds = st.at(device);
  const int64_t n = in_shape_[0], count = in_shape_.numel();
  if (reserve_batch(ds, n)) st.drop_graphs();
  const int slot = ds.next;
  // The slot's last user (step k-2) was waited for when step k-1 started.
  const HostBlock h = host_block(ds.host[slot], n, count);
  *h.config = cfg;
  std::memcpy(h.labels, labels, n * sizeof(int64_t));
  std::memcpy(h.x, x, count * sizeof(float));
  cuda::use_device(device);
  HC_CUDA_CHECK(cudaStreamWaitEvent(ds.copy, ds.done[slot].get(), 0));
  upload_async(ds, ds.config_at(slot), h.config, sizeof(SgdConfig));
  upload_async(ds, ds.labels_at(slot), h.labels, n * sizeof(int64_t));
  upload_async(ds, input_slot(in_stage_[0], slot), h.x, count * sizeof(float));
  HC_CUDA_CHECK(cudaEventRecord(ds.uploaded[slot].get(), ds.copy));
  HC_CUDA_CHECK(cudaStreamWaitEvent(stream_of(device), ds.uploaded[slot].get(), 0));
  return launch_step_cuda(device, slot, out);
}

int Net::start_gather_step_cuda(const DeviceDataset& data, const int64_t* idx, int64_t n,
                                const SgdConfig& cfg, LossResult* out) {
  const int device = single_cuda_device();
  CudaStepState& st = state_of(cuda_);
  DeviceStep& ds = st.at(device);
  if (reserve_batch(ds, n)) st.drop_graphs();
  const int slot = ds.next;
  const HostBlock h = host_block(ds.host[slot], n, 0);
  *h.config = cfg;
  std::memcpy(h.labels, idx, n * sizeof(int64_t));  // the indices ride in the labels' slot
  cuda::use_device(device);
  HC_CUDA_CHECK(cudaStreamWaitEvent(ds.copy, ds.done[slot].get(), 0));
  upload_async(ds, ds.config_at(slot), h.config, sizeof(SgdConfig));
  upload_async(ds, ds.indices_at(slot), h.labels, n * sizeof(int64_t));
  HC_CUDA_CHECK(cudaEventRecord(ds.uploaded[slot].get(), ds.copy));
  HC_CUDA_CHECK(cudaStreamWaitEvent(stream_of(device), ds.uploaded[slot].get(), 0));
  gather_batch_cuda(data.images(), data.is_uint8(), in_shape_.sample_numel(), data.labels(),
                    ds.indices_at(slot), n, input_slot(in_stage_[0], slot), ds.labels_at(slot),
                    stream_of(device));
  return launch_step_cuda(device, slot, out);
}

int Net::launch_step_cuda(int device, int slot, LossResult* out) {
  CudaStepState& st = state_of(cuda_);
  DeviceStep& ds = st.at(device);
  ensure_sgd_table(ds, layers_);
  ins_[0].data = input_slot(in_stage_[0], slot);
  cudaStream_t s = stream_of(device);
  if (profiling_) {  // op by op, so each layer can be timed
    run_forward();
    enqueue_loss_cuda(device, ds.labels_at(slot), ds.result_at(slot), true);
    run_backward();
    enqueue_sgd(ds, ds.config_at(slot));
  } else {
    cudaGraphExec_t exec = nullptr;
    for (auto& [shape, sl, g] : st.graphs)
      if (shape == in_shape_ && sl == slot) exec = g;
    if (!exec) {
      HC_CUDA_CHECK(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal));
      try {
        run_forward();
        enqueue_loss_cuda(device, ds.labels_at(slot), ds.result_at(slot), true);
        run_backward();
        enqueue_sgd(ds, ds.config_at(slot));
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
      st.graphs.emplace_back(in_shape_, slot, exec);
    }
    cuda::use_device(device);
    HC_CUDA_CHECK(cudaGraphLaunch(exec, s));
  }
  HC_CUDA_CHECK(cudaMemcpyAsync(host_block(ds.host[slot], 0, 0).result, ds.result_at(slot),
                                sizeof(LossResult), cudaMemcpyDeviceToHost, s));
  HC_CUDA_CHECK(cudaEventRecord(ds.done[slot].get(), s));
  // Report the step before this one (it ran while this one was being prepared).
  const int reported = finish_steps_cuda(out);
  ds.running = slot;
  ds.next = (slot + 1) % kSlots;
  return reported;
}

void Net::forget_addresses() {
  if (!cuda_) return;
  cuda_->drop_graphs();
  for (DeviceStep& ds : cuda_->devices) ds.table_count = -1;
}

int Net::finish_steps_cuda(LossResult* out) {
  if (!cuda_) return 0;
  for (DeviceStep& ds : cuda_->devices) {
    if (ds.running < 0) continue;
    const int slot = ds.running;
    ds.running = -1;
    HC_CUDA_CHECK(cudaEventSynchronize(ds.done[slot].get()));
    *out = *host_block(ds.host[slot], 0, 0).result;
    return 1;
  }
  return 0;
}

}  // namespace hc
