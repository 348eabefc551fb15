// A net's device arenas: per CUDA device, one allocation holding the parameters (value,
// gradient, momentum) of the layers placed there, then every activation, gradient buffer,
// staging buffer and workspace of the step, each piece a Buffer view on a 256-byte boundary.
#include <algorithm>
#include <vector>

#include "heterocnn/net.h"

namespace hc {

namespace {

constexpr size_t kAlignFloats = 64;  // 256 bytes

size_t rounded(size_t n) { return (n + kAlignFloats - 1) / kAlignFloats * kAlignFloats; }

}  // namespace

bool Net::pack_arenas() {
  std::vector<int> devices;
  auto note = [&](int d) {
    if (std::find(devices.begin(), devices.end(), d) == devices.end()) devices.push_back(d);
  };
  for (auto& layer : layers_)
    if (layer->place().device == Device::CUDA && !layer->params().empty()) note(layer->place().index);
  for (const ArenaRequest& r : arena_requests_) note(r.device);

  bool moved = false;
  for (int d : devices) {
    const Place place{Device::CUDA, d};
    std::vector<Param*> params;
    for (auto& layer : layers_)
      if (layer->place() == place)
        for (Param& p : layer->params()) params.push_back(&p);
    std::vector<ArenaRequest*> requests;
    for (ArenaRequest& r : arena_requests_)
      if (r.device == d) requests.push_back(&r);

    Buffer& arena = arenas_.at(place);
    const float* base = arena.data();
    auto inside = [&](const Buffer& b) {
      return b.is_view() && b.place() == place && base && b.data() >= base &&
             b.data() + b.size() <= base + arena.size();
    };
    // A request keeps the size it already has here, so batch shapes that come and go (the
    // last, partial batch of an epoch) share one layout.
    for (ArenaRequest* r : requests)
      if (inside(*r->buffer)) r->count = std::max(r->count, r->buffer->size());
    size_t total = 0, params_end = 0;
    bool params_in_place = true;
    for (Param* p : params) {
      for (Buffer* b : {&p->value, &p->grad, &p->velocity}) {
        params_in_place &= inside(*b) && b->data() == base + params_end;
        params_end += rounded(p->shape.numel());
      }
    }
    total = params_end;
    for (ArenaRequest* r : requests) total += rounded(r->count);

    if (params_in_place && total <= arena.size()) {  // room already: place the requests
      size_t off = params_end;
      for (ArenaRequest* r : requests) {
        float* at = arena.data() + off;
        if (r->buffer->data() != at || !inside(*r->buffer) || r->buffer->size() < r->count) {
          *r->buffer = Buffer::view(at, r->count, place);
          moved = true;
        }
        off += rounded(r->count);
      }
      continue;
    }
    Buffer fresh(total, place);  // the one allocation; throws before anything changes
    size_t off = 0;
    for (Param* p : params) {
      const size_t n = p->shape.numel();
      for (Buffer* b : {&p->value, &p->grad, &p->velocity}) {
        Buffer v = Buffer::view(fresh.data() + off, n, place);
        if (b == &p->grad)
          v.zero();  // gradients are rewritten by every backward
        else
          copy_floats(v.data(), place, b->data(), b->place(), n);
        *b = std::move(v);
        off += rounded(n);
      }
    }
    for (ArenaRequest* r : requests) {
      *r->buffer = Buffer::view(fresh.data() + off, r->count, place);
      off += rounded(r->count);
    }
    arena = std::move(fresh);  // the old arena goes: nothing points into it any more
    moved = true;
  }
  // A device that holds nothing of this net any more gives its arena back.
  for (const Place& p : arenas_.places())
    if (std::find(devices.begin(), devices.end(), p.index) == devices.end())
      arenas_.at(p) = Buffer(0, p);
  arena_requests_.clear();
  return moved;
}

}  // namespace hc
