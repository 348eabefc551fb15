#include "heterocnn/replicas.h"

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
}

void Replicas::set_random_stream(uint64_t base) {
  for (size_t r = 0; r < nets_.size(); ++r) nets_[r]->set_random_stream(base + r);
}

Place Replicas::place_of(size_t r) const {
  for (const auto& layer : nets_[r]->layers())
    if (!layer->is_view()) return layer->place();
  return Place{};
}

void Replicas::broadcast(size_t buffers_from) {
  Net& master = *nets_[0];
  const Place p0 = place_of(0);
  for (Net* net : nets_) net->wait();
  for (size_t r = 1; r < nets_.size(); ++r) {
    const Place p = place_of(r);
    copy_floats(nets_[r]->params().values(p), p, master.params().values(p0), p0,
                master.params().span(p0));
  }
  const auto& from = nets_[buffers_from]->layers();
  for (size_t r = 0; r < nets_.size(); ++r) {
    if (r == buffers_from) continue;
    const auto& to = nets_[r]->layers();
    for (size_t i = 0; i < to.size(); ++i)
      for (size_t k = 0; k < to[i]->buffers().size(); ++k) {
        const Buffer& src = from[i]->buffers()[k].value;
        Buffer& dst = to[i]->buffers()[k].value;
        copy_floats(dst.data(), dst.place(), src.data(), src.place(), src.size());
      }
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

LossResult Replicas::train_step(const float* x, const Shape& in, const int64_t* labels,
                                const std::vector<int64_t>& counts, Optimizer& opt) {
  return train_step_on(x, in, labels, counts, opt, nullptr, nullptr, 0);
}

LossResult Replicas::train_step_on(const float* x, const Shape& in, const int64_t* labels,
                                   const std::vector<int64_t>& counts, Optimizer& opt,
                                   const DeviceDataset* data, const int64_t* idx,
                                   size_t device_replica) {
  const LossResult total = compute_grads(x, in, labels, counts, 1.f, data, idx, device_replica);
  apply_update(opt);
  return total;
}

LossResult Replicas::compute_grads(const float* x, const Shape& in, const int64_t* labels,
                                   const std::vector<int64_t>& counts, float weight_all,
                                   const DeviceDataset* data, const int64_t* idx,
                                   size_t device_replica) {
  check(in, counts);
  if (!(weight_all >= 0.f) || !std::isfinite(weight_all))
    fail_value("data parallel: the weight must be finite and >= 0, got " +
               std::to_string(weight_all));
  const size_t K = nets_.size();
  const int64_t N = in[0], sample = in.sample_numel();
  // Where each replica's rows start: in x and labels, which skip the rows of the replica
  // that gathers its own from `data` (idx holds exactly its rows).
  std::vector<int64_t> offset(K, 0);
  for (size_t r = 1; r < K; ++r)
    offset[r] = offset[r - 1] + (data && r - 1 == device_replica ? 0 : counts[r - 1]);
  auto weight = [&](size_t r) {
    return weight_all * static_cast<float>(counts[r]) / static_cast<float>(N);
  };

  // 1. The gradient passes: the GPU replicas start first (they do not wait), then the CPU
  //    replicas run one after another, each with its own thread count.
  for (int pass = 0; pass < 2; ++pass) {
    for (size_t r = 0; r < K; ++r) {
      const bool gpu = place_of(r).device == Device::CUDA;
      if (counts[r] == 0 || gpu != (pass == 0)) continue;
      const int saved = max_threads();
      if (!gpu && threads_[r] > 0) set_threads(threads_[r]);
      const double t0 = now_s();
      try {
        if (data && r == device_replica) {
          nets_[r]->start_grads_on(*data, idx, counts[r], weight(r));
        } else {
          Shape s = in;
          s[0] = counts[r];
          nets_[r]->start_grads(x + offset[r] * sample, s, labels + offset[r], weight(r));
        }
      } catch (...) {
        set_threads(saved);
        for (size_t q = 0; q < K; ++q) nets_[q]->wait();  // nothing left running on failure
        throw;
      }
      set_threads(saved);
      seconds_[r] = now_s() - t0;
    }
  }
  LossResult total;
  for (size_t r = 0; r < K; ++r) {
    if (counts[r] == 0) {
      seconds_[r] = 0.0;
      continue;
    }
    const LossResult res = nets_[r]->finish_grads();
    if (place_of(r).device == Device::CUDA) seconds_[r] = nets_[r]->last_grads_seconds();
    total.loss += res.loss * static_cast<float>(counts[r]) / static_cast<float>(N);
    total.correct += res.correct;
  }

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
  buffers_from_ = 0;
  while (buffers_from_ + 1 < K && counts[buffers_from_] == 0) ++buffers_from_;
  return total;
}

void Replicas::apply_update(Optimizer& opt) {
  // 3. One update; 4. the new weights to every replica, with the layer buffers of the first
  // replica that had rows.
  nets_[0]->apply_update(opt);
  broadcast(buffers_from_);
}

}  // namespace hc
