#include "heterocnn/buffer.h"

#include <cstdlib>
#include <cstring>
#include <utility>

#include "heterocnn/error.h"

namespace hc {

namespace {

constexpr size_t kAlign = 64;

float* allocate(size_t count, Place place) {
  if (count == 0) return nullptr;
  const size_t bytes = (count * sizeof(float) + kAlign - 1) / kAlign * kAlign;
  if (place.device != Device::CPU)
    fail(ErrorKind::Device, "cannot allocate on " + place.str() + ": this build has no CUDA support");
  void* p = std::aligned_alloc(kAlign, bytes);
  if (!p)
    fail(ErrorKind::OutOfMemory,
         "host allocation of " + std::to_string(bytes) + " bytes failed (out of memory)");
  return static_cast<float*>(p);
}

void deallocate(float* p, Place place) {
  (void)place;
  std::free(p);
}

}  // namespace

Buffer::Buffer(size_t count, Place place) : place_(place) {
  data_ = allocate(count, place);
  size_ = count;
}

Buffer::~Buffer() { release(); }

Buffer::Buffer(Buffer&& o) noexcept
    : data_(std::exchange(o.data_, nullptr)), size_(std::exchange(o.size_, 0)), place_(o.place_) {}

Buffer& Buffer::operator=(Buffer&& o) noexcept {
  if (this != &o) {
    release();
    data_ = std::exchange(o.data_, nullptr);
    size_ = std::exchange(o.size_, 0);
    place_ = o.place_;
  }
  return *this;
}

void Buffer::release() {
  if (data_) deallocate(data_, place_);
  data_ = nullptr;
  size_ = 0;
}

void Buffer::reserve(size_t count) {
  if (count <= size_) return;
  float* fresh = allocate(count, place_);  // throws before anything is released
  release();
  data_ = fresh;
  size_ = count;
}

void Buffer::zero(size_t count) {
  if (count > size_) count = size_;
  if (count) std::memset(data_, 0, count * sizeof(float));
}

void Buffer::copy_from_host(const float* src, size_t count) {
  if (count > size_) fail_value("copy of " + std::to_string(count) + " floats into a buffer of " + std::to_string(size_));
  if (count) std::memcpy(data_, src, count * sizeof(float));
}

void Buffer::copy_to_host(float* dst, size_t count) const {
  if (count > size_) fail_value("copy of " + std::to_string(count) + " floats out of a buffer of " + std::to_string(size_));
  if (count) std::memcpy(dst, data_, count * sizeof(float));
}

Buffer Buffer::copy_to(Place place) const {
  Buffer out(size_, place);
  if (size_) std::memcpy(out.data_, data_, size_ * sizeof(float));
  return out;
}

}  // namespace hc
