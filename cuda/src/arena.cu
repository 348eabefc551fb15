// A net's device arenas: per CUDA device, one allocation holding every activation, gradient
// buffer, staging buffer and workspace of the step, each piece a Buffer view on a 256-byte
// boundary. (The parameters live in the net's ParamStore.)
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
  for (const ArenaRequest& r : arena_requests_)
    if (std::find(devices.begin(), devices.end(), r.device) == devices.end())
      devices.push_back(r.device);

  bool moved = false;
  for (int d : devices) {
    const Place place{Device::CUDA, d};
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
    size_t total = 0;
    for (ArenaRequest* r : requests) total += rounded(r->count);

    if (total <= arena.size()) {  // room already: place the requests
      size_t off = 0;
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
    for (ArenaRequest* r : requests) {
      *r->buffer = Buffer::view(fresh.data() + off, r->count, place);
      off += rounded(r->count);
    }
    arena = std::move(fresh);  // the old arena goes: nothing points into it any more
    moved = true;
  }
  // A device that holds no layer of this net any more gives its arena back.
  for (const Place& p : arenas_.places()) {
    bool used = false;
    for (const auto& layer : layers_) used |= layer->place() == p;
    if (!used) arenas_.at(p) = Buffer(0, p);
  }
  arena_requests_.clear();
  return moved;
}

}  // namespace hc
