#include "heterocnn/param_store.h"

#include <atomic>

#include "heterocnn/error.h"

namespace hc {

namespace {
std::atomic<uint64_t> next_generation{1};
}  // namespace

void ParamStore::assign(const std::vector<Param*>& params, const std::vector<Place>& places) {
  if (params.size() != places.size())
    fail_value("ParamStore: " + std::to_string(params.size()) + " parameters but " +
               std::to_string(places.size()) + " places");
  std::vector<Block> blocks;
  std::vector<Slot> slots;
  for (size_t i = 0; i < params.size(); ++i) {
    Block* b = nullptr;
    for (Block& k : blocks)
      if (k.place == places[i]) b = &k;
    if (!b) {
      blocks.push_back(Block{places[i], 0, Buffer{}});
      b = &blocks.back();
    }
    const size_t count = static_cast<size_t>(params[i]->shape.numel());
    slots.push_back(Slot{places[i], b->span, count});
    b->span += padded(count);
  }
  // Allocate and fill every block before anything changes (throws leave all as it was).
  for (Block& b : blocks) {
    b.memory = Buffer(2 * b.span, b.place);
    b.memory.zero();
  }
  auto block_of = [&](Place p) -> Block& {
    for (Block& k : blocks)
      if (k.place == p) return k;
    fail_value("ParamStore: no block for " + p.str());
  };
  for (size_t i = 0; i < params.size(); ++i) {
    Block& b = block_of(slots[i].place);
    copy_floats(b.memory.data() + slots[i].offset, b.place, params[i]->value.data(),
                params[i]->value.place(), slots[i].count);
  }
  for (size_t i = 0; i < params.size(); ++i) {
    Block& b = block_of(slots[i].place);
    float* v = b.memory.data() + slots[i].offset;
    params[i]->value = Buffer::view(v, slots[i].count, b.place);
    params[i]->grad = Buffer::view(v + b.span, slots[i].count, b.place);
  }
  blocks_ = std::move(blocks);  // the old memory goes: nothing points into it any more
  slots_ = std::move(slots);
  generation_ = next_generation++;
}

const ParamStore::Block* ParamStore::find(Place place) const {
  for (const Block& b : blocks_)
    if (b.place == place) return &b;
  return nullptr;
}

std::vector<Place> ParamStore::places() const {
  std::vector<Place> out;
  for (const Block& b : blocks_) out.push_back(b.place);
  return out;
}

size_t ParamStore::span(Place place) const {
  const Block* b = find(place);
  return b ? b->span : 0;
}

const float* ParamStore::values(Place place) const {
  const Block* b = find(place);
  return b ? b->memory.data() : nullptr;
}
const float* ParamStore::grads(Place place) const {
  const Block* b = find(place);
  return b ? b->memory.data() + b->span : nullptr;
}
float* ParamStore::values(Place place) {
  return const_cast<float*>(static_cast<const ParamStore*>(this)->values(place));
}
float* ParamStore::grads(Place place) {
  return const_cast<float*>(static_cast<const ParamStore*>(this)->grads(place));
}

}  // namespace hc
