#include "heterocnn/optimizer.h"

#include <atomic>
#include <cstring>

#include "heterocnn/error.h"

namespace hc {

namespace {
std::atomic<uint64_t> next_state_generation{1};
}  // namespace

Optimizer::PlaceState* Optimizer::find(Place place) {
  for (PlaceState& s : places_)
    if (s.place == place) return &s;
  return nullptr;
}

float* Optimizer::state_at(const ParamStore::Slot& slot, int k) {
  PlaceState* s = find(slot.place);
  return s->memory.data() + k * s->span + slot.offset;
}

void Optimizer::follow(const ParamStore& store) {
  if (store.generation() == store_generation_) return;
  const int K = state_count();
  std::vector<PlaceState> fresh;
  for (const Place& p : store.places()) {
    PlaceState s{p, store.span(p), Buffer(K * store.span(p), p)};
    s.memory.zero();
    fresh.push_back(std::move(s));
  }
  // The state of each parameter moves from its old place and offset to its new ones (a
  // store with another number of parameters is another model: its state starts at zero).
  const std::vector<ParamStore::Slot>& slots = store.slots();
  if (layout_.size() == slots.size()) {
    for (size_t i = 0; i < slots.size(); ++i) {
      PlaceState* to = nullptr;
      for (PlaceState& s : fresh)
        if (s.place == slots[i].place) to = &s;
      for (int k = 0; k < K; ++k)
        copy_floats(to->memory.data() + k * to->span + slots[i].offset, to->place,
                    state_at(layout_[i], k), layout_[i].place, slots[i].count);
    }
  }
  places_ = std::move(fresh);
  layout_ = slots;
  store_generation_ = store.generation();
  state_generation_ = next_state_generation++;
}

void Optimizer::reset() {
  for (PlaceState& s : places_) s.memory.zero();
  steps_ = 0;
}

void Optimizer::set_steps(int64_t steps) {
  if (steps < 0) fail_value("an optimizer's step count must be >= 0, got " + std::to_string(steps));
  steps_ = steps;
}

void Optimizer::get_state(const ParamStore& store, int k, size_t i, float* dst) {
  follow(store);
  if (k < 0 || k >= state_count() || i >= layout_.size())
    fail_value("optimizer state " + std::to_string(k) + " of parameter " + std::to_string(i) +
               " does not exist");
  copy_floats(dst, Place{}, state_at(layout_[i], k), layout_[i].place, layout_[i].count);
}

void Optimizer::set_state(const ParamStore& store, int k, size_t i, const float* src) {
  follow(store);
  if (k < 0 || k >= state_count() || i >= layout_.size())
    fail_value("optimizer state " + std::to_string(k) + " of parameter " + std::to_string(i) +
               " does not exist");
  copy_floats(state_at(layout_[i], k), layout_[i].place, src, Place{}, layout_[i].count);
}

void Optimizer::update(ParamStore& store, Place place, const void* device_config, void* stream) {
  follow(store);
  PlaceState* s = find(place);
  if (!s || s->span == 0) return;
  float* state[4];
  for (int k = 0; k < state_count(); ++k) state[k] = s->memory.data() + k * s->span;
  if (place.device == Device::CPU) return update_cpu(store.values(place), store.grads(place), state, s->span);
#ifdef HC_WITH_CUDA
  update_cuda(store.values(place), store.grads(place), state, s->span, device_config, stream);
#else
  (void)device_config;
  (void)stream;
  fail(ErrorKind::Device, "heterocnn was built without CUDA");
#endif
}

SgdConfig Sgd::step_config() const {
  SgdConfig c = config_;
  if (steps() <= 1) c.dampening = 0.f;  // torch: the first step's buffer is g itself
  return c;
}

void Sgd::write_config(void* dst) const {
  const SgdConfig c = step_config();
  std::memcpy(dst, &c, sizeof(SgdConfig));
}

void Sgd::update_cpu(float* p, const float* g, float* const* state, size_t n) {
  const SgdSlice all{static_cast<int64_t>(n), p, g, state[0]};
  sgd_update_all_cpu(&all, 1, step_config());
}

void Adam::write_config(void* dst) const {
  const AdamStep s = adam_step(config_, steps());
  std::memcpy(dst, &s, sizeof(AdamStep));
}

void Adam::update_cpu(float* p, const float* g, float* const* state, size_t n) {
  adam_update_cpu(static_cast<int64_t>(n), p, g, state[0], state[1], adam_step(config_, steps()));
}

}  // namespace hc
