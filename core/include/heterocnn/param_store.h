// The parameters of a net, per place one allocation holding two flat spans: the values and
// the gradients of every parameter placed there, each parameter at the same offset in both
//   [ values: p0 | p1 | ... | gradients: g0 | g1 | ... ]   (each piece padded to 64 floats)
// so that one copy, one reduction or one update covers all the parameters of a place. The
// padding is zero in both spans and stays zero through any element-wise update. Each Param's
// value and grad are views into this memory.
#pragma once
#include <cstdint>
#include <vector>

#include "heterocnn/buffer.h"
#include "heterocnn/layer.h"

namespace hc {

class ParamStore {
 public:
  // Where parameter i (in net order) lives: its place and its offset in that place's spans.
  struct Slot {
    Place place;
    size_t offset;
    size_t count;
  };

  // Lays out `params` (net order) with params[i] on places[i]: copies every value from
  // wherever it is now and zeroes the gradients. All or nothing: if an allocation or a copy
  // fails, the parameters and the store stay as they were.
  void assign(const std::vector<Param*>& params, const std::vector<Place>& places);

  const std::vector<Slot>& slots() const { return slots_; }
  std::vector<Place> places() const;
  // Floats in each span on `place` (0 where the store has nothing).
  size_t span(Place place) const;
  float* values(Place place);
  float* grads(Place place);
  const float* values(Place place) const;
  const float* grads(Place place) const;
  // Bytes of the store on `place` (values and gradients).
  size_t bytes(Place place) const { return 2 * span(place) * sizeof(float); }
  // Differs after every assign(), and between any two stores: whoever keeps addresses into
  // the store (an optimizer's layout, a captured CUDA graph) compares it to see they moved.
  uint64_t generation() const { return generation_; }

  // Floats a parameter of `count` floats takes in a span (its padding included).
  static size_t padded(size_t count) { return (count + 63) / 64 * 64; }

 private:
  struct Block {
    Place place;
    size_t span;
    Buffer memory;  // 2 * span floats
  };
  const Block* find(Place place) const;
  std::vector<Block> blocks_;
  std::vector<Slot> slots_;
  uint64_t generation_ = 0;
};

}  // namespace hc
