// What the host and the streams synchronise through: page-locked host memory that the device
// reads and writes without a staging copy, and CUDA events (ordering only, or timing).
#pragma once
#include <cuda_runtime.h>

#include <cstddef>

#include "check.h"
#include "heterocnn/cuda_api.h"

namespace hc {

// Page-locked host memory that grows on request (contents lost when it does).
class PinnedBytes {
 public:
  PinnedBytes() = default;
  PinnedBytes(const PinnedBytes&) = delete;
  PinnedBytes& operator=(const PinnedBytes&) = delete;
  ~PinnedBytes() { cuda::release_pinned(data_); }
  char* reserve(size_t bytes) {
    if (bytes > size_) {
      void* fresh = cuda::alloc_pinned(bytes);
      cuda::release_pinned(data_);
      data_ = static_cast<char*>(fresh);
      size_ = bytes;
    }
    return data_;
  }

 private:
  char* data_ = nullptr;
  size_t size_ = 0;
};

// An event: ordering only, or timing.
class Event {
 public:
  explicit Event(bool timing = false) {
    HC_CUDA_CHECK(cudaEventCreateWithFlags(&e_, timing ? cudaEventDefault : cudaEventDisableTiming));
  }
  Event(const Event&) = delete;
  Event& operator=(const Event&) = delete;
  ~Event() { cudaEventDestroy(e_); }
  cudaEvent_t get() const { return e_; }

 private:
  cudaEvent_t e_ = nullptr;
};

}  // namespace hc
