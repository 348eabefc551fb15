// x (N,C,S) -> y (N,C,S), per-channel statistics over the N*S values of each channel
#include "heterocnn/batchnorm.h"

#include <algorithm>
#include <cmath>
#include <vector>
#include <string>

#include "heterocnn/activation.h"
#include "heterocnn/buffer.h"
#include "heterocnn/error.h"

namespace hc {

namespace {

constexpr int64_t kParallelElems = 1 << 15;

// part[2j], part[2j+1] = the two sums `plane(j, c, s0, s1)` forms over plane j = n*C + c (in
// double, along the plane in SIMD lanes: a plain loop's chain of dependent double adds ran at
// a few cycles an element, CPU_PERF.md entry 20); one plane per iteration, so the pieces and
// their order do not depend on the thread count. Then sums[2c], sums[2c+1] = those of channel
// c, over n in order.
template <typename F>
void channel_sums(int64_t N, int64_t C, int64_t S, double* part, double* sums, F plane) {
#pragma omp parallel for schedule(static) if (parallel : N * C * S > kParallelElems)
  for (int64_t j = 0; j < N * C; ++j) {
    double s0 = 0.0, s1 = 0.0;
    plane(j, j % C, s0, s1);
    part[2 * j] = s0;
    part[2 * j + 1] = s1;
  }
  for (int64_t c = 0; c < C; ++c) {
    double s0 = 0.0, s1 = 0.0;
    for (int64_t n = 0; n < N; ++n) {
      s0 += part[2 * (n * C + c)];
      s1 += part[2 * (n * C + c) + 1];
    }
    sums[2 * c] = s0;
    sums[2 * c + 1] = s1;
  }
}

}  // namespace

size_t batchnorm_workspace_cpu(int64_t N, int64_t C, int64_t) {
  // Two doubles per (n, c) plane and two per channel.
  return static_cast<size_t>(4 * N * C + 4 * C);
}

void batchnorm_forward_cpu(const BatchNormArgs& a, const float* x, const float* weight,
                           const float* bias, float* running_mean, float* running_var,
                           int64_t* num_batches_tracked, float* stats, float* y, float* ws) {
  const int64_t N = a.N, C = a.C, S = a.S;
  float* mean = stats;
  float* inv_std = stats + C;
  if (a.training) {
    // Sums of (x - shift) and its square, shift = the channel's first value (keeps the
    // one-pass variance accurate when the mean is large against the spread).
    double* part = reinterpret_cast<double*>(ws);
    double* sums = part + 2 * N * C;
    channel_sums(N, C, S, part, sums, [&](int64_t j, int64_t c, double& s0, double& s1) {
      const float* xp = x + j * S;
      const double shift = x[c * S];
      double a0 = 0.0, a1 = 0.0;
#pragma omp simd reduction(+ : a0, a1)
      for (int64_t s = 0; s < S; ++s) {
        const double d = xp[s] - shift;
        a0 += d;
        a1 += d * d;
      }
      s0 = a0, s1 = a1;
    });
    const double M = static_cast<double>(N * S);
    ++*num_batches_tracked;
    const double f = a.cumulative ? 1.0 / static_cast<double>(*num_batches_tracked) : a.momentum;
    for (int64_t c = 0; c < C; ++c) {
      const double m = sums[2 * c] / M;
      const double var = std::max(0.0, sums[2 * c + 1] / M - m * m);  // biased
      const double mu = x[c * S] + m;
      mean[c] = static_cast<float>(mu);
      inv_std[c] = static_cast<float>(1.0 / std::sqrt(var + a.eps));
      running_mean[c] = static_cast<float>((1.0 - f) * running_mean[c] + f * mu);
      running_var[c] = static_cast<float>((1.0 - f) * running_var[c] + f * var * M / (M - 1.0));
    }
  } else {
    for (int64_t c = 0; c < C; ++c) {
      mean[c] = running_mean[c];
      inv_std[c] = static_cast<float>(1.0 / std::sqrt(static_cast<double>(running_var[c]) + a.eps));
    }
  }
#pragma omp parallel for schedule(static) if (parallel : N * C * S > kParallelElems)
  for (int64_t j = 0; j < N * C; ++j) {
    const int64_t c = j % C;
    const float k = (weight ? weight[c] : 1.f) * inv_std[c];
    const float b = (bias ? bias[c] : 0.f) - mean[c] * k;
    const float* xp = x + j * S;
    float* yp = y + j * S;
    if (a.relu) {
#pragma omp simd
      for (int64_t s = 0; s < S; ++s) yp[s] = relu(xp[s] * k + b);
    } else {
#pragma omp simd
      for (int64_t s = 0; s < S; ++s) yp[s] = xp[s] * k + b;
    }
  }
}

void batchnorm_backward_cpu(const BatchNormArgs& a, const float* x, const float* weight,
                            const float* stats, const float* dy, float* dx, float* dweight,
                            float* dbias, float* ws) {
  const int64_t N = a.N, C = a.C, S = a.S;
  const float* mean = stats;
  const float* inv_std = stats + C;
  double* part = reinterpret_cast<double*>(ws);
  double* sums = part + 2 * N * C;
  // sum dy (dbias) and sum dy * x_hat (dweight), x_hat recomputed from x.
  channel_sums(N, C, S, part, sums, [&](int64_t j, int64_t c, double& s0, double& s1) {
    const float* xp = x + j * S;
    const float* gp = dy + j * S;
    const float mu = mean[c], is = inv_std[c];
    double a0 = 0.0, a1 = 0.0;
#pragma omp simd reduction(+ : a0, a1)
    for (int64_t s = 0; s < S; ++s) {
      a0 += gp[s];
      a1 += static_cast<double>(gp[s]) * ((xp[s] - mu) * is);
    }
    s0 = a0, s1 = a1;
  });
  for (int64_t c = 0; c < C; ++c) {
    if (dbias) dbias[c] = static_cast<float>(sums[2 * c]);
    if (dweight) dweight[c] = static_cast<float>(sums[2 * c + 1]);
  }
  if (!dx) return;
  // Training: dx = w * inv_std * (dy - mean(dy) - x_hat * mean(dy * x_hat)); the batch's
  // statistics depend on x. Evaluation: the affine map's, dx = w * inv_std * dy.
  const double M = static_cast<double>(N * S);
#pragma omp parallel for schedule(static) if (parallel : N * C * S > kParallelElems)
  for (int64_t j = 0; j < N * C; ++j) {
    const int64_t c = j % C;
    const float mu = mean[c], is = inv_std[c];
    const float k = (weight ? weight[c] : 1.f) * is;
    const float mb = a.training ? static_cast<float>(sums[2 * c] / M) : 0.f;
    const float mg = a.training ? static_cast<float>(sums[2 * c + 1] / M) : 0.f;
    const float* xp = x + j * S;
    const float* gp = dy + j * S;
    float* dp = dx + j * S;
#pragma omp simd
    for (int64_t s = 0; s < S; ++s) dp[s] = k * (gp[s] - mb - (xp[s] - mu) * is * mg);
  }
}

BatchNorm::BatchNorm(int dims, int64_t num_features, double eps, double momentum, bool affine,
                     bool cumulative)
    : dims_(dims),
      C_(num_features),
      eps_(eps),
      momentum_(momentum),
      affine_(affine),
      cumulative_(cumulative) {
  const std::string name = kind();
  if (C_ < 1 || C_ > kMaxNumel)
    fail_value(name + ": num_features must be from 1 to 2^40, got " + std::to_string(C_));
  if (!(eps_ > 0.0) || !std::isfinite(eps_))
    fail_value(name + ": eps must be a positive number, got " + std::to_string(eps_));
  if (!(momentum_ >= 0.0 && momentum_ <= 1.0))
    fail_value(name + ": momentum must be in [0, 1], got " + std::to_string(momentum_));
  if (affine_) {
    add_param("weight", Shape{C_});
    add_param("bias", Shape{C_});
  }
  add_buffer("running_mean", Shape{C_});
  add_buffer("running_var", Shape{C_});
  add_buffer("num_batches_tracked", Shape{}, /*is_int64=*/true);
  add_buffer("batch_stats", Shape{2 * C_}, false, /*persistent=*/false, /*scratch=*/true);
  Rng unused(0);
  init_params(unused);
}

void BatchNorm::init_params(Rng&) {
  std::vector<float> ones(static_cast<size_t>(C_), 1.f);
  for (Param& p : params_) {
    if (p.name == "weight")
      p.value.copy_from_host(ones.data(), ones.size());
    else
      p.value.zero();
  }
  for (LayerBuffer& b : buffers_) {
    if (b.name == "running_var")
      b.value.copy_from_host(ones.data(), ones.size());
    else
      b.value.zero();
  }
}

Shape BatchNorm::output_shape(const Shape& in) const {
  args(in);
  return in;
}

BatchNormArgs BatchNorm::args(const Shape& in, bool running) const {
  const std::string name = kind();
  const bool ok = dims_ == 2 ? in.ndim == 4 : (in.ndim == 2 || in.ndim == 3);
  if (!ok)
    fail_shape(name + " expects input " + (dims_ == 2 ? "(N, C, H, W)" : "(N, C) or (N, C, L)") +
               ", got " + in.str());
  in.check();
  if (in[1] != C_)
    fail_shape(name + "(" + std::to_string(C_) + ") got input " + in.str() + " with " +
               std::to_string(in[1]) + " channels");
  BatchNormArgs a;
  a.N = in[0];
  a.C = C_;
  a.S = in.ndim == 2 ? 1 : in.sample_numel() / C_;
  a.eps = eps_;
  a.momentum = momentum_;
  a.cumulative = cumulative_;
  a.training = training_;
  a.relu = fused_relu_;
  if (running && training_ && a.N * a.S == 1)
    fail_value(name + ": expected more than 1 value per channel when training, got input " +
               in.str());
  return a;
}

size_t BatchNorm::workspace_size_cpu(const Shape& in, int) const {
  const BatchNormArgs a = args(in);
  return batchnorm_workspace_cpu(a.N, a.C, a.S);
}

void BatchNorm::forward_cpu(const Tensor& x, Tensor& y, float* ws) {
  const BatchNormArgs a = args(x.shape, true);
  if (a.N == 0) return;
  batchnorm_forward_cpu(a, x.data, weight(), bias(), buffer(0), buffer(1),
                        reinterpret_cast<int64_t*>(buffer(2)), buffer(3), y.data, ws);
}

void BatchNorm::backward_cpu(const Tensor& x, const Tensor&, const Tensor& dy, Tensor* dx,
                             float* ws) {
  const BatchNormArgs a = args(x.shape);
  batchnorm_backward_cpu(a, x.data, weight(), buffer(3), dy.data, dx ? dx->data : nullptr,
                         affine_ ? params_[0].grad.data() : nullptr,
                         affine_ ? params_[1].grad.data() : nullptr, ws);
}

}  // namespace hc
