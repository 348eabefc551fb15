// logits (N,K), labels (N,) -> loss (mean), dlogits (N,K)
#include "heterocnn/loss.h"

#include <cmath>
#include <vector>

#include "heterocnn/parallel.h"

namespace hc {

LossResult softmax_cross_entropy_cpu(int64_t N, int64_t K, const float* logits,
                                     const int64_t* labels, float* dlogits, float grad_scale,
                                     float label_smoothing) {
  LossResult r;
  const float inv_n = grad_scale / static_cast<float>(N);
  // The target's mass: `on` at the label, `off` at every class (both times inv_n for the
  // gradient). With no smoothing on = inv_n and off = 0, the unsmoothed arithmetic exactly.
  const double eps = label_smoothing;
  const float on = static_cast<float>(1.0 - eps) * inv_n;
  const float off = static_cast<float>(eps / static_cast<double>(K)) * inv_n;
  // Rows over the team, each row's loss kept and the losses summed in row order afterwards, so
  // the mean is the same for any thread count (the calling thread's buffer, grown once and then
  // reused, so that a step allocates nothing). A logit costs two exp in double, about what a
  // pass over 512 floats does, hence the team's threshold.
  static thread_local std::vector<double> buffer;
  buffer.resize(static_cast<size_t>(N));
  double* row_loss = buffer.data();  // the caller's, for every thread of the team
  int64_t correct = 0;
#pragma omp parallel for schedule(static) reduction(+ : correct) if (team_pays(512 * N * K))
  for (int64_t n = 0; n < N; ++n) {
    const float* z = logits + n * K;
    int64_t arg = 0;
    for (int64_t k = 1; k < K; ++k)
      if (z[k] > z[arg]) arg = k;
    const float zmax = z[arg];
    double sum = 0.0, shifted = 0.0;  // sum of exp(z - zmax); of z - zmax (smoothing only)
    for (int64_t k = 0; k < K; ++k) sum += std::exp(static_cast<double>(z[k] - zmax));
    const double log_sum = std::log(sum);
    if (eps > 0.0) {
      for (int64_t k = 0; k < K; ++k) shifted += static_cast<double>(z[k] - zmax);
      // -sum_k q_k log softmax_k = log_sum - (1 - eps) (z_y - zmax) - eps/K sum_k (z_k - zmax)
      row_loss[n] = log_sum - (1.0 - eps) * (z[labels[n]] - zmax) - eps / K * shifted;
    } else {
      row_loss[n] = log_sum - (z[labels[n]] - zmax);
    }
    correct += arg == labels[n];
    if (dlogits) {
      float* d = dlogits + n * K;
      for (int64_t k = 0; k < K; ++k)
        d[k] = static_cast<float>(std::exp(z[k] - zmax - log_sum)) * inv_n - off;
      d[labels[n]] -= on;
    }
  }
  for (int64_t n = 0; n < N; ++n) r.loss += row_loss[n];
  r.correct = correct;
  r.loss /= static_cast<double>(N);
  return r;
}

LossResult sigmoid_bce_cpu(int64_t N, const float* logits, const int64_t* labels,
                           float* dlogits, float grad_scale) {
  LossResult r;
  const float inv_n = grad_scale / static_cast<float>(N);
  for (int64_t n = 0; n < N; ++n) {
    const double z = logits[n], y = static_cast<double>(labels[n]);
    // log(1 + exp(z)) - z*y, written so that exp never overflows.
    r.loss += std::fmax(z, 0.0) - z * y + std::log1p(std::exp(-std::fabs(z)));
    r.correct += (z > 0.0) == (labels[n] == 1);
    if (dlogits) {
      const double p = z >= 0 ? 1.0 / (1.0 + std::exp(-z)) : std::exp(z) / (1.0 + std::exp(z));
      dlogits[n] = static_cast<float>((p - y) * inv_n);
    }
  }
  r.loss /= static_cast<double>(N);
  return r;
}

}  // namespace hc
