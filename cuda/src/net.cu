// The net's step on a CUDA device (the rest of the net is core/src/net.cpp): the loss with
// its readback, one SGD launch for every parameter of a device, and the whole step captured
// once per batch shape as a CUDA graph and replayed. Labels, the loss result, the SGD table
// and its hyper-parameters live in device memory, uploaded before each step, so a replayed
// graph sees this step's labels and learning rate.
#include <cuda_runtime.h>

#include <cstring>
#include <deque>
#include <utility>
#include <vector>

#include "check.h"
#include "heterocnn/cuda_api.h"
#include "heterocnn/net.h"
#include "ops_cuda.h"

namespace hc {

namespace {

// Floats of storage for `count` objects of type T (Buffers hold floats).
template <typename T>
size_t floats_for(size_t count) {
  return (count * sizeof(T) + sizeof(float) - 1) / sizeof(float);
}

cudaStream_t stream_of(int device) { return static_cast<cudaStream_t>(cuda::stream(device)); }

}  // namespace

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

// What one CUDA device needs for a step, in its memory: labels, the batch's indices, the
// loss result, the SGD table and hyper-parameters; and the pinned host block they go up from.
struct DeviceStep {
  explicit DeviceStep(int d)
      : device(d),
        labels(0, Place{Device::CUDA, d}),
        indices(0, Place{Device::CUDA, d}),
        result(floats_for<LossResult>(1), Place{Device::CUDA, d}),
        config(floats_for<SgdConfig>(1), Place{Device::CUDA, d}),
        table(0, Place{Device::CUDA, d}) {}
  int device;
  Buffer labels, indices, result, config, table;
  PinnedBytes host;  // this step's uploads, then the loss result coming back
  int table_count = -1;  // -1: the SGD table is not built yet
  int64_t max_n = 0;
};

struct CudaStepState {
  std::deque<DeviceStep> devices;
  std::vector<std::pair<Shape, cudaGraphExec_t>> graphs;  // one per batch shape

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
  ~CudaStepState() { drop_graphs(); }
};

void CudaStepStateDeleter::operator()(CudaStepState* s) const { delete s; }

namespace {

CudaStepState& state_of(std::unique_ptr<CudaStepState, CudaStepStateDeleter>& p) {
  if (!p) p.reset(new CudaStepState);
  return *p;
}

// Uploads n labels; reports whether the device buffer had to move.
bool upload_labels(DeviceStep& ds, const int64_t* labels, int64_t n) {
  const bool moved = ds.labels.reserve(floats_for<int64_t>(n));
  copy_floats(ds.labels.data(), ds.labels.place(), reinterpret_cast<const float*>(labels),
              Place{}, floats_for<int64_t>(n));
  return moved;
}

void upload_config(DeviceStep& ds, const SgdConfig& cfg) {
  copy_floats(ds.config.data(), ds.config.place(), reinterpret_cast<const float*>(&cfg), Place{},
              floats_for<SgdConfig>(1));
}

LossResult read_result(DeviceStep& ds) {
  LossResult r;
  copy_floats(reinterpret_cast<float*>(&r), Place{}, ds.result.data(), ds.result.place(),
              floats_for<LossResult>(1));
  return r;
}

}  // namespace

LossResult Net::loss_cuda(const int64_t* labels, bool with_grad) {
  const Place at = act_place(layers_.size() - 1);
  CudaStepState& st = state_of(cuda_);
  DeviceStep& ds = st.at(at.index);
  if (upload_labels(ds, labels, in_shape_[0])) st.drop_graphs();
  enqueue_loss_cuda(ds.device, with_grad);
  return read_result(ds);
}

void Net::enqueue_loss_cuda(int device, bool with_grad) {
  DeviceStep& ds = state_of(cuda_).at(device);
  const Tensor& z = outs_.back();
  const auto* y = reinterpret_cast<const int64_t*>(ds.labels.data());
  auto* result = reinterpret_cast<LossResult*>(ds.result.data());
  float* d = with_grad ? dlogits_.data : nullptr;
  cuda::use_device(device);
  if (loss_ == LossKind::BCE)
    sigmoid_bce_cuda(z.shape[0], z.data, y, d, result, stream_of(device));
  else
    softmax_cross_entropy_cuda(z.shape[0], z.shape[1], z.data, y, d, result, stream_of(device));
}

namespace {

// The device's table of {p, g, v, n} for every parameter on it, built once (parameters only
// move through Net::to, which drops this state).
void ensure_sgd_table(DeviceStep& ds, std::vector<std::unique_ptr<Layer>>& layers) {
  if (ds.table_count >= 0) return;
  std::vector<SgdTensorCuda> table;
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

void enqueue_sgd(DeviceStep& ds) {
  cuda::use_device(ds.device);
  sgd_update_cuda(ds.table_count, reinterpret_cast<const SgdTensorCuda*>(ds.table.data()),
                  ds.max_n, reinterpret_cast<const SgdConfig*>(ds.config.data()),
                  stream_of(ds.device));
}

}  // namespace

void Net::sgd_cuda(int device, const SgdConfig& cfg) {
  DeviceStep& ds = state_of(cuda_).at(device);
  upload_config(ds, cfg);
  ensure_sgd_table(ds, layers_);
  enqueue_sgd(ds);
}

namespace {

// The pinned block's layout for one step:
//   [config (up) | loss result (down) | labels or indices (n, up) | x (count floats, up)].
struct HostBlock {
  SgdConfig* config;
  LossResult* result;
  int64_t* labels;
  float* x;
};

HostBlock host_block(DeviceStep& ds, int64_t n, int64_t x_count) {
  static_assert(sizeof(SgdConfig) <= 32 && sizeof(LossResult) <= 32, "slots of 32 bytes");
  const size_t labels_at = 64, x_at = labels_at + ((n * sizeof(int64_t) + 63) / 64) * 64;
  char* base = ds.host.reserve(x_at + x_count * sizeof(float));
  return {reinterpret_cast<SgdConfig*>(base), reinterpret_cast<LossResult*>(base + 32),
          reinterpret_cast<int64_t*>(base + labels_at), reinterpret_cast<float*>(base + x_at)};
}

}  // namespace

LossResult Net::host_step_cuda(const float* x, const int64_t* labels, const SgdConfig& cfg) {
  const int device = single_cuda_device();
  CudaStepState& st = state_of(cuda_);
  DeviceStep& ds = st.at(device);
  const int64_t n = in_shape_[0], count = in_shape_.numel();
  if (ds.labels.reserve(floats_for<int64_t>(n))) st.drop_graphs();
  // Up through pinned memory without waiting: the stream runs the copies, then the step.
  const HostBlock h = host_block(ds, n, count);
  *h.config = cfg;
  std::memcpy(h.labels, labels, n * sizeof(int64_t));
  std::memcpy(h.x, x, count * sizeof(float));
  cuda::copy_to_device_async(ds.config.data(), h.config, sizeof(SgdConfig), device);
  cuda::copy_to_device_async(ds.labels.data(), h.labels, n * sizeof(int64_t), device);
  cuda::copy_to_device_async(in_stage_[0].data(), h.x, count * sizeof(float), device);
  ins_[0].data = in_stage_[0].data();
  return device_step(device);
}

LossResult Net::gather_step_cuda(const DeviceDataset& data, const int64_t* idx, int64_t n,
                                 const SgdConfig& cfg) {
  validate(cfg);
  const int device = single_cuda_device();
  if (device < 0 || device != data.place().index)
    fail_value("train_step_on needs the whole model on " + data.place().str() +
               ", where the data is");
  if (n <= 0) fail_value("a batch needs at least one index, got " + std::to_string(n));
  data.check_indices(idx, n);
  Shape in = data.shape();
  in[0] = n;
  prepare(in);
  CudaStepState& st = state_of(cuda_);
  DeviceStep& ds = st.at(device);
  if (ds.labels.reserve(floats_for<int64_t>(n))) st.drop_graphs();
  ds.indices.reserve(floats_for<int64_t>(n));
  const HostBlock h = host_block(ds, n, 0);
  *h.config = cfg;
  std::memcpy(h.labels, idx, n * sizeof(int64_t));  // the indices ride in the labels' slot
  cuda::copy_to_device_async(ds.config.data(), h.config, sizeof(SgdConfig), device);
  cuda::copy_to_device_async(ds.indices.data(), h.labels, n * sizeof(int64_t), device);
  cuda::use_device(device);
  gather_batch_cuda(data.images(), data.is_uint8(), in.sample_numel(), data.labels(),
                    reinterpret_cast<const int64_t*>(ds.indices.data()), n,
                    in_stage_[0].data(), reinterpret_cast<int64_t*>(ds.labels.data()),
                    stream_of(device));
  ins_[0].data = in_stage_[0].data();
  return device_step(device);
}

LossResult Net::device_step(int device) {
  CudaStepState& st = state_of(cuda_);
  DeviceStep& ds = st.at(device);
  ensure_sgd_table(ds, layers_);
  cudaStream_t s = stream_of(device);
  if (profiling_) {  // op by op, so each layer can be timed
    run_forward();
    enqueue_loss_cuda(device, true);
    run_backward();
    enqueue_sgd(ds);
  } else {
    cudaGraphExec_t exec = nullptr;
    for (auto& [shape, g] : st.graphs)
      if (shape == in_shape_) exec = g;
    if (!exec) {
      cuda::use_device(device);
      HC_CUDA_CHECK(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal));
      try {
        run_forward();
        enqueue_loss_cuda(device, true);
        run_backward();
        enqueue_sgd(ds);
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
      st.graphs.emplace_back(in_shape_, exec);
    }
    cuda::use_device(device);
    HC_CUDA_CHECK(cudaGraphLaunch(exec, s));
  }
  // The result comes back through the pinned block; waiting for it is waiting for the step.
  LossResult* r = host_block(ds, 0, 0).result;
  HC_CUDA_CHECK(cudaMemcpyAsync(r, ds.result.data(), sizeof(LossResult),
                                cudaMemcpyDeviceToHost, s));
  HC_CUDA_CHECK(cudaStreamSynchronize(s));
  return *r;
}

}  // namespace hc
