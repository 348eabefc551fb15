#include "heterocnn/net.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>

#include "heterocnn/error.h"
#include "heterocnn/parallel.h"

namespace hc {

void Net::add(std::unique_ptr<Layer> layer) {
  bool earlier_params = !needs_dx_.empty() && needs_dx_.back();
  if (!layers_.empty() && !layers_.back()->params().empty()) earlier_params = true;
  needs_dx_.push_back(earlier_params);
  layers_.push_back(std::move(layer));
  set_profiling(profiling_);
  in_shape_ = Shape{};  // buffers no longer match
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

void Net::prepare(const Shape& in) {
  if (in == in_shape_ && threads_ == max_threads()) return;
  if (in.ndim < 2 || in[0] <= 0)
    fail_shape("input must be (N, ...) with N >= 1, got " + in.str());
  output_shape(in);  // validates the chain before anything is allocated
  const int threads = max_threads();
  std::vector<Shape> shapes;
  size_t ws = 0, largest = 0;
  Shape s = in;
  for (auto& layer : layers_) {
    ws = std::max(ws, layer->workspace_size(s, threads));
    s = layer->output_shape(s);
    shapes.push_back(s);
    largest = std::max(largest, static_cast<size_t>(s.numel()));
  }
  // Until every buffer is in place the cached shape is invalid: if an allocation throws,
  // the next call prepares again (parameters are never touched here).
  in_shape_ = Shape{};
  out_bufs_.resize(layers_.size());
  for (size_t i = 0; i < layers_.size(); ++i)
    if (!layers_[i]->is_view()) out_bufs_[i].reserve(shapes[i].numel());
  grad_bufs_[0].reserve(largest);
  grad_bufs_[1].reserve(largest);
  workspace_.reserve(ws);
  outs_.assign(layers_.size(), Tensor{});
  for (size_t i = 0; i < layers_.size(); ++i) {
    outs_[i].shape = shapes[i];
    if (!layers_[i]->is_view()) outs_[i].data = out_bufs_[i].data();
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

namespace {

// Adds the time from construction to destruction to a layer's forward or backward counters
// (when `times` is not null).
class ScopedTimer {
 public:
  ScopedTimer(LayerTimes* times, bool forward) : times_(times), forward_(forward) {
    if (times_) start_ = std::chrono::steady_clock::now();
  }
  ~ScopedTimer() {
    if (!times_) return;
    const double s =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
    (forward_ ? times_->forward_s : times_->backward_s) += s;
    ++(forward_ ? times_->forward_calls : times_->backward_calls);
  }

 private:
  LayerTimes* times_;
  bool forward_;
  std::chrono::steady_clock::time_point start_;
};

}  // namespace

void Net::set_profiling(bool on) {
  profiling_ = on;
  times_.assign(on ? layers_.size() : 0, LayerTimes{});
}

void Net::run_forward(const float* x) {
  Tensor in{const_cast<float*>(x), in_shape_};  // layers never write their input
  for (size_t i = 0; i < layers_.size(); ++i) {
    const Tensor& xi = i == 0 ? in : outs_[i - 1];
    if (layers_[i]->is_view()) {
      outs_[i].data = xi.data;
      continue;
    }
    ScopedTimer timer(profiling_ ? &times_[i] : nullptr, true);
    layers_[i]->forward(xi, outs_[i], workspace_.data());
  }
}

LossResult Net::run_loss(const int64_t* labels, float* dlogits) {
  const Tensor& z = outs_.back();
  return loss_ == LossKind::BCE
             ? sigmoid_bce_cpu(z.shape[0], z.data, labels, dlogits)
             : softmax_cross_entropy_cpu(z.shape[0], z.shape[1], z.data, labels, dlogits);
}

void Net::run_backward(const float* x) {
  Tensor in{const_cast<float*>(x), in_shape_};
  int cur = 0;
  Tensor dy{grad_bufs_[cur].data(), outs_.back().shape};
  for (size_t i = layers_.size(); i-- > 0;) {
    const Tensor& xi = i == 0 ? in : outs_[i - 1];
    if (layers_[i]->is_view()) {
      dy.shape = xi.shape;
      continue;
    }
    Tensor dx{grad_bufs_[1 - cur].data(), xi.shape};
    ScopedTimer timer(profiling_ ? &times_[i] : nullptr, false);
    layers_[i]->backward(xi, outs_[i], dy, needs_dx_[i] ? &dx : nullptr, workspace_.data());
    if (!needs_dx_[i]) break;  // nothing before this layer learns
    dy = dx;
    cur = 1 - cur;
  }
}

void Net::forward(const float* x, const Shape& in, float* out) {
  prepare(in);
  check_input(x, in);
  run_forward(x);
  std::memcpy(out, outs_.back().data, outs_.back().numel() * sizeof(float));
}

LossResult Net::loss_and_grads(const float* x, const Shape& in, const int64_t* labels) {
  prepare(in);
  check_input(x, in);
  check_labels(labels, in[0]);
  run_forward(x);
  const LossResult r = run_loss(labels, grad_bufs_[0].data());
  run_backward(x);
  return r;
}

LossResult Net::train_step(const float* x, const Shape& in, const int64_t* labels,
                           const SgdConfig& cfg) {
  validate(cfg);
  const LossResult r = loss_and_grads(x, in, labels);
  for (auto& layer : layers_)
    for (Param& p : layer->params())
      sgd_update_cpu(p.shape.numel(), p.value.data(), p.grad.data(), p.velocity.data(), cfg);
  return r;
}

}  // namespace hc
