// Column sums of a row-major (rows, cols) matrix in a fixed order, for deterministic
// reductions without atomics (a Linear layer's bias gradient, the slices of a split GEMM).
// Launch with blocks of dim3(32, kColSumRows) threads: a block takes 32 columns at a time
// (coalesced rows); thread row ty sums rows ty, ty + kColSumRows, ... in ascending order, then
// the kColSumRows partials are added in ty order. The result depends on the shape alone.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

namespace hc {

constexpr int kColSumRows = 16;

inline unsigned column_sum_blocks(int64_t cols) {
  const int64_t b = (cols + 31) / 32;
  return static_cast<unsigned>(b < 1 ? 1 : b > 65535 ? 65535 : b);
}

// store(col, sum) is called once per column, by one thread.
template <class Store>
__device__ void column_sums(int64_t rows, int64_t cols, const float* __restrict__ a,
                            Store store) {
  __shared__ float part[kColSumRows][33];
  const int tx = threadIdx.x, ty = threadIdx.y;
  for (int64_t c0 = blockIdx.x * (int64_t)32; c0 < cols; c0 += gridDim.x * (int64_t)32) {
    const int64_t c = c0 + tx;
    float s = 0.f;
    if (c < cols) {
#pragma unroll 4
      for (int64_t r = ty; r < rows; r += kColSumRows) s += a[r * cols + c];
    }
    part[ty][tx] = s;
    __syncthreads();
    if (ty == 0 && c < cols) {
      float t = 0.f;
#pragma unroll
      for (int r = 0; r < kColSumRows; ++r) t += part[r][tx];
      store(c, t);
    }
    __syncthreads();
  }
}

}  // namespace hc
