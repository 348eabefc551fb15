// p (n,), g (n,), m (n,), v (n,) -> p, m, v updated in place: every parameter of a device in
// one launch (they are one flat span of its parameter store)
#include <cstdint>
#include <string>

#include "check.h"
#include "launch.h"
#include "ops_cuda.h"

namespace hc {

namespace {

// One element of adam_update_cpu's loop, in the same order of operations.
__device__ __forceinline__ void adam_element(float& p, float g, float& m, float& v,
                                             const AdamStep& s) {
  p *= s.decay;
  g += s.l2 * p;
  m += s.one_minus_beta1 * (g - m);
  v = s.beta2 * v + s.one_minus_beta2 * g * g;
  p -= s.step_size * m / (sqrtf(v) / s.bias2_sqrt + s.eps);
}

// The blocks stride over the span, float4 at a time where p, g, m and v are all 16-byte
// aligned (the scalar loop takes the rest).
__global__ void adam_update_kernel(int64_t n, float* __restrict__ p, const float* __restrict__ g,
                                   float* __restrict__ m, float* __restrict__ v,
                                   const AdamStep* __restrict__ step) {
  const AdamStep s = *step;
  const bool vec = ((reinterpret_cast<uintptr_t>(p) | reinterpret_cast<uintptr_t>(g) |
                     reinterpret_cast<uintptr_t>(m) | reinterpret_cast<uintptr_t>(v)) & 15u) == 0;
  const int64_t n4 = vec ? n / 4 : 0;
  const int64_t stride = (int64_t)gridDim.x * blockDim.x;
  float4* p4 = reinterpret_cast<float4*>(p);
  float4* m4 = reinterpret_cast<float4*>(m);
  float4* v4 = reinterpret_cast<float4*>(v);
  const float4* g4 = reinterpret_cast<const float4*>(g);
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n4; i += stride) {
    float4 pp = p4[i], mm = m4[i], vv = v4[i];
    const float4 gg = __ldg(g4 + i);
    adam_element(pp.x, gg.x, mm.x, vv.x, s);
    adam_element(pp.y, gg.y, mm.y, vv.y, s);
    adam_element(pp.z, gg.z, mm.z, vv.z, s);
    adam_element(pp.w, gg.w, mm.w, vv.w, s);
    p4[i] = pp;
    m4[i] = mm;
    v4[i] = vv;
  }
  for (int64_t i = 4 * n4 + blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += stride)
    adam_element(p[i], g[i], m[i], v[i], s);
}

}  // namespace

void adam_update_cuda(int64_t n, float* p, const float* g, float* m, float* v,
                      const AdamStep* step, cudaStream_t stream) {
  if (n < 0) fail_value("adam_update_cuda: n = " + std::to_string(n));
  if (n == 0) return;
  // As sgd_update_cuda: one float4 per thread up to 2048 blocks.
  const unsigned grid = std::min(op_blocks((n + 3) / 4), 2048u);
  adam_update_kernel<<<grid, kOpThreads, 0, stream>>>(n, p, g, m, v, step);
  HC_CUDA_CHECK_LAUNCH("adam_update_kernel");
}

}  // namespace hc
