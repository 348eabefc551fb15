// images (N, S) uint8 or float32, idx (n,) -> x (n, S) float32: a training batch gathered on
// the host, the CPU's counterpart of gather_batch_cuda (cuda/src/dataset.cu).
#pragma once
#include <cstdint>

namespace hc {

// x[i] = images[idx[i]] for i < n, each uint8 value v written as float(v) * scale (in float:
// what numpy's multiply(X[idx], float32(scale)) gives, to the bit) and float32 images copied.
// Every idx is checked against N before anything is written (an index out of range is a
// value error naming it); rows are spread over the OpenMP team when the batch is large enough.
void gather_batch_cpu(const void* images, bool uint8, int64_t N, int64_t S, const int64_t* idx,
                      int64_t n, float scale, float* x);

}  // namespace hc
