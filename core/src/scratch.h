// Internal: a per-thread scratch buffer for kernels whose working memory is not in the step's
// workspace (sgemm's packed panels, the direct kernels' accumulators and copies): 64-byte aligned,
// grown on demand and then reused, so that steady-state calls allocate nothing. Declare it
// thread_local; a failed allocation throws std::bad_alloc and leaves the buffer empty. Internal
// linkage, as cpu_features.h: each instruction set's kernels keep their own copy.
#pragma once
#include <cstdint>
#include <cstdlib>
#include <new>

namespace hc {
namespace {

class ScratchBuffer {
 public:
  ScratchBuffer() = default;
  ScratchBuffer(const ScratchBuffer&) = delete;
  ScratchBuffer& operator=(const ScratchBuffer&) = delete;
  ~ScratchBuffer() { std::free(data_); }

  // At least n floats, the first at a 64-byte boundary; what was in the buffer is not kept.
  float* get(int64_t n) {
    if (n > capacity_) {
      std::free(data_);
      capacity_ = (n + 15) / 16 * 16;
      data_ = static_cast<float*>(std::aligned_alloc(64, capacity_ * sizeof(float)));
      if (!data_) {
        capacity_ = 0;
        throw std::bad_alloc();
      }
    }
    return data_;
  }

 private:
  float* data_ = nullptr;
  int64_t capacity_ = 0;
};

}  // namespace
}  // namespace hc
