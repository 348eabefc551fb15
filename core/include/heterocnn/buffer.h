// Float storage on one place. An owning buffer allocates its memory (on the CPU 64-byte
// aligned: one cache line, one AVX-512 vector), grows on request and never shrinks, so a
// training step that asks for the same sizes again allocates nothing. A view is a piece of
// memory owned by someone else (a net's device arena).
#pragma once
#include <cstddef>

#include "heterocnn/place.h"

namespace hc {

// Copies `count` floats between any two places (host and/or devices); returns when done.
void copy_floats(float* dst, Place dst_place, const float* src, Place src_place, size_t count);

// Floats of storage for `count` objects of type T (a Buffer holds floats).
template <typename T>
constexpr size_t floats_for(size_t count) {
  return (count * sizeof(T) + sizeof(float) - 1) / sizeof(float);
}

class Buffer {
 public:
  Buffer() = default;
  explicit Buffer(size_t count, Place place = Place{});
  ~Buffer();
  Buffer(Buffer&& o) noexcept;
  Buffer& operator=(Buffer&& o) noexcept;
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  // `count` floats at `data` on `place`, not freed by this buffer.
  static Buffer view(float* data, size_t count, Place place);
  bool is_view() const { return !owns_; }

  float* data() { return data_; }
  const float* data() const { return data_; }
  size_t size() const { return size_; }
  Place place() const { return place_; }

  // Makes room for at least `count` floats on `place`; the contents are lost when it
  // reallocates, which it reports by returning true. A view that is too small or elsewhere
  // becomes an owning buffer.
  bool reserve(size_t count, Place place);
  bool reserve(size_t count) { return reserve(count, place_); }
  // Zero-fills the first `count` floats (all of them by default).
  void zero(size_t count = static_cast<size_t>(-1));
  // Copies between this buffer (on any place) and host memory.
  void copy_from_host(const float* src, size_t count);
  void copy_to_host(float* dst, size_t count) const;
  // A new buffer on `place` holding a copy of this one.
  Buffer copy_to(Place place) const;

 private:
  void release();
  float* data_ = nullptr;
  size_t size_ = 0;
  Place place_{};
  bool owns_ = true;
};

}  // namespace hc
