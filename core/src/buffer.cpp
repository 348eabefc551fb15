#include "heterocnn/buffer.h"

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <utility>

#include "heterocnn/cuda_api.h"
#include "heterocnn/error.h"

namespace hc {

namespace {

constexpr size_t kAlign = 64;

// MemAvailable of /proc/meminfo in bytes, or SIZE_MAX where it cannot be read.
size_t host_available_bytes() {
  std::FILE* f = std::fopen("/proc/meminfo", "r");
  if (!f) return SIZE_MAX;
  char line[256];
  size_t kib = 0;
  bool found = false;
  while (!found && std::fgets(line, sizeof line, f))
    found = std::sscanf(line, "MemAvailable: %zu kB", &kib) == 1;
  std::fclose(f);
  return found && kib < SIZE_MAX / 1024 ? kib * 1024 : SIZE_MAX;
}

// Large host allocations are checked against the memory actually available and touched at
// once: with Linux's overcommit, malloc hands out more than there is, and a later first touch
// would end the process through the OOM killer instead of raising here. (Touched, the memory
// counts as used, so the next allocation's check sees it.)
constexpr size_t kCheckAvailableFrom = size_t{64} << 20;

float* allocate(size_t count, Place place) {
  if (count == 0) return nullptr;
  // count comes from bounded shapes (shape.h), but a size past what any allocator can give is
  // an out-of-memory error here rather than a wrapped, small allocation.
  if (count > static_cast<size_t>(PTRDIFF_MAX) / sizeof(float) - kAlign)
    fail(ErrorKind::OutOfMemory, "allocation of " + std::to_string(count) + " floats on " +
                                     place.str() + " exceeds the address space (out of memory)");
  if (place.device == Device::CUDA) {
#ifdef HC_WITH_CUDA
    return cuda::alloc(count, place.index);
#else
    fail(ErrorKind::Device, "cannot allocate on " + place.str() + ": built without CUDA");
#endif
  }
  const size_t bytes = (count * sizeof(float) + kAlign - 1) / kAlign * kAlign;
  if (bytes >= kCheckAvailableFrom) {
    const size_t available = host_available_bytes();
    if (bytes > available)
      fail(ErrorKind::OutOfMemory, "host allocation of " + std::to_string(bytes) +
                                       " bytes is more than the " + std::to_string(available) +
                                       " bytes of memory available (out of memory)");
  }
  void* p = std::aligned_alloc(kAlign, bytes);
  if (!p)
    fail(ErrorKind::OutOfMemory,
         "host allocation of " + std::to_string(bytes) + " bytes failed (out of memory)");
  if (bytes >= kCheckAvailableFrom) std::memset(p, 0, bytes);
  return static_cast<float*>(p);
}

void deallocate(float* p, Place place) {
#ifdef HC_WITH_CUDA
  if (place.device == Device::CUDA) return cuda::release(p, place.index);
#endif
  (void)place;
  std::free(p);
}

}  // namespace

void copy_floats(float* dst, Place dst_place, const float* src, Place src_place, size_t count) {
#ifdef HC_WITH_CUDA
  if (dst_place.device == Device::CUDA || src_place.device == Device::CUDA)
    return cuda::copy(dst, dst_place, src, src_place, count);
#endif
  (void)dst_place;
  (void)src_place;
  if (count) std::memcpy(dst, src, count * sizeof(float));
}


Buffer::Buffer(size_t count, Place place) : place_(place) {
  data_ = allocate(count, place);
  size_ = count;
}

Buffer::~Buffer() { release(); }

Buffer::Buffer(Buffer&& o) noexcept
    : data_(std::exchange(o.data_, nullptr)),
      size_(std::exchange(o.size_, 0)),
      place_(o.place_),
      owns_(std::exchange(o.owns_, true)) {}

Buffer& Buffer::operator=(Buffer&& o) noexcept {
  if (this != &o) {
    release();
    data_ = std::exchange(o.data_, nullptr);
    size_ = std::exchange(o.size_, 0);
    place_ = o.place_;
    owns_ = std::exchange(o.owns_, true);
  }
  return *this;
}

Buffer Buffer::view(float* data, size_t count, Place place) {
  Buffer b;
  b.data_ = data;
  b.size_ = count;
  b.place_ = place;
  b.owns_ = false;
  return b;
}

void Buffer::release() {
  if (data_ && owns_) deallocate(data_, place_);
  data_ = nullptr;
  size_ = 0;
  owns_ = true;
}

bool Buffer::reserve(size_t count, Place place) {
  if (count <= size_ && place == place_) return false;
  float* fresh = allocate(count, place);  // throws before anything is released
  release();
  data_ = fresh;
  size_ = count;
  place_ = place;
  return true;
}

void Buffer::zero(size_t count) {
  if (count > size_) count = size_;
#ifdef HC_WITH_CUDA
  if (place_.device == Device::CUDA) return cuda::zero(data_, count, place_.index);
#endif
  if (count) std::memset(data_, 0, count * sizeof(float));
}

void Buffer::copy_from_host(const float* src, size_t count) {
  if (count > size_) fail_value("copy of " + std::to_string(count) + " floats into a buffer of " + std::to_string(size_));
  copy_floats(data_, place_, src, Place{}, count);
}

void Buffer::copy_to_host(float* dst, size_t count) const {
  if (count > size_) fail_value("copy of " + std::to_string(count) + " floats out of a buffer of " + std::to_string(size_));
  copy_floats(dst, Place{}, data_, place_, count);
}

Buffer Buffer::copy_to(Place place) const {
  Buffer out(size_, place);
  copy_floats(out.data_, place, data_, place_, size_);
  return out;
}

}  // namespace hc
