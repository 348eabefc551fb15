// x (N,C,S) -> y (N,C,S), per-channel statistics over the N*S values of each channel
//
// Training forward: (1) block partials: channel c's M = N*S values are split into B pieces of
// `chunk` values, one block each (grid B x C, so a small batch with few channels still fills
// the GPU), each summing (x - shift) and its square, shift = the channel's first value; block
// (0, 0) also adds 1 to num_batches_tracked (on the device: a replayed graph counts every
// step); (2) one warp per channel adds its B partials in a fixed order (in double), writes the
// mean and 1/sqrt(var + eps) to the layer's batch_stats, updates the running estimates by the
// factor (momentum, or 1 / the new num_batches_tracked, read from device memory, for the
// cumulative average) and the per-channel scale and offset; (3) y = x * scale + offset
// (ReLU fused when asked). Evaluation skips (1), (2) reads the running estimates. Backward:
// block partials of dy and dy * x_hat, the fixed-order final sums (the weight and bias
// gradients, the dx coefficients), then dx. No atomics: the result depends on the shape alone.
#include <algorithm>
#include <cstdint>

#include "check.h"
#include "launch.h"
#include "ops_cuda.h"
#include "heterocnn/activation.h"
#include "heterocnn/batchnorm.h"

namespace hc {

namespace {

constexpr int kBnThreads = 256;
constexpr int kBnChannelsPerBlock = 8;  // finalize: one warp per channel

// Blocks per channel: about 8 values a thread, and about 1024 blocks in all at most.
int64_t bn_blocks(int64_t N, int64_t C, int64_t S) {
  const int64_t M = N * S;
  int64_t b = (M + kBnThreads * 8 - 1) / (kBnThreads * 8);
  const int64_t cap = std::max<int64_t>(1, 1024 / C);
  return std::max<int64_t>(1, std::min(b, cap));
}

// The block's two sums, in a fixed order: a shuffle tree in each warp, then warp 0 over the
// warps in order. Thread 0 gets the result.
__device__ void block_sum2(float& s0, float& s1) {
  __shared__ float w0[kBnThreads / 32], w1[kBnThreads / 32];
  for (int o = 16; o > 0; o >>= 1) {
    s0 += __shfl_down_sync(0xffffffffu, s0, o);
    s1 += __shfl_down_sync(0xffffffffu, s1, o);
  }
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  if (lane == 0) {
    w0[warp] = s0;
    w1[warp] = s1;
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    s0 = 0.f;
    s1 = 0.f;
    for (int w = 0; w < kBnThreads / 32; ++w) {
      s0 += w0[w];
      s1 += w1[w];
    }
  }
}

// part[2 (c B + b) + {0, 1}]: forward (dy null) the sums of x - shift and its square over
// piece b of channel c; backward the sums of dy and dy * x_hat. count (the training forward's
// num_batches_tracked, else null) += 1 by one thread, before bn_stats_kernel reads it.
template <typename I>
__global__ void bn_partials_kernel(I C, I S, I M, I chunk, const float* __restrict__ x,
                                   const float* __restrict__ dy, const float* __restrict__ stats,
                                   float* __restrict__ part, int64_t* __restrict__ count) {
  const I c = blockIdx.y, b = blockIdx.x;
  if (count && c == 0 && b == 0 && threadIdx.x == 0) ++*count;
  const I begin = b * chunk;
  const I end = begin + chunk < M ? begin + chunk : M;
  float s0 = 0.f, s1 = 0.f;
  if (dy == nullptr) {
    const float shift = x[c * S];
    for (I j = begin + threadIdx.x; j < end; j += kBnThreads) {
      const I n = j / S;
      const float d = x[(n * C + c) * S + (j - n * S)] - shift;
      s0 += d;
      s1 += d * d;
    }
  } else {
    const float mu = stats[c], is = stats[C + c];
    for (I j = begin + threadIdx.x; j < end; j += kBnThreads) {
      const I n = j / S;
      const I at = (n * C + c) * S + (j - n * S);
      const float g = dy[at];
      s0 += g;
      s1 += g * ((x[at] - mu) * is);
    }
  }
  block_sum2(s0, s1);
  if (threadIdx.x == 0) {
    part[2 * ((int64_t)c * gridDim.x + b)] = s0;
    part[2 * ((int64_t)c * gridDim.x + b) + 1] = s1;
  }
}

// Warp `c` adds channel c's B partials (lane l takes l, l + 32, ..., then a shuffle tree).
__device__ void warp_sum2(const float* part, int64_t c, int64_t B, double& s0, double& s1) {
  const int lane = threadIdx.x % 32;
  s0 = 0.0;
  s1 = 0.0;
  for (int64_t b = lane; b < B; b += 32) {
    s0 += part[2 * (c * B + b)];
    s1 += part[2 * (c * B + b) + 1];
  }
  for (int o = 16; o > 0; o >>= 1) {
    s0 += __shfl_down_sync(0xffffffffu, s0, o);
    s1 += __shfl_down_sync(0xffffffffu, s1, o);
  }
}

// The statistics (and, in training, the running-estimate update) of each channel, and the
// scale/offset of the forward map: coef[c] = w inv_std, coef[C + c] = b - mean w inv_std.
// num_batches_tracked is read only (bn_partials_kernel counted this batch).
__global__ void bn_stats_kernel(int64_t N, int64_t C, int64_t S, int64_t B, double eps,
                                double momentum, bool cumulative, bool training,
                                const float* __restrict__ x, const float* __restrict__ part,
                                const float* __restrict__ weight, const float* __restrict__ bias,
                                float* __restrict__ running_mean, float* __restrict__ running_var,
                                const int64_t* __restrict__ num_batches_tracked,
                                float* __restrict__ stats, float* __restrict__ coef) {
  const int64_t c = (int64_t)blockIdx.x * kBnChannelsPerBlock + threadIdx.x / 32;
  if (c >= C) return;  // whole warps
  double mu, is;
  if (training) {
    double s0, s1;
    warp_sum2(part, c, B, s0, s1);
    if (threadIdx.x % 32) return;
    const double M = (double)(N * S);
    const double m = s0 / M;
    const double var = fmax(0.0, s1 / M - m * m);
    mu = x[c * S] + m;
    is = 1.0 / sqrt(var + eps);
    const double f = cumulative ? 1.0 / (double)*num_batches_tracked : momentum;
    running_mean[c] = (float)((1.0 - f) * running_mean[c] + f * mu);
    running_var[c] = (float)((1.0 - f) * running_var[c] + f * var * M / (M - 1.0));
  } else {
    if (threadIdx.x % 32) return;
    mu = running_mean[c];
    is = 1.0 / sqrt((double)running_var[c] + eps);
  }
  stats[c] = (float)mu;
  stats[C + c] = (float)is;
  const float k = (weight ? weight[c] : 1.f) * (float)is;
  coef[c] = k;
  coef[C + c] = (bias ? bias[c] : 0.f) - (float)mu * k;
}

template <typename I, bool Relu>
__global__ void bn_apply_kernel(I total, I C, I S, const float* __restrict__ x,
                                const float* __restrict__ coef, float* __restrict__ y) {
  for (I i = blockIdx.x * (I)blockDim.x + threadIdx.x; i < total; i += (I)gridDim.x * blockDim.x) {
    const I c = (i / S) % C;
    const float v = x[i] * coef[c] + coef[C + c];
    y[i] = Relu ? relu(v) : v;
  }
}

// The weight and bias gradients and the dx coefficients: coef = (w inv_std, mean dy,
// mean dy x_hat) per channel (the last two 0 in evaluation: the affine map's backward).
__global__ void bn_grads_kernel(int64_t N, int64_t C, int64_t S, int64_t B, bool training,
                                const float* __restrict__ part, const float* __restrict__ weight,
                                const float* __restrict__ stats, float* __restrict__ dweight,
                                float* __restrict__ dbias, float* __restrict__ coef) {
  const int64_t c = (int64_t)blockIdx.x * kBnChannelsPerBlock + threadIdx.x / 32;
  if (c >= C) return;
  double s0, s1;
  warp_sum2(part, c, B, s0, s1);
  if (threadIdx.x % 32) return;
  if (dbias) dbias[c] = (float)s0;
  if (dweight) dweight[c] = (float)s1;
  const double M = (double)(N * S);
  coef[c] = (weight ? weight[c] : 1.f) * stats[C + c];
  coef[C + c] = training ? (float)(s0 / M) : 0.f;
  coef[2 * C + c] = training ? (float)(s1 / M) : 0.f;
}

template <typename I>
__global__ void bn_dx_kernel(I total, I C, I S, const float* __restrict__ x,
                             const float* __restrict__ dy, const float* __restrict__ stats,
                             const float* __restrict__ coef, float* __restrict__ dx) {
  for (I i = blockIdx.x * (I)blockDim.x + threadIdx.x; i < total; i += (I)gridDim.x * blockDim.x) {
    const I c = (i / S) % C;
    const float xh = (x[i] - stats[c]) * stats[C + c];
    dx[i] = coef[c] * (dy[i] - coef[C + c] - xh * coef[2 * C + c]);
  }
}

unsigned channel_blocks(int64_t C) {
  return static_cast<unsigned>((C + kBnChannelsPerBlock - 1) / kBnChannelsPerBlock);
}

template <typename I>
void partials(const BatchNormArgs& a, int64_t B, const float* x, const float* dy,
              const float* stats, float* part, int64_t* count, cudaStream_t stream) {
  const int64_t M = a.N * a.S;
  const int64_t chunk = (M + B - 1) / B;
  bn_partials_kernel<I><<<dim3(static_cast<unsigned>(B), static_cast<unsigned>(a.C)), kBnThreads,
                          0, stream>>>((I)a.C, (I)a.S, (I)M, (I)chunk, x, dy, stats, part, count);
  HC_CUDA_CHECK_LAUNCH("bn_partials_kernel");
}

bool small_index(const BatchNormArgs& a) { return a.N * a.C * a.S < (int64_t{1} << 31); }

}  // namespace

size_t batchnorm_workspace_cuda(int64_t N, int64_t C, int64_t S) {
  return static_cast<size_t>(2 * C * bn_blocks(N, C, S) + 3 * C);
}

void batchnorm_forward_cuda(const BatchNormArgs& a, const float* x, const float* weight,
                            const float* bias, float* running_mean, float* running_var,
                            int64_t* num_batches_tracked, float* stats, float* y, float* ws,
                            cudaStream_t stream) {
  const int64_t B = bn_blocks(a.N, a.C, a.S), total = a.N * a.C * a.S;
  if (total == 0) return;
  float* part = ws;
  float* coef = ws + 2 * a.C * B;
  if (a.training) {
    if (small_index(a))
      partials<uint32_t>(a, B, x, nullptr, nullptr, part, num_batches_tracked, stream);
    else
      partials<int64_t>(a, B, x, nullptr, nullptr, part, num_batches_tracked, stream);
  }
  bn_stats_kernel<<<channel_blocks(a.C), 32 * kBnChannelsPerBlock, 0, stream>>>(
      a.N, a.C, a.S, B, a.eps, a.momentum, a.cumulative, a.training, x, part, weight, bias,
      running_mean, running_var, num_batches_tracked, stats, coef);
  HC_CUDA_CHECK_LAUNCH("bn_stats_kernel");
  if (small_index(a)) {
    auto k = a.relu ? bn_apply_kernel<uint32_t, true> : bn_apply_kernel<uint32_t, false>;
    k<<<op_blocks(total), kOpThreads, 0, stream>>>((uint32_t)total, (uint32_t)a.C,
                                                   (uint32_t)a.S, x, coef, y);
  } else {
    auto k = a.relu ? bn_apply_kernel<int64_t, true> : bn_apply_kernel<int64_t, false>;
    k<<<op_blocks(total), kOpThreads, 0, stream>>>(total, a.C, a.S, x, coef, y);
  }
  HC_CUDA_CHECK_LAUNCH("bn_apply_kernel");
}

void batchnorm_backward_cuda(const BatchNormArgs& a, const float* x, const float* weight,
                             const float* stats, const float* dy, float* dx, float* dweight,
                             float* dbias, float* ws, cudaStream_t stream) {
  const int64_t B = bn_blocks(a.N, a.C, a.S), total = a.N * a.C * a.S;
  float* part = ws;
  float* coef = ws + 2 * a.C * B;
  if (total == 0) {
    if (dweight) HC_CUDA_CHECK(cudaMemsetAsync(dweight, 0, sizeof(float) * a.C, stream));
    if (dbias) HC_CUDA_CHECK(cudaMemsetAsync(dbias, 0, sizeof(float) * a.C, stream));
    return;
  }
  if (small_index(a))
    partials<uint32_t>(a, B, x, dy, stats, part, nullptr, stream);
  else
    partials<int64_t>(a, B, x, dy, stats, part, nullptr, stream);
  bn_grads_kernel<<<channel_blocks(a.C), 32 * kBnChannelsPerBlock, 0, stream>>>(
      a.N, a.C, a.S, B, a.training, part, weight, stats, dweight, dbias, coef);
  HC_CUDA_CHECK_LAUNCH("bn_grads_kernel");
  if (!dx) return;
  if (small_index(a))
    bn_dx_kernel<uint32_t><<<op_blocks(total), kOpThreads, 0, stream>>>(
        (uint32_t)total, (uint32_t)a.C, (uint32_t)a.S, x, dy, stats, coef, dx);
  else
    bn_dx_kernel<int64_t><<<op_blocks(total), kOpThreads, 0, stream>>>(total, a.C, a.S, x, dy,
                                                                       stats, coef, dx);
  HC_CUDA_CHECK_LAUNCH("bn_dx_kernel");
}

// The layer on its CUDA device (the CPU side is in core/src/batchnorm.cpp).

size_t BatchNorm::workspace_size_cuda(const Shape& in) const {
  const BatchNormArgs a = args(in);
  return batchnorm_workspace_cuda(a.N, a.C, a.S);
}

void BatchNorm::forward_cuda(const Tensor& x, Tensor& y, float* ws, cudaStream_t stream) {
  const BatchNormArgs a = args(x.shape, true);
  batchnorm_forward_cuda(a, x.data, weight(), bias(), buffer(0), buffer(1),
                         reinterpret_cast<int64_t*>(buffer(2)), buffer(3), y.data, ws, stream);
}

void BatchNorm::backward_cuda(const Tensor& x, const Tensor&, const Tensor& dy, Tensor* dx,
                              float* ws, cudaStream_t stream) {
  const BatchNormArgs a = args(x.shape);
  batchnorm_backward_cuda(a, x.data, weight(), buffer(3), dy.data, dx ? dx->data : nullptr,
                          affine_ ? params_[0].grad.data() : nullptr,
                          affine_ ? params_[1].grad.data() : nullptr, ws, stream);
}

}  // namespace hc
