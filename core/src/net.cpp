#include "heterocnn/net.h"

#include <algorithm>
#include <chrono>
#include <cmath>

#include "heterocnn/cuda_api.h"
#include "heterocnn/error.h"
#include "heterocnn/parallel.h"

namespace hc {

Buffer& PlaceBuffers::at(Place place) {
  for (Buffer& b : items_)
    if (b.place() == place) return b;
  items_.emplace_back(0, place);
  return items_.back();
}

std::vector<Place> PlaceBuffers::places() const {
  std::vector<Place> out;
  for (const Buffer& b : items_) out.push_back(b.place());
  return out;
}

Net::Net(LossKind loss) : loss_(loss) {}
Net::~Net() = default;

void Net::add(std::unique_ptr<Layer> layer) {
  bool earlier_params = !needs_dx_.empty() && needs_dx_.back();
  if (!layers_.empty() && !layers_.back()->params().empty()) earlier_params = true;
  needs_dx_.push_back(earlier_params);
  layers_.push_back(std::move(layer));
  set_profiling(profiling_);
  invalidate();
}

void Net::init(uint64_t seed) {
  Rng rng(seed);
  for (auto& layer : layers_) layer->init_params(rng);
  reset_momentum();
}

void Net::reset_momentum() {
  for (auto& layer : layers_)
    for (Param& p : layer->params()) p.velocity.zero();
}

void Net::to(const std::vector<Place>& places) {
  if (places.size() != layers_.size())
    fail_value("placement names " + std::to_string(places.size()) + " places for " +
               std::to_string(layers_.size()) + " layers");
#ifdef HC_WITH_CUDA
  for (const Place& p : places)
    if (p.device == Device::CUDA) cuda::use_device(p.index);  // throws for a missing device
#endif
  std::vector<Place> old;
  for (auto& layer : layers_) old.push_back(layer->place());
  size_t moved = 0;
  try {
    for (; moved < layers_.size(); ++moved) layers_[moved]->to(places[moved]);
#ifdef HC_WITH_CUDA
    pack_arenas();  // the parameters of each device into its one allocation
#endif
  } catch (...) {
    for (size_t j = 0; j < moved; ++j) layers_[j]->to(old[j]);  // back where they were
#ifdef HC_WITH_CUDA
    try {
      pack_arenas();
    } catch (...) {  // the first error is the one to report
    }
#endif
    throw;
  }
  invalidate();
}

void Net::invalidate() {
  in_shape_ = Shape{};
#ifdef HC_WITH_CUDA
  cuda_.reset();
#endif
}

Shape Net::output_shape(const Shape& in) const {
  if (layers_.empty()) fail_value("the net has no layers");
  Shape s = in;
  for (size_t i = 0; i < layers_.size(); ++i) {
    try {
      s = layers_[i]->output_shape(s);
    } catch (const Error& e) {
      fail(e.kind(), "layer " + std::to_string(i) + " (" + layers_[i]->kind() + "): " + e.what());
    }
  }
  if (loss_ == LossKind::BCE && (s.ndim != 2 || s[1] != 1))
    fail_shape("loss 'bce' needs a single output per sample, but the net outputs " + s.str());
  if (s.ndim != 2) fail_shape("the net must end in (N, classes), but it outputs " + s.str());
  return s;
}

Place Net::act_place(size_t i) const {
  for (size_t j = i + 1; j-- > 0;)
    if (!layers_[j]->is_view()) return layers_[j]->place();
  // Only views so far: they stay with the input, which is uploaded to the first computing
  // layer's place (so a Flatten before a CUDA layer flattens device memory).
  for (const auto& layer : layers_)
    if (!layer->is_view()) return layer->place();
  return Place{};
}

int Net::single_cuda_device() const {
  int device = -1;
  for (const auto& layer : layers_) {
    if (layer->is_view()) continue;
    const Place p = layer->place();
    if (p.device != Device::CUDA || (device >= 0 && p.index != device)) return -1;
    device = p.index;
  }
  return device;
}

namespace {

// Raises the entry for `place` in `sizes` to at least n.
void grow(std::vector<std::pair<Place, size_t>>& sizes, Place place, size_t n) {
  for (auto& [p, size] : sizes) {
    if (p == place) {
      size = std::max(size, n);
      return;
    }
  }
  sizes.emplace_back(place, n);
}

}  // namespace

void Net::plan_fusion() {
  fused_.assign(layers_.size(), false);
  for (size_t i = 0; i + 1 < layers_.size(); ++i) {
    Layer& a = *layers_[i];
    const bool fuse = a.can_fuse_relu() && layers_[i + 1]->kind() == "ReLU" &&
                      layers_[i + 1]->place() == a.place();
    a.set_fused_relu(fuse);
    fused_[i + 1] = fuse;
  }
  masked_.assign(layers_.size(), false);
  for (size_t i = 0; i < layers_.size(); ++i) {
    Layer& b = *layers_[i];
    const bool mask = i > 0 && layers_[i - 1]->kind() == "ReLU" && b.can_mask_dx() &&
                      layers_[i - 1]->place() == b.place();
    b.set_masked_dx(mask);
    if (mask) masked_[i - 1] = true;
  }
}

bool Net::reserve_at(Buffer& b, size_t count, Place place) {
#ifdef HC_WITH_CUDA
  if (place.device == Device::CUDA) {
    arena_requests_.push_back({&b, count, place.index});
    return false;  // pack_arenas() says whether it moved
  }
#endif
  return b.reserve(count, place);
}

std::vector<Net::BufferRequest> Net::plan_buffers(const Shape& in,
                                                const std::vector<Shape>& shapes, int threads) {
  const size_t L = layers_.size();
  out_bufs_.resize(L);
  in_stage_.resize(L);
  std::vector<BufferRequest> plan;
  const Place input_at = act_place(0);
  // On a GPU the input has two slots: one step's batch goes up while the previous one runs.
  if (input_at.device != Device::CPU) plan.push_back({&in_stage_[0], static_cast<size_t>(2 * in.numel()), input_at});
  // Per place: the largest activation (for the gradient buffers) and workspace, in floats.
  std::vector<std::pair<Place, size_t>> acts, ws;
  grow(acts, input_at, in.numel());
  for (size_t i = 0; i < L; ++i) {
    if (layers_[i]->is_view()) continue;
    const Shape& xs = i == 0 ? in : shapes[i - 1];
    const Place p = layers_[i]->place();
    if (!fused_[i]) plan.push_back({&out_bufs_[i], static_cast<size_t>(shapes[i].numel()), p});
    if (i > 0 && act_place(i - 1) != p)  // the input crosses from another place
      plan.push_back({&in_stage_[i], static_cast<size_t>(xs.numel()), p});
    grow(acts, p, std::max(xs.numel(), shapes[i].numel()));
    grow(ws, p, layers_[i]->workspace_size(xs, threads));
  }
  for (auto& [p, n] : acts) {
    plan.push_back({&grad_a_.at(p), n, p});
    plan.push_back({&grad_b_.at(p), n, p});
  }
  for (auto& [p, n] : ws) plan.push_back({&workspace_.at(p), n, p});
  return plan;
}

std::vector<Net::PlaceBytes> Net::step_bytes(const Shape& in) {
  const std::vector<Shape> shapes = plan_step(in);
  std::vector<PlaceBytes> out;
  auto at = [&](Place p) -> PlaceBytes& {
    for (PlaceBytes& b : out)
      if (b.place == p) return b;
    out.push_back(PlaceBytes{p, 0, 0, 0});
    return out.back();
  };
  for (auto& layer : layers_)
    for (Param& p : layer->params()) at(layer->place()).parameters += 3 * p.shape.numel() * 4;
  for (const BufferRequest& r : plan_buffers(in, shapes, max_threads())) {
    PlaceBytes& b = at(r.place);
    b.buffers += r.count * 4;
    const bool fits = r.buffer->place() == r.place && r.buffer->size() >= r.count;
    if (!fits) b.missing += r.count * 4;
  }
  return out;
}

void Net::allocate_step_buffers(const Shape& in, const std::vector<Shape>& shapes, int threads) {
  const size_t L = layers_.size();
#ifdef HC_WITH_CUDA
  // A step may still be running on a GPU: let it finish before any of its memory moves.
  for (const Place& p : arenas_.places()) cuda::synchronize(p.index);
#endif
  bool moved = false;  // any buffer reallocated: captured graphs point at old memory
  for (const BufferRequest& r : plan_buffers(in, shapes, threads))
    moved |= reserve_at(*r.buffer, r.count, r.place);
#ifdef HC_WITH_CUDA
  moved |= pack_arenas();
  if (moved) forget_addresses();
#endif
  (void)moved;

  // Tensors over the buffers, now that every buffer has its final address.
  ins_.assign(L, Tensor{});
  outs_.assign(L, Tensor{});
  for (size_t i = 0; i < L; ++i) {
    ins_[i].shape = i == 0 ? in : shapes[i - 1];
    outs_[i].shape = shapes[i];
    if (layers_[i]->is_view() || fused_[i]) continue;  // set by run_forward
    outs_[i].data = out_bufs_[i].data();
    if (i > 0 && act_place(i - 1) != layers_[i]->place()) ins_[i].data = in_stage_[i].data();
  }
  dlogits_ = Tensor{grad_a_.at(act_place(L - 1)).data(), shapes.back()};
}

std::vector<Shape> Net::plan_step(const Shape& in) {
  if (in.ndim < 2 || in[0] <= 0)
    fail_shape("input must be (N, ...) with N >= 1, got " + in.str());
  output_shape(in);  // validates the chain; its errors name the layer
  plan_fusion();
  std::vector<Shape> shapes;
  Shape s = in;
  for (auto& layer : layers_) shapes.push_back(s = layer->output_shape(s));
  return shapes;
}

void Net::prepare(const Shape& in) {
  if (in == in_shape_ && threads_ == max_threads()) return;
  const std::vector<Shape> shapes = plan_step(in);  // validated before anything is allocated
  const int threads = max_threads();

  // Until every buffer is in place the cached shape is invalid. If an allocation fails, every
  // activation buffer is released (they are caches) and the error goes up: parameters are never
  // touched here, so the model stays as it was and usable with a batch that fits.
  in_shape_ = Shape{};
  try {
    allocate_step_buffers(in, shapes, threads);
  } catch (...) {
#ifdef HC_WITH_CUDA
    arena_requests_.clear();
#endif
    out_bufs_.clear();
    in_stage_.clear();
    grad_a_ = PlaceBuffers{};
    grad_b_ = PlaceBuffers{};
    workspace_ = PlaceBuffers{};
#ifdef HC_WITH_CUDA
    cuda_.reset();
#endif
    throw;
  }
  in_shape_ = in;
  threads_ = threads;
}

void Net::check_input(const float* x, const Shape& in) const {
  const int64_t n = in.numel();
  float acc = 0.f;  // x * 0 is 0 for every finite x and NaN for NaN or inf
#pragma omp simd reduction(+ : acc)
  for (int64_t i = 0; i < n; ++i) acc += x[i] * 0.f;
  if (acc == 0.f) return;
  for (int64_t i = 0; i < n; ++i) {
    if (std::isfinite(x[i])) continue;
    std::string at;  // the element's index, (n, c, h, w)
    int64_t rest = i;
    for (int d = in.ndim - 1; d >= 0; rest /= in[d], --d)
      at = std::to_string(rest % in[d]) + (at.empty() ? "" : ", ") + at;
    fail_value("input " + in.str() + " holds a non-finite value (" + std::to_string(x[i]) +
               ") at index (" + at + ")");
  }
}
void Net::check_labels(const int64_t* labels, int64_t n) const {
  const int64_t classes = outs_.back().shape[1];
  for (int64_t i = 0; i < n; ++i) {
    const int64_t y = labels[i];
    if (loss_ == LossKind::BCE ? (y != 0 && y != 1) : (y < 0 || y >= classes))
      fail_value("label " + std::to_string(y) + " at index " + std::to_string(i) +
                 (loss_ == LossKind::BCE ? " is not 0 or 1 (loss 'bce')"
                                         : " is out of range for " + std::to_string(classes) +
                                               " classes"));
  }
}

void Net::stage_input(const float* x) {
  const Place at = act_place(0);
  float* data = const_cast<float*>(x);  // layers never write their input
  if (at.device != Device::CPU) {
    copy_floats(in_stage_[0].data(), at, x, Place{}, in_shape_.numel());
    data = in_stage_[0].data();
  }
  ins_[0].data = data;
}

namespace {

// Adds the time from construction to destruction to a layer's forward or backward counters
// (when `times` is not null), waiting for the layer's device so GPU time is counted too.
class ScopedTimer {
 public:
  ScopedTimer(LayerTimes* times, bool forward, Place place)
      : times_(times), forward_(forward), place_(place) {
    if (times_) start_ = std::chrono::steady_clock::now();
  }
  ~ScopedTimer() {
    if (!times_) return;
#ifdef HC_WITH_CUDA
    if (place_.device == Device::CUDA) {
      try {
        cuda::synchronize(place_.index);
      } catch (...) {  // the next CUDA call reports it
      }
    }
#endif
    const double s =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
    (forward_ ? times_->forward_s : times_->backward_s) += s;
    ++(forward_ ? times_->forward_calls : times_->backward_calls);
  }

 private:
  LayerTimes* times_;
  bool forward_;
  Place place_;
  std::chrono::steady_clock::time_point start_;
};

}  // namespace

size_t Net::arena_bytes(int device) {
#ifdef HC_WITH_CUDA
  for (const Place& p : arenas_.places())
    if (p.index == device) return arenas_.at(p).size() * sizeof(float);
#endif
  (void)device;
  return 0;
}

void Net::set_profiling(bool on) {
  profiling_ = on;
  times_.assign(on ? layers_.size() : 0, LayerTimes{});
}

void Net::run_forward() {
  for (size_t i = 0; i < layers_.size(); ++i) {
    Layer& layer = *layers_[i];
    if (i > 0) {
      const Tensor& prev = outs_[i - 1];
      if (layer.is_view() || act_place(i - 1) == layer.place())
        ins_[i].data = prev.data;
      else
        copy_floats(ins_[i].data, layer.place(), prev.data, act_place(i - 1), prev.numel());
    }
    if (layer.is_view() || fused_[i]) {  // the data is already there
      outs_[i].data = ins_[i].data;
      continue;
    }
    ScopedTimer timer(profiling_ ? &times_[i] : nullptr, true, layer.place());
    layer.forward(ins_[i], outs_[i], workspace_.at(layer.place()).data());
  }
}

void Net::run_backward() {
  Tensor dy = dlogits_;
  Place dy_at = act_place(layers_.size() - 1);
  bool dy_in_a = true;  // which of the place's two gradient buffers holds dy
  for (size_t i = layers_.size(); i-- > 0;) {
    Layer& layer = *layers_[i];
    if (layer.is_view()) {
      dy.shape = ins_[i].shape;
      continue;
    }
    if (masked_[i]) {  // the layer after it wrote this ReLU's dx
      if (!needs_dx_[i]) break;
      continue;
    }
    const Place p = layer.place();
    if (dy_at != p) {  // the gradient crosses back to this layer's place
      copy_floats(grad_a_.at(p).data(), p, dy.data, dy_at, dy.numel());
      dy.data = grad_a_.at(p).data();
      dy_at = p;
      dy_in_a = true;
    }
    Tensor dx{(dy_in_a ? grad_b_ : grad_a_).at(p).data(), ins_[i].shape};
    {
      ScopedTimer timer(profiling_ ? &times_[i] : nullptr, false, p);
      layer.backward(ins_[i], outs_[i], dy, needs_dx_[i] ? &dx : nullptr,
                     workspace_.at(p).data());
    }
    if (!needs_dx_[i]) break;  // nothing before this layer learns
    dy = dx;
    dy_in_a = !dy_in_a;
  }
}

LossResult Net::run_loss(const int64_t* labels, bool with_grad) {
  const Place at = act_place(layers_.size() - 1);
#ifdef HC_WITH_CUDA
  if (at.device == Device::CUDA) return loss_cuda(labels, with_grad);
#endif
  (void)at;
  const Tensor& z = outs_.back();
  float* d = with_grad ? dlogits_.data : nullptr;
  return loss_ == LossKind::BCE
             ? sigmoid_bce_cpu(z.shape[0], z.data, labels, d)
             : softmax_cross_entropy_cpu(z.shape[0], z.shape[1], z.data, labels, d);
}

void Net::run_sgd(const SgdConfig& cfg) {
  sgd_slices_.clear();  // every CPU parameter, updated in one parallel loop
  sgd_devices_.clear();
  for (auto& layer : layers_) {
    const Place p = layer->place();
    if (p.device == Device::CUDA) {
      if (std::find(sgd_devices_.begin(), sgd_devices_.end(), p.index) == sgd_devices_.end())
        sgd_devices_.push_back(p.index);
      continue;
    }
    for (Param& q : layer->params())
      sgd_slices_.push_back({q.shape.numel(), q.value.data(), q.grad.data(), q.velocity.data()});
  }
  sgd_update_all_cpu(sgd_slices_.data(), sgd_slices_.size(), cfg);
#ifdef HC_WITH_CUDA
  for (int d : sgd_devices_) sgd_cuda(d, cfg);  // every parameter of the device in one launch
#endif
}

void Net::forward(const float* x, const Shape& in, float* out) {
  prepare(in);
  check_input(x, in);
  stage_input(x);
  run_forward();
  copy_floats(out, Place{}, outs_.back().data, act_place(layers_.size() - 1),
              outs_.back().numel());
}

LossResult Net::loss_and_grads(const float* x, const Shape& in, const int64_t* labels) {
  prepare(in);
  check_input(x, in);
  check_labels(labels, in[0]);
  return run_step(x, labels);
}

LossResult Net::run_step(const float* x, const int64_t* labels) {
  stage_input(x);
  run_forward();
  const LossResult r = run_loss(labels, true);
  run_backward();
  return r;
}

int Net::start_step(const float* x, const Shape& in, const int64_t* labels,
                    const SgdConfig& cfg, LossResult* out) {
  validate(cfg);
  prepare(in);
  check_input(x, in);
  check_labels(labels, in[0]);
#ifdef HC_WITH_CUDA
  if (single_cuda_device() >= 0) return start_host_step_cuda(x, labels, cfg, out);
#endif
  out[0] = run_step(x, labels);
  run_sgd(cfg);
  return 1;
}

int Net::start_step_on(const DeviceDataset& data, const int64_t* idx, int64_t n,
                       const SgdConfig& cfg, LossResult* out) {
  validate(cfg);
  const int device = single_cuda_device();
  if (device < 0 || device != data.place().index)
    fail_value("training on a data set held on " + data.place().str() +
               " needs the whole model on " + data.place().str());
  if (n <= 0) fail_value("a batch needs at least one index, got " + std::to_string(n));
  data.check_indices(idx, n);
  Shape in = data.shape();
  in[0] = n;
  prepare(in);
#ifdef HC_WITH_CUDA
  return start_gather_step_cuda(data, idx, n, cfg, out);
#else
  (void)out;
  fail(ErrorKind::Device, "heterocnn was built without CUDA");
#endif
}

int Net::finish_steps(LossResult* out) {
#ifdef HC_WITH_CUDA
  return finish_steps_cuda(out);
#else
  (void)out;
  return 0;
#endif
}

LossResult Net::train_step(const float* x, const Shape& in, const int64_t* labels,
                           const SgdConfig& cfg) {
  LossResult r[3];
  int n = start_step(x, in, labels, cfg, r);
  n += finish_steps(r + n);
  return r[n - 1];
}

}  // namespace hc
