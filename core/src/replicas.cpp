#include "heterocnn/replicas.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <string>

#include "heterocnn/error.h"
#include "heterocnn/parallel.h"
#include "heterocnn/reduce.h"

namespace hc {

namespace {

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

}  // namespace

Replicas::Replicas(std::vector<Net*> nets, std::vector<int> threads)
    : nets_(std::move(nets)), threads_(std::move(threads)) {
  if (nets_.empty()) fail_value("data parallel training needs at least one replica");
  if (threads_.size() != nets_.size())
    fail_value("data parallel: " + std::to_string(threads_.size()) + " thread counts for " +
               std::to_string(nets_.size()) + " replicas");
  for (size_t r = 0; r < nets_.size(); ++r) {
    const Net& n = *nets_[r];
    if (n.params().places().size() > 1)
      fail_value("data parallel: replica " + std::to_string(r) + " is split over places");
    if (n.params().slots().size() != nets_[0]->params().slots().size() ||
        n.params().span(place_of(r)) != nets_[0]->params().span(place_of(0)))
      fail_value("data parallel: replica " + std::to_string(r) + " is another model");
    if (threads_[r] < 0) fail_value("data parallel: a thread count must be >= 0");
  }
  set_random_stream(0);
  seconds_.assign(nets_.size(), 0.0);
  shared_.resize(nets_.size());
  for (size_t r = 0; r < nets_.size(); ++r)
    for (const auto& layer : nets_[r]->layers())
      for (LayerBuffer& b : layer->buffers())
        if (!b.scratch) shared_[r].push_back(&b.value);
}

Replicas::~Replicas() {
  try {
    wait_all();
  } catch (...) {  // a destructor does not throw; the device's error shows at its next use
  }
}

void Replicas::set_random_stream(uint64_t base) {
  settle();
  for (size_t r = 0; r < nets_.size(); ++r) nets_[r]->set_random_stream(base + r);
}

Place Replicas::place_of(size_t r) const {
  for (const auto& layer : nets_[r]->layers())
    if (!layer->is_view()) return layer->place();
  return Place{};
}

void Replicas::wait_all() {
  for (Net* net : nets_) net->wait();
}

void Replicas::broadcast(size_t buffers_from) {
  settle();
  Net& master = *nets_[0];
  const Place p0 = place_of(0);
  wait_all();
  for (size_t r = 1; r < nets_.size(); ++r) {
    const Place p = place_of(r);
    copy_floats(nets_[r]->params().values(p), p, master.params().values(p0), p0,
                master.params().span(p0));
  }
  const std::vector<Buffer*>& from = shared_buffers(buffers_from);
  for (size_t r = 0; r < nets_.size(); ++r) {
    if (r == buffers_from) continue;
    const std::vector<Buffer*>& to = shared_buffers(r);
    for (size_t k = 0; k < to.size(); ++k)
      copy_floats(to[k]->data(), to[k]->place(), from[k]->data(), from[k]->place(),
                  from[k]->size());
  }
}

void Replicas::check(const Shape& in, const std::vector<int64_t>& counts) const {
  if (counts.size() != nets_.size())
    fail_value("data parallel: " + std::to_string(counts.size()) + " shares for " +
               std::to_string(nets_.size()) + " replicas");
  int64_t total = 0;
  for (int64_t c : counts) {
    if (c < 0) fail_value("data parallel: a share of " + std::to_string(c) + " rows");
    total += c;
  }
  if (in.ndim < 2 || total != in[0])
    fail_value("data parallel: the shares add up to " + std::to_string(total) +
               " rows, but the batch " + in.str() + " has " + std::to_string(in[0]));
}

std::vector<int64_t> Replicas::row_offsets(const std::vector<int64_t>& counts, bool gathered,
                                           size_t device_replica) const {
  std::vector<int64_t> offset(nets_.size(), 0);
  for (size_t r = 1; r < nets_.size(); ++r)
    offset[r] = offset[r - 1] + (gathered && r - 1 == device_replica ? 0 : counts[r - 1]);
  return offset;
}

int Replicas::run_passes(bool on_gpu, const float* x, const Shape& in, const int64_t* labels,
                         const std::vector<int64_t>& counts, float weight_all,
                         const DeviceDataset* data, const int64_t* idx, size_t device_replica,
                         LossResult* earlier) {
  int reported = 0;
  const int64_t N = in[0], sample = in.sample_numel();
  const std::vector<int64_t> offset = row_offsets(counts, data != nullptr, device_replica);
  for (size_t r = 0; r < nets_.size(); ++r) {
    if (counts[r] == 0 || (place_of(r).device == Device::CUDA) != on_gpu) continue;
    const float weight = weight_all * static_cast<float>(counts[r]) / static_cast<float>(N);
    const int saved = max_threads();
    if (!on_gpu && threads_[r] > 0) set_threads(threads_[r]);
    const double t0 = now_s();
    try {
      LossResult* mine = r == 0 ? earlier : nullptr;
      if (data && r == device_replica) {
        reported += nets_[r]->start_grads_on(*data, idx, counts[r], weight, mine);
      } else {
        Shape s = in;
        s[0] = counts[r];
        reported += nets_[r]->start_grads(x + offset[r] * sample, s, labels + offset[r], weight,
                                          mine);
      }
    } catch (...) {
      set_threads(saved);
      wait_all();  // nothing left running on failure
      throw;
    }
    set_threads(saved);
    if (!on_gpu) seconds_[r] = now_s() - t0;  // a GPU's from its events (finished)
  }
  return reported;
}

LossResult Replicas::finished(size_t r) {
  const LossResult res = nets_[r]->finish_grads();
  if (place_of(r).device == Device::CUDA) seconds_[r] = nets_[r]->last_grads_seconds();
  return res;
}

LossResult Replicas::combine(const std::vector<LossResult>& results,
                             const std::vector<int64_t>& counts) {
  int64_t N = 0;
  for (int64_t c : counts) N += c;
  LossResult total;
  for (size_t r = 0; r < counts.size(); ++r) {
    if (counts[r] == 0) continue;
    total.loss += results[r].loss * static_cast<float>(counts[r]) / static_cast<float>(N);
    total.correct += results[r].correct;
  }
  return total;
}

void Replicas::choose_buffers_from(const std::vector<int64_t>& counts) {
  buffers_from_ = 0;
  while (buffers_from_ + 1 < nets_.size() && counts[buffers_from_] == 0) ++buffers_from_;
}

LossResult Replicas::train_step(const float* x, const Shape& in, const int64_t* labels,
                                const std::vector<int64_t>& counts, Optimizer& opt) {
  return train_step_on(x, in, labels, counts, opt, nullptr, nullptr, 0);
}

LossResult Replicas::train_step_on(const float* x, const Shape& in, const int64_t* labels,
                                   const std::vector<int64_t>& counts, Optimizer& opt,
                                   const DeviceDataset* data, const int64_t* idx,
                                   size_t device_replica) {
  LossResult r[2];
  int n = start_step(x, in, labels, counts, opt, data, idx, device_replica, r);
  n += finish_steps(r + n);
  return r[n - 1];
}

int Replicas::start_step(const float* x, const Shape& in, const int64_t* labels,
                         const std::vector<int64_t>& counts, Optimizer& opt,
                         const DeviceDataset* data, const int64_t* idx, size_t device_replica,
                         LossResult* out) {
  if (!overlaps()) {
    *out = compute_grads(x, in, labels, counts, 1.f, data, idx, device_replica);
    apply_update(opt);
    return 1;
  }
  check(in, counts);
  const double entered = now_s();
  const size_t K = nets_.size();
  for (size_t r = 1; r < K; ++r) seconds_[r] = 0.0;
  // 1. The GPU's pass is enqueued behind the last step's update, then the host waits for the
  //    GPU's last pass, and the CPU replicas run once the last step's weights are theirs.
  LossResult gpu_before;
  const bool gpu_running = running_ && running_counts_[0] > 0;
  const int got = run_passes(true, x, in, labels, counts, 1.f, data, idx, device_replica,
                             gpu_running ? &gpu_before : nullptr);
  int reported = 0;
  if (running_) {
    *out = report_running(got ? &gpu_before : nullptr);
    reported = 1;
  }
  const double waited = now_s() - entered;
  bool cpu_rows_now = false;
  for (size_t r = 1; r < K; ++r) cpu_rows_now |= counts[r] > 0;
  try {
    if (cpu_rows_now) land();  // else later: the newest weights land when a pass needs them
  } catch (...) {
    wait_all();
    throw;
  }
  run_passes(false, x, in, labels, counts, 1.f, data, idx, device_replica);
  running_results_.assign(K, LossResult{});
  int64_t cpu_rows = 0;
  double cpu_seconds = 0;
  for (size_t r = 1; r < K; ++r)
    if (counts[r] > 0) {
      running_results_[r] = finished(r);
      cpu_rows += counts[r];
      cpu_seconds += seconds_[r];
    }
  // 2-4, enqueued behind the GPU's pass.
  try {
    enqueue_tail(opt, counts);
  } catch (...) {
    wait_all();
    throw;
  }
  running_ = true;
  running_counts_ = counts;
  // The host's own time this step (outside this call since it last returned, and in it but
  // for the GPU's pass and the launch) is time the CPU replicas cannot compute: theirs, by
  // rows.
  const double left = now_s();
  const double host = (left - entered - waited) + (host_left_at_ >= 0 ? entered - host_left_at_ : 0);
  for (size_t r = 1; r < K; ++r)
    if (counts[r] > 0)
      seconds_[r] += std::max(0.0, host - cpu_seconds) * static_cast<double>(counts[r]) /
                     static_cast<double>(cpu_rows);
  host_left_at_ = left;
  return reported;
}

LossResult Replicas::report_running(const LossResult* gpu) {
  running_ = false;
  seconds_[0] = 0.0;
  if (running_counts_[0] > 0) {
    running_results_[0] = gpu ? *gpu : nets_[0]->finish_grads();
    seconds_[0] = nets_[0]->last_grads_seconds();
  }
  return combine(running_results_, running_counts_);
}

int Replicas::finish_steps(LossResult* out) {
  host_left_at_ = -1;
  if (!running_) return 0;
  *out = report_running(nullptr);
  land();
  return 1;
}

void Replicas::settle() {
  LossResult dropped;
  finish_steps(&dropped);
}

LossResult Replicas::compute_grads(const float* x, const Shape& in, const int64_t* labels,
                                   const std::vector<int64_t>& counts, float weight_all,
                                   const DeviceDataset* data, const int64_t* idx,
                                   size_t device_replica) {
  settle();
  check(in, counts);
  if (!(weight_all >= 0.f) || !std::isfinite(weight_all))
    fail_value("data parallel: the weight must be finite and >= 0, got " +
               std::to_string(weight_all));
  const size_t K = nets_.size();
  seconds_.assign(K, 0.0);
  // 1. The gradient passes: the GPU replicas start first (they do not wait), then the CPU
  //    replicas run one after another, each with its own thread count.
  run_passes(true, x, in, labels, counts, weight_all, data, idx, device_replica);
  run_passes(false, x, in, labels, counts, weight_all, data, idx, device_replica);
  std::vector<LossResult> results(K);
  for (size_t r = 0; r < K; ++r)
    if (counts[r] > 0) results[r] = finished(r);
  const LossResult total = combine(results, counts);

  // 2. The sum, in replica order, into the master's gradients.
  Net& master = *nets_[0];
  const Place p0 = place_of(0);
  const size_t span = master.params().span(p0);
  float* grads = master.params().grads(p0);
  bool first = counts[0] > 0;
  scratch_.reserve(span, p0);
  for (size_t r = 1; r < K; ++r) {
    if (counts[r] == 0) continue;
    const Place p = place_of(r);
    float* into = first ? scratch_.data() : grads;  // the first contribution is copied as is
    copy_floats(into, p0, nets_[r]->params().grads(p), p, span);
    if (first) add_into(p0, static_cast<int64_t>(span), grads, scratch_.data());
    first = true;
  }
  choose_buffers_from(counts);
  return total;
}

void Replicas::apply_update(Optimizer& opt) {
  // 3. One update; 4. the new weights to every replica, with the layer buffers of the first
  // replica that had rows.
  settle();
  nets_[0]->apply_update(opt);
  broadcast(buffers_from_);
}

#ifndef HC_WITH_CUDA
void ReplicaPipelineDeleter::operator()(ReplicaPipeline*) const {}
bool Replicas::overlaps() const { return false; }
void Replicas::enqueue_tail(Optimizer&, const std::vector<int64_t>&) {}
void Replicas::land() {}
#endif

}  // namespace hc
