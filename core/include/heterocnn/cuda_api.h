// The CUDA runtime services the core uses, behind plain C++ so that .cpp files need no CUDA
// headers: device memory, copies between places, and one compute stream per device. Every
// failure is an hc::Error (OutOfMemory with the bytes asked for and free, or Device with the
// CUDA error's name). Implemented in cuda/src/memory.cu; absent from builds without CUDA.
#pragma once
#ifdef HC_WITH_CUDA
#include <cstddef>
#include <cstdint>

#include "heterocnn/place.h"

namespace hc::cuda {

// Makes `device` current for this thread; throws an Index error when it does not exist.
void use_device(int device);
float* alloc(size_t count, int device);
void release(float* p, int device) noexcept;
// count floats from src to dst (either side may be host or device); returns when done.
void copy(float* dst, Place dst_place, const float* src, Place src_place, size_t count);
// count floats at p set to 0; returns when done.
void zero(float* p, size_t count, int device);
// Page-locked host memory, which the device reads and writes without a staging copy.
void* alloc_pinned(size_t bytes);
void release_pinned(void* p) noexcept;
// The device's default stream (a cudaStream_t): what a layer run on its own is enqueued on.
void* stream(int device);
// Waits for the device's default stream; throws if any kernel on it failed.
void synchronize(int device);
// A compute stream of one's own on `device` (each net has its own), with the side stream its
// layers branch onto (side_branch.h); destroy_stream releases both.
void* create_stream(int device);
void destroy_stream(void* stream) noexcept;
// y (n) += x (n) on `device`, done when it returns (reduce.cu).
void add_into(int64_t n, float* y, const float* x, int device);

}  // namespace hc::cuda
#endif
