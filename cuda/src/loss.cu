// logits (N,K), labels (N,) -> loss (mean), dlogits (N,K) (label smoothing eps: the target
// (1 - eps) * onehot + eps / K); one block per launch, so the loss is
// summed in a fixed order (per thread or warp in sample order, then across the block in a fixed
// tree) without atomics.
#include <string>

#include "check.h"
#include "ops_cuda.h"

namespace hc {

namespace {

constexpr int kLossThreads = 1024, kLossWarps = kLossThreads / 32;

// Fixed-order block total: per-warp partials, summed by thread 0 in warp order.
__device__ void write_result(double loss, long long correct, int64_t N, LossResult* result) {
  __shared__ double loss_w[kLossWarps];
  __shared__ long long correct_w[kLossWarps];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  for (int off = 16; off > 0; off /= 2) {
    loss += __shfl_down_sync(0xffffffffu, loss, off);
    correct += __shfl_down_sync(0xffffffffu, correct, off);
  }
  if (lane == 0) {
    loss_w[warp] = loss;
    correct_w[warp] = correct;
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    double l = 0.0;
    long long c = 0;
    for (int w = 0; w < kLossWarps; ++w) {
      l += loss_w[w];
      c += correct_w[w];
    }
    result->loss = N > 0 ? l / static_cast<double>(N) : 0.0;
    result->correct = c;
  }
}

// The target's mass times inv_n, as softmax_cross_entropy_cpu: `on` at the label, `off` at
// every class (no smoothing: inv_n and 0, the unsmoothed arithmetic exactly).
struct Target {
  float on, off;
};
__device__ __forceinline__ Target smoothed_target(double eps, int64_t K, float inv_n) {
  return {static_cast<float>(1.0 - eps) * inv_n,
          static_cast<float>(eps / static_cast<double>(K)) * inv_n};
}

// One warp per sample (samples warp, warp + 32, ...), lanes over the K classes.
__global__ void __launch_bounds__(kLossThreads)
    softmax_ce_kernel(int64_t N, int64_t K, const float* __restrict__ logits,
                      const int64_t* __restrict__ labels, float* __restrict__ dlogits,
                      LossResult* result, float grad_scale, float label_smoothing) {
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const float inv_n = grad_scale / static_cast<float>(N);
  const double eps = label_smoothing;
  const Target q = smoothed_target(eps, K, inv_n);
  double loss = 0.0;  // lane 0's running sum over this warp's samples
  long long correct = 0;
  for (int64_t n = warp; n < N; n += kLossWarps) {
    const float* z = logits + n * K;
    // First maximum (ties go to the smaller index, as in the CPU's strict >).
    float zmax = -INFINITY;
    int64_t arg = K;
    for (int64_t k = lane; k < K; k += 32)
      if (z[k] > zmax || arg == K) { zmax = z[k]; arg = k; }
    for (int off = 16; off > 0; off /= 2) {
      const float ov = __shfl_down_sync(0xffffffffu, zmax, off);
      const int64_t oa = __shfl_down_sync(0xffffffffu, arg, off);
      if (oa < K && (arg == K || ov > zmax || (ov == zmax && oa < arg))) { zmax = ov; arg = oa; }
    }
    zmax = __shfl_sync(0xffffffffu, zmax, 0);
    arg = __shfl_sync(0xffffffffu, arg, 0);
    double sum = 0.0;
    for (int64_t k = lane; k < K; k += 32) sum += exp(static_cast<double>(z[k] - zmax));
    for (int off = 16; off > 0; off /= 2) sum += __shfl_down_sync(0xffffffffu, sum, off);
    const double log_sum = log(__shfl_sync(0xffffffffu, sum, 0));
    double shifted = 0.0;  // sum of z - zmax, for the smoothing term
    if (eps > 0.0) {
      for (int64_t k = lane; k < K; k += 32) shifted += static_cast<double>(z[k] - zmax);
      for (int off = 16; off > 0; off /= 2) shifted += __shfl_down_sync(0xffffffffu, shifted, off);
    }
    const int64_t label = labels[n];
    const bool valid = label >= 0 && label < K;
    if (lane == 0) {
      const double nll = eps > 0.0 ? log_sum - (1.0 - eps) * (z[label] - zmax) - eps / K * shifted
                                   : log_sum - (z[label] - zmax);
      loss += valid ? nll : static_cast<double>(NAN);
      correct += arg == label;
    }
    if (dlogits) {
      float* d = dlogits + n * K;
      for (int64_t k = lane; k < K; k += 32) {
        float v = static_cast<float>(exp(z[k] - zmax - log_sum)) * inv_n - q.off;
        if (k == label) v -= q.on;
        d[k] = v;
      }
    }
  }
  if (lane != 0) { loss = 0.0; correct = 0; }
  write_result(loss, correct, N, result);
}

// Few classes (K <= 32): one thread per sample (samples thread, thread + 1024, ...), the same
// arithmetic as softmax_ce_kernel, whose lanes would mostly idle and whose warps would walk
// the batch 32 samples at a time.
__global__ void __launch_bounds__(kLossThreads)
    softmax_ce_few_kernel(int64_t N, int64_t K, const float* __restrict__ logits,
                          const int64_t* __restrict__ labels, float* __restrict__ dlogits,
                          LossResult* result, float grad_scale, float label_smoothing) {
  const float inv_n = grad_scale / static_cast<float>(N);
  const double eps = label_smoothing;
  const Target q = smoothed_target(eps, K, inv_n);
  double loss = 0.0;
  long long correct = 0;
  for (int64_t n = threadIdx.x; n < N; n += kLossThreads) {
    const float* z = logits + n * K;
    float zmax = z[0];
    int64_t arg = 0;
    for (int64_t k = 1; k < K; ++k)
      if (z[k] > zmax) { zmax = z[k]; arg = k; }
    double sum = 0.0;
    for (int64_t k = 0; k < K; ++k) sum += exp(static_cast<double>(z[k] - zmax));
    const double log_sum = log(sum);
    const int64_t label = labels[n];
    const bool valid = label >= 0 && label < K;
    double nll = log_sum - (z[label] - zmax);
    if (eps > 0.0) {
      double shifted = 0.0;
      for (int64_t k = 0; k < K; ++k) shifted += static_cast<double>(z[k] - zmax);
      nll = log_sum - (1.0 - eps) * (z[label] - zmax) - eps / K * shifted;
    }
    loss += valid ? nll : static_cast<double>(NAN);
    correct += arg == label;
    if (dlogits) {
      float* d = dlogits + n * K;
      for (int64_t k = 0; k < K; ++k) {
        float v = static_cast<float>(exp(z[k] - zmax - log_sum)) * inv_n - q.off;
        if (k == label) v -= q.on;
        d[k] = v;
      }
    }
  }
  write_result(loss, correct, N, result);
}

// One thread per sample (strided).
__global__ void __launch_bounds__(kLossThreads)
    sigmoid_bce_kernel(int64_t N, const float* __restrict__ logits,
                       const int64_t* __restrict__ labels, float* __restrict__ dlogits,
                       LossResult* result, float grad_scale) {
  const float inv_n = grad_scale / static_cast<float>(N);
  double loss = 0.0;
  long long correct = 0;
  for (int64_t n = threadIdx.x; n < N; n += kLossThreads) {
    const double z = logits[n];
    const int64_t label = labels[n];
    const double y = static_cast<double>(label);
    const bool valid = label == 0 || label == 1;
    // log(1 + exp(z)) - z*y, written so that exp never overflows.
    loss += valid ? fmax(z, 0.0) - z * y + log1p(exp(-fabs(z))) : static_cast<double>(NAN);
    correct += (z > 0.0) == (label == 1);
    if (dlogits) {
      const double p = z >= 0 ? 1.0 / (1.0 + exp(-z)) : exp(z) / (1.0 + exp(z));
      dlogits[n] = static_cast<float>((p - y) * inv_n);
    }
  }
  write_result(loss, correct, N, result);
}

}  // namespace

void softmax_cross_entropy_cuda(int64_t N, int64_t K, const float* logits,
                                const int64_t* labels, float* dlogits, LossResult* result,
                                float grad_scale, float label_smoothing, cudaStream_t stream) {
  if (N < 0 || K <= 0)
    fail_value("softmax_cross_entropy_cuda: bad shape N=" + std::to_string(N) + " K=" +
               std::to_string(K));
  if (K <= 32) {
    softmax_ce_few_kernel<<<1, kLossThreads, 0, stream>>>(N, K, logits, labels, dlogits, result,
                                                          grad_scale, label_smoothing);
    HC_CUDA_CHECK_LAUNCH("softmax_ce_few_kernel");
    return;
  }
  softmax_ce_kernel<<<1, kLossThreads, 0, stream>>>(N, K, logits, labels, dlogits, result,
                                                      grad_scale, label_smoothing);
  HC_CUDA_CHECK_LAUNCH("softmax_ce_kernel");
}

void sigmoid_bce_cuda(int64_t N, const float* logits, const int64_t* labels, float* dlogits,
                      LossResult* result, float grad_scale, cudaStream_t stream) {
  if (N < 0) fail_value("sigmoid_bce_cuda: bad batch size " + std::to_string(N));
  sigmoid_bce_kernel<<<1, kLossThreads, 0, stream>>>(N, logits, labels, dlogits, result, grad_scale);
  HC_CUDA_CHECK_LAUNCH("sigmoid_bce_kernel");
}

}  // namespace hc
