// Functions that the C++ compiler and nvcc both compile, so that a CPU loop and its CUDA
// kernel call one definition (an activation's formula, Philox's rounds, a pooling window):
// HC_HOST_DEVICE marks them (inline on the host, forced inline on the device).
#pragma once

#if defined(__CUDACC__)
#define HC_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define HC_HOST_DEVICE inline
#endif
