#include "heterocnn/net.h"

#include <algorithm>
#include <chrono>
#include <cmath>

#include "heterocnn/cuda_api.h"
#include "heterocnn/error.h"
#include "heterocnn/parallel.h"
#include "heterocnn/reduce.h"

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

Net::Net(LossKind loss, float label_smoothing) : loss_(loss), label_smoothing_(label_smoothing) {
  if (!(label_smoothing >= 0.f && label_smoothing <= 1.f))
    fail_value("label_smoothing must be in [0, 1], got " + std::to_string(label_smoothing));
  if (loss == LossKind::BCE && label_smoothing != 0.f)
    fail_value("label_smoothing is for loss 'cross_entropy', not 'bce'");
}
Net::~Net() = default;

namespace {

std::vector<Param*> all_params(const std::vector<std::unique_ptr<Layer>>& layers) {
  std::vector<Param*> out;
  for (const auto& layer : layers)
    for (Param& p : layer->params()) out.push_back(&p);
  return out;
}

std::vector<Place> param_places(const std::vector<std::unique_ptr<Layer>>& layers,
                                const std::vector<Place>& places) {
  std::vector<Place> out;
  for (size_t i = 0; i < layers.size(); ++i)
    out.insert(out.end(), layers[i]->params().size(), places[i]);
  return out;
}

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

}  // namespace

void Net::add(std::unique_ptr<Layer> layer) {
  layer->set_training(training_);
  layers_.push_back(std::move(layer));
  std::vector<Place> places;
  for (const auto& l : layers_) places.push_back(l->place());
  store_.assign(all_params(layers_), param_places(layers_, places));
  set_profiling(profiling_);
  invalidate();
}

void Net::init(uint64_t seed) {
  Rng rng(seed);
  for (auto& layer : layers_) layer->init_params(rng);
}

void Net::set_random_stream(uint64_t stream) {
#ifdef HC_WITH_CUDA
  wait_cuda();
  forget_addresses();  // the captured steps launched the layers with the old stream
#endif
  for (auto& layer : layers_) layer->set_random_stream(stream);
}

void Net::set_training(bool on) {
  if (on == training_) return;
#ifdef HC_WITH_CUDA
  wait_cuda();
  forget_addresses();  // the captured steps ran the layers of the other mode
#endif
  training_ = on;
  for (auto& layer : layers_) layer->set_training(on);
}

void Net::to(const std::vector<Place>& places) {
  if (places.size() != layers_.size())
    fail_value("placement names " + std::to_string(places.size()) + " places for " +
               std::to_string(layers_.size()) + " layers");
#ifdef HC_WITH_CUDA
  for (const Place& p : places)
    if (p.device == Device::CUDA) cuda::use_device(p.index);  // throws for a missing device
  wait_cuda();  // a step may still be running: let it finish before its memory moves
#else
  for (const Place& p : places)
    if (p.device == Device::CUDA) fail(ErrorKind::Device, "heterocnn was built without CUDA");
#endif
  // All or nothing: the buffers' new copies and the store's new layout are made before any
  // layer changes.
  std::vector<std::vector<Buffer>> buffers;
  for (size_t i = 0; i < layers_.size(); ++i)
    buffers.push_back(layers_[i]->moved_buffers(places[i]));
  store_.assign(all_params(layers_), param_places(layers_, places));
  for (size_t i = 0; i < layers_.size(); ++i) {
    layers_[i]->adopt_buffers(std::move(buffers[i]));
    layers_[i]->set_place(places[i]);
  }
  invalidate();
#ifdef HC_WITH_CUDA
  pack_arenas();  // a device that holds nothing of the net any more gives its arena back
#endif
}

void Net::invalidate() {
  plan_.reset();
#ifdef HC_WITH_CUDA
  cuda_.reset();
#endif
}

Shape Net::output_shape(const Shape& in) const { return chain_output_shape(layers_, loss_, in); }

StepPlan Net::plan(const Shape& in, StepMode mode) const {
  return make_step_plan(layers_, loss_, in, max_threads(), mode);
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

void Net::apply_fusion(const StepPlan& plan) {
  for (size_t i = 0; i < layers_.size(); ++i) {
    layers_[i]->set_fused_relu(i + 1 < layers_.size() && plan.fused[i + 1]);
    layers_[i]->set_masked_dx(i > 0 && plan.masked[i - 1]);
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

std::vector<Net::BufferRequest> Net::buffer_requests(const StepPlan& plan) {
  const size_t L = layers_.size();
  out_bufs_.resize(L);
  in_stage_.resize(L);
  std::vector<BufferRequest> out;
  if (plan.stage_count[0]) out.push_back({&in_stage_[0], plan.stage_count[0], plan.input_place});
  for (size_t i = 0; i < L; ++i) {
    if (plan.out_count[i]) out.push_back({&out_bufs_[i], plan.out_count[i], plan.places[i]});
    if (i > 0 && plan.stage_count[i])
      out.push_back({&in_stage_[i], plan.stage_count[i], plan.places[i]});
  }
  for (const PlaceCount& c : plan.grad_count) {
    out.push_back({&grad_a_.at(c.place), c.count, c.place});
    out.push_back({&grad_b_.at(c.place), c.count, c.place});
  }
  for (const PlaceCount& c : plan.workspace_count)
    out.push_back({&workspace_.at(c.place), c.count, c.place});
  return out;
}

std::vector<Net::PlaceBytes> Net::step_bytes(const Shape& in, StepMode mode,
                                             int optimizer_states) {
  const StepPlan p = plan(in, mode);
  std::vector<PlaceBytes> out;
  auto at = [&](Place place) -> PlaceBytes& {
    for (PlaceBytes& b : out)
      if (b.place == place) return b;
    out.push_back(PlaceBytes{place, 0, 0, 0});
    return out.back();
  };
  for (const Place& place : p.used_places()) at(place);
  for (const PlaceCount& c : p.param_count)
    at(c.place).parameters += (2 + optimizer_states) * c.count * sizeof(float);
  for (const BufferRequest& r : buffer_requests(p)) {
    PlaceBytes& b = at(r.place);
    b.buffers += r.count * sizeof(float);
    const bool fits = r.buffer->place() == r.place && r.buffer->size() >= r.count;
    if (!fits) b.missing += r.count * sizeof(float);
  }
  return out;
}

void Net::allocate_step_buffers(const StepPlan& plan) {
  const size_t L = layers_.size();
#ifdef HC_WITH_CUDA
  wait_cuda();  // a step may still be running on a GPU: let it finish before its memory moves
#endif
  bool moved = false;  // any buffer reallocated: captured graphs point at old memory
  for (const BufferRequest& r : buffer_requests(plan))
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
    ins_[i].shape = i == 0 ? plan.in : plan.shapes[i - 1];
    outs_[i].shape = plan.shapes[i];
    if (plan.out_count[i]) outs_[i].data = out_bufs_[i].data();  // else set by run_forward
    if (i > 0 && plan.stage_count[i]) ins_[i].data = in_stage_[i].data();
  }
  dlogits_ = plan.mode == StepMode::Train
                 ? Tensor{grad_a_.at(plan.output_place()).data(), plan.output()}
                 : Tensor{};
}

void Net::prepare(const Shape& in, StepMode mode) {
  const int threads = max_threads();
  if (plan_ && plan_->in == in && plan_->threads == threads &&
      (plan_->mode == mode || plan_->mode == StepMode::Train))
    return;
  // Planned (and validated) before anything is allocated.
  std::unique_ptr<const StepPlan> fresh(new StepPlan(plan(in, mode)));
  // Until every buffer is in place there is no current plan. If an allocation fails, every
  // activation buffer is released (they are caches) and the error goes up: parameters are
  // never touched here, so the model stays as it was and usable with a batch that fits.
  plan_.reset();
  try {
    allocate_step_buffers(*fresh);
  } catch (...) {
#ifdef HC_WITH_CUDA
    arena_requests_.clear();
    cuda_.reset();
#endif
    out_bufs_.clear();
    in_stage_.clear();
    grad_a_ = PlaceBuffers{};
    grad_b_ = PlaceBuffers{};
    workspace_ = PlaceBuffers{};
    throw;
  }
  apply_fusion(*fresh);
  plan_ = std::move(fresh);
}

void Net::check_input(const float* x, const Shape& in) const {
  const int64_t n = in.numel();
  float acc = 0.f;  // x * 0 is 0 for every finite x and NaN for NaN or inf, in any order
#pragma omp parallel for simd reduction(+ : acc) schedule(static) if (parallel : team_pays(n))
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
  const int64_t classes = plan_->output()[1];
  for (int64_t i = 0; i < n; ++i) {
    const int64_t y = labels[i];
    if (loss_ == LossKind::BCE ? (y != 0 && y != 1) : (y < 0 || y >= classes))
      fail_value("label " + std::to_string(y) + " at index " + std::to_string(i) +
                 (loss_ == LossKind::BCE ? " is not 0 or 1 (loss 'bce')"
                                         : " is out of range for " + std::to_string(classes) +
                                               " classes"));
  }
}

void Net::check_batch() const {
  for (size_t i = 0; i < layers_.size(); ++i)
    layers_[i]->check_batch(i == 0 ? plan_->in : plan_->shapes[i - 1]);
}

void Net::prepare_host_batch(const float* x, const Shape& in, const int64_t* labels) {
  prepare(in, StepMode::Train);
  check_batch();
  check_input(x, in);
  check_labels(labels, in[0]);
}

void Net::prepare_device_batch(const DeviceDataset& data, const int64_t* idx, int64_t n) {
  const int device = single_cuda_device();
  if (device < 0 || device != data.place().index)
    fail_value("training on a data set held on " + data.place().str() +
               " needs the whole model on " + data.place().str());
  if (n <= 0) fail_value("a batch needs at least one index, got " + std::to_string(n));
  data.check_indices(idx, n);
  Shape in = data.shape();
  in[0] = n;
  prepare(in, StepMode::Train);
  check_batch();
}

namespace {
void check_weight(float weight) {
  if (!std::isfinite(weight) || weight < 0.f)
    fail_value("gradient weight must be finite and >= 0, got " + std::to_string(weight));
}
}  // namespace

void Net::stage_input(const float* x) {
  const Place at = plan_->input_place;
  float* data = const_cast<float*>(x);  // layers never write their input
  if (at.device != Device::CPU) {
    transfer(in_stage_[0].data(), at, x, Place{}, plan_->in.numel());
    data = in_stage_[0].data();
  }
  ins_[0].data = data;
}

void Net::profile_begin(size_t layer, bool forward, Place place) {
  (void)forward;
#ifdef HC_WITH_CUDA
  if (place.device == Device::CUDA) return profile_cuda_mark(layer, forward, place, true);
#endif
  started_[layer] = now_s();
}

void Net::profile_end(size_t layer, bool forward, Place place) {
#ifdef HC_WITH_CUDA
  if (place.device == Device::CUDA) return profile_cuda_mark(layer, forward, place, false);
#endif
  const double s = now_s() - started_[layer];
  LayerTimes& t = times_[layer];
  (forward ? t.forward_s : t.backward_s) += s;
  ++(forward ? t.forward_calls : t.backward_calls);
}

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
  times_.assign(layers_.size(), LayerTimes{});
  started_.assign(layers_.size(), 0.0);
#ifdef HC_WITH_CUDA
  cuda_.reset();  // the captured graphs have no timing events; op by op while profiling
#endif
}

const std::vector<LayerTimes>& Net::layer_times() {
#ifdef HC_WITH_CUDA
  collect_profile_cuda();
#endif
  return times_;
}

void Net::run_forward() {
  const StepPlan& p = *plan_;
  for (size_t i = 0; i < layers_.size(); ++i) {
    Layer& layer = *layers_[i];
    if (i > 0) {
      const Tensor& prev = outs_[i - 1];
      if (p.stage_count[i])
        transfer(ins_[i].data, p.places[i], prev.data, p.act_places[i - 1], prev.numel());
      else
        ins_[i].data = prev.data;
    }
    if (layer.is_view() || p.fused[i]) {  // the data is already there
      outs_[i].data = ins_[i].data;
      continue;
    }
    if (profiling_) profile_begin(i, true, p.places[i]);
    layer.forward(ins_[i], outs_[i], workspace_.at(p.places[i]).data(), stream_for(p.places[i]));
    if (profiling_) profile_end(i, true, p.places[i]);
  }
}

void Net::run_backward(GradsReady ready) {
  const StepPlan& p = *plan_;
  // The index of each layer's first parameter in net order (the store's slots).
  std::vector<size_t> first_param(layers_.size() + 1, 0);
  for (size_t i = 0; i < layers_.size(); ++i)
    first_param[i + 1] = first_param[i] + layers_[i]->params().size();
  Tensor dy = dlogits_;
  Place dy_at = p.output_place();
  bool dy_in_a = true;  // which of the place's two gradient buffers holds dy
  for (size_t i = layers_.size(); i-- > 0;) {
    Layer& layer = *layers_[i];
    if (layer.is_view()) {
      dy.shape = ins_[i].shape;
      continue;
    }
    if (p.masked[i]) {  // the layer after it wrote this ReLU's dx
      if (!p.needs_dx[i]) break;
      continue;
    }
    const Place here = p.places[i];
    if (dy_at != here) {  // the gradient crosses back to this layer's place
      transfer(grad_a_.at(here).data(), here, dy.data, dy_at, dy.numel());
      dy.data = grad_a_.at(here).data();
      dy_at = here;
      dy_in_a = true;
    }
    Tensor dx{(dy_in_a ? grad_b_ : grad_a_).at(here).data(), ins_[i].shape};
    if (profiling_) profile_begin(i, false, here);
    layer.backward(ins_[i], outs_[i], dy, p.needs_dx[i] ? &dx : nullptr,
                   workspace_.at(here).data(), stream_for(here));
    if (profiling_) profile_end(i, false, here);
    if (ready.fn && first_param[i] < first_param[i + 1])  // this layer's gradients are done
      ready.fn(ready.ctx, store_.slots()[first_param[i]].offset);
    if (!p.needs_dx[i]) break;  // nothing before this layer learns
    dy = dx;
    dy_in_a = !dy_in_a;
  }
}

LossResult Net::run_loss(const int64_t* labels, bool with_grad, float weight) {
  const Place at = plan_->output_place();
#ifdef HC_WITH_CUDA
  if (at.device == Device::CUDA) return loss_cuda(labels, with_grad, weight);
#endif
  (void)at;
  const Tensor& z = outs_.back();
  float* d = with_grad ? dlogits_.data : nullptr;
  return loss_ == LossKind::BCE
             ? sigmoid_bce_cpu(z.shape[0], z.data, labels, d, weight)
             : softmax_cross_entropy_cpu(z.shape[0], z.shape[1], z.data, labels, d, weight,
                                         label_smoothing_);
}

void Net::run_update(Optimizer& opt) {
  for (const Place& p : store_.places()) {
    if (p.device == Device::CPU) {
      opt.update(store_, p, nullptr, nullptr);
      continue;
    }
#ifdef HC_WITH_CUDA
    update_cuda(p.index, opt);  // every parameter of the device in one launch
#endif
  }
}

void Net::forward(const float* x, const Shape& in, float* out) {
  prepare(in, StepMode::Infer);
  check_batch();
  check_input(x, in);
  stage_input(x);
  run_forward();
  transfer(out, Place{}, outs_.back().data, plan_->output_place(), outs_.back().numel());
}

LossResult Net::compute_grads(const float* x, const Shape& in, const int64_t* labels,
                              float weight, bool accumulate, GradsReady ready) {
  check_weight(weight);
  prepare_host_batch(x, in, labels);
  if (accumulate) {  // keep what the gradients hold, then add it back
    for (const Place& p : store_.places()) {
      Buffer& s = stash_.at(p);
      s.reserve(store_.span(p), p);
      copy_floats(s.data(), p, store_.grads(p), p, store_.span(p));
    }
  }
  const auto places = store_.places();
  const bool tell = ready.fn && !accumulate && places.size() == 1 &&
                    places[0].device == Device::CPU && single_cuda_device() < 0;
  const LossResult r = run_grads(x, labels, weight, tell ? ready : GradsReady{});
  if (accumulate) {
    for (const Place& p : store_.places()) {
      if (p.device == Device::CPU) {
        add_into_cpu(static_cast<int64_t>(store_.span(p)), store_.grads(p), stash_.at(p).data());
        continue;
      }
#ifdef HC_WITH_CUDA
      add_into_device(p, store_.span(p), store_.grads(p), stash_.at(p).data());
#endif
    }
  }
  wait();  // the gradients are complete when this returns
  return r;
}

LossResult Net::run_grads(const float* x, const int64_t* labels, float weight,
                          GradsReady ready) {
  stage_input(x);
  run_forward();
  const LossResult r = run_loss(labels, true, weight);
  run_backward(ready);
  return r;
}

int Net::start_step(const float* x, const Shape& in, const int64_t* labels, Optimizer& opt,
                    LossResult* out) {
  prepare_host_batch(x, in, labels);
  opt.begin_step();  // the batch is good: this step counts, before its config is written
#ifdef HC_WITH_CUDA
  if (single_cuda_device() >= 0) {
    const int slot = upload_host_batch_cuda(x, labels, &opt);
    return launch_step_cuda(single_cuda_device(), slot, &opt, 1.f, out);
  }
#endif
  out[0] = run_grads(x, labels, 1.f);
  run_update(opt);
  wait();
  return 1;
}

int Net::start_step_on(const DeviceDataset& data, const int64_t* idx, int64_t n, Optimizer& opt,
                       LossResult* out) {
  prepare_device_batch(data, idx, n);
  opt.begin_step();
#ifdef HC_WITH_CUDA
  const int slot = upload_gather_batch_cuda(data, idx, n, &opt);
  return launch_step_cuda(data.place().index, slot, &opt, 1.f, out);
#else
  (void)opt;
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

void Net::wait() {
#ifdef HC_WITH_CUDA
  wait_cuda();
#endif
}

LossResult Net::train_step(const float* x, const Shape& in, const int64_t* labels,
                           Optimizer& opt) {
  LossResult r[3];
  int n = start_step(x, in, labels, opt, r);
  n += finish_steps(r + n);
  return r[n - 1];
}

int Net::start_grads(const float* x, const Shape& in, const int64_t* labels, float weight,
                     LossResult* earlier) {
  check_weight(weight);
  prepare_host_batch(x, in, labels);
#ifdef HC_WITH_CUDA
  if (single_cuda_device() >= 0) {
    const int slot = upload_host_batch_cuda(x, labels, nullptr);
    return launch_step_cuda(single_cuda_device(), slot, nullptr, weight, earlier);
  }
#endif
  const double t0 = now_s();
  pending_grads_ = run_grads(x, labels, weight);
  wait();
  grads_seconds_ = now_s() - t0;
  return 0;
}

int Net::start_grads_on(const DeviceDataset& data, const int64_t* idx, int64_t n, float weight,
                        LossResult* earlier) {
  check_weight(weight);
  prepare_device_batch(data, idx, n);
#ifdef HC_WITH_CUDA
  const int slot = upload_gather_batch_cuda(data, idx, n, nullptr);
  return launch_step_cuda(data.place().index, slot, nullptr, weight, earlier);
#else
  (void)weight;
  (void)earlier;
  fail(ErrorKind::Device, "heterocnn was built without CUDA");
#endif
}

double Net::last_grads_seconds() {
#ifdef HC_WITH_CUDA
  if (single_cuda_device() >= 0) return last_grads_seconds_cuda();
#endif
  return grads_seconds_;
}

void Net::apply_update(Optimizer& opt) {
  enqueue_update(opt);
  wait();
}

void Net::enqueue_update(Optimizer& opt) {
  opt.begin_step();
  run_update(opt);
}

LossResult Net::finish_grads() {
#ifdef HC_WITH_CUDA
  LossResult r;
  if (finish_steps_cuda(&r)) return r;
#endif
  return pending_grads_;
}

#ifndef HC_WITH_CUDA
void Net::transfer(float* dst, Place to, const float* src, Place from, size_t count) {
  copy_floats(dst, to, src, from, count);
}

void* Net::stream_for(Place) { return nullptr; }
#endif

}  // namespace hc
