// p (n,), g (n,), v (n,) -> p, v updated in place: every parameter of a device in one launch
// (they are one flat span of its parameter store)
#include <cstdint>
#include <string>

#include "check.h"
#include "launch.h"
#include "ops_cuda.h"

namespace hc {

namespace {

__device__ __forceinline__ float sgd_step(float& p, float g, float v, float lr, float mu,
                                          float wd, float keep, bool nesterov) {
  g += wd * p;
  if (mu == 0.f) {
    p -= lr * g;
    return v;
  }
  v = mu * v + keep * g;
  p -= lr * (nesterov ? g + mu * v : v);
  return v;
}

constexpr int kSgdVec = 4;  // float4s per thread per pass over the tensor

// The blocks stride over the span, float4 at a time where p, g and v are all 16-byte aligned
// (the scalar loop takes the rest).
__global__ void sgd_update_kernel(const SgdTensorCuda t, const SgdConfig* __restrict__ cfg) {
  const float lr = cfg->lr, mu = cfg->momentum, wd = cfg->weight_decay;
  const float keep = 1.f - cfg->dampening;
  const bool nesterov = cfg->nesterov;
  const bool vec = ((reinterpret_cast<uintptr_t>(t.p) | reinterpret_cast<uintptr_t>(t.g) |
                     reinterpret_cast<uintptr_t>(t.v)) & 15u) == 0;
  const int64_t n4 = vec ? t.n / 4 : 0;
  const int64_t stride = (int64_t)gridDim.x * blockDim.x;
  float4* p4 = reinterpret_cast<float4*>(t.p);
  float4* v4 = reinterpret_cast<float4*>(t.v);
  const float4* g4 = reinterpret_cast<const float4*>(t.g);
  for (int64_t i0 = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i0 < n4;
       i0 += stride * kSgdVec) {
    float4 p[kSgdVec], g[kSgdVec], v[kSgdVec];
#pragma unroll
    for (int u = 0; u < kSgdVec; ++u) {
      const int64_t i = i0 + u * stride;
      if (i < n4) {
        p[u] = p4[i];
        g[u] = __ldg(g4 + i);
        v[u] = mu != 0.f ? v4[i] : make_float4(0.f, 0.f, 0.f, 0.f);
      }
    }
#pragma unroll
    for (int u = 0; u < kSgdVec; ++u) {
      const int64_t i = i0 + u * stride;
      if (i < n4) {
        v[u].x = sgd_step(p[u].x, g[u].x, v[u].x, lr, mu, wd, keep, nesterov);
        v[u].y = sgd_step(p[u].y, g[u].y, v[u].y, lr, mu, wd, keep, nesterov);
        v[u].z = sgd_step(p[u].z, g[u].z, v[u].z, lr, mu, wd, keep, nesterov);
        v[u].w = sgd_step(p[u].w, g[u].w, v[u].w, lr, mu, wd, keep, nesterov);
        p4[i] = p[u];
        if (mu != 0.f) v4[i] = v[u];
      }
    }
  }
  for (int64_t i = 4 * n4 + blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < t.n; i += stride) {
    float p = t.p[i];
    const float v = sgd_step(p, t.g[i], mu != 0.f ? t.v[i] : 0.f, lr, mu, wd, keep, nesterov);
    t.p[i] = p;
    if (mu != 0.f) t.v[i] = v;
  }
}

}  // namespace

void sgd_update_cuda(int64_t n, float* p, const float* g, float* v, const SgdConfig* cfg,
                     cudaStream_t stream) {
  if (n < 0) fail_value("sgd_update_cuda: n = " + std::to_string(n));
  if (n == 0) return;
  // One float4 per thread up to 2048 blocks: the span of a small model (lenet5, 62k floats)
  // spreads over 61 blocks instead of sitting in a few long-running ones.
  const unsigned grid = std::min(op_blocks((n + 3) / 4), 2048u);
  sgd_update_kernel<<<grid, kOpThreads, 0, stream>>>(SgdTensorCuda{p, g, v, n}, cfg);
  HC_CUDA_CHECK_LAUNCH("sgd_update_kernel");
}

}  // namespace hc
