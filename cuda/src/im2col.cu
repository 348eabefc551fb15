// x (N,C,H,W) <-> col (C*K*K, N*Ho*Wo), whole batch per launch
#include "check.h"
#include "launch.h"
#include "ops_cuda.h"

namespace hc {

namespace {

// One thread per col entry, consecutive threads along a col row: coalesced writes.
__global__ void im2col_kernel(ConvGeom g, int64_t N, const float* __restrict__ x,
                              float* __restrict__ col) {
  const int64_t hw = g.Ho * g.Wo, cols = N * hw, total = g.C * g.K * g.K * cols;
  for (int64_t idx = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; idx < total;
       idx += (int64_t)gridDim.x * blockDim.x) {
    const int64_t j = idx % cols, r = idx / cols;
    const int64_t n = j / hw, p = j % hw, oh = p / g.Wo, ow = p % g.Wo;
    const int64_t kw = r % g.K, kh = (r / g.K) % g.K, c = r / (g.K * g.K);
    const int64_t ih = oh * g.stride - g.pad + kh, iw = ow * g.stride - g.pad + kw;
    col[idx] = (ih >= 0 && ih < g.H && iw >= 0 && iw < g.W)
                   ? x[((n * g.C + c) * g.H + ih) * g.W + iw]
                   : 0.f;
  }
}

// One thread per input pixel: the sum, in (kh, kw) order, of every col entry that im2col read
// from it (the order col2im_cpu adds them in); 0 where mask (when given) is not > 0.
__global__ void col2im_kernel(ConvGeom g, int64_t N, const float* __restrict__ col,
                              const float* __restrict__ mask, float* __restrict__ x) {
  const int64_t hw = g.Ho * g.Wo, cols = N * hw, total = N * g.C * g.H * g.W;
  for (int64_t idx = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; idx < total;
       idx += (int64_t)gridDim.x * blockDim.x) {
    const int64_t iw = idx % g.W, ih = (idx / g.W) % g.H, c = (idx / (g.W * g.H)) % g.C,
                  n = idx / (g.W * g.H * g.C);
    float s = 0.f;
    for (int64_t kh = 0; kh < g.K; ++kh) {
      const int64_t th = ih + g.pad - kh;  // oh * stride
      if (th < 0 || th % g.stride != 0 || th / g.stride >= g.Ho) continue;
      const int64_t oh = th / g.stride;
      for (int64_t kw = 0; kw < g.K; ++kw) {
        const int64_t tw = iw + g.pad - kw;
        if (tw < 0 || tw % g.stride != 0 || tw / g.stride >= g.Wo) continue;
        const int64_t r = (c * g.K + kh) * g.K + kw;
        s += col[r * cols + n * hw + oh * g.Wo + tw / g.stride];
      }
    }
    x[idx] = (!mask || mask[idx] > 0.f) ? s : 0.f;
  }
}

}  // namespace

void im2col_cuda(const ConvGeom& g, int64_t N, const float* x, float* col, cudaStream_t stream) {
  const int64_t total = g.col_rows() * N * g.col_cols();
  if (total <= 0) return;
  im2col_kernel<<<op_blocks(total), kOpThreads, 0, stream>>>(g, N, x, col);
  HC_CUDA_CHECK_LAUNCH("im2col_kernel");
}

void col2im_masked_cuda(const ConvGeom& g, int64_t N, const float* col, const float* mask,
                        float* x, cudaStream_t stream) {
  const int64_t total = N * g.C * g.H * g.W;
  if (total <= 0) return;
  col2im_kernel<<<op_blocks(total), kOpThreads, 0, stream>>>(g, N, col, mask, x);
  HC_CUDA_CHECK_LAUNCH("col2im_kernel");
}

void col2im_cuda(const ConvGeom& g, int64_t N, const float* col, float* x, cudaStream_t stream) {
  col2im_masked_cuda(g, N, col, nullptr, x, stream);
}

}  // namespace hc
