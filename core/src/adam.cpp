// p (n,), g (n,), m (n,), v (n,) -> p, m, v updated in place
#include "heterocnn/adam.h"

#include <cmath>
#include <string>

#include "heterocnn/error.h"

namespace hc {

void validate(const AdamConfig& cfg) {
  const char* who = cfg.decoupled ? "AdamW " : "Adam ";
  auto at_least_zero = [&](const char* name, float v) {
    if (!std::isfinite(v) || v < 0.f)
      fail_value(std::string(who) + name + " must be finite and >= 0, got " + std::to_string(v));
  };
  auto beta = [&](const char* name, float v) {
    if (!(v >= 0.f && v < 1.f))
      fail_value(std::string(who) + name + " must be in [0, 1), got " + std::to_string(v));
  };
  at_least_zero("lr", cfg.lr);
  beta("beta1", cfg.beta1);
  beta("beta2", cfg.beta2);
  if (!std::isfinite(cfg.eps) || !(cfg.eps > 0.f))
    fail_value(std::string(who) + "eps must be finite and > 0, got " + std::to_string(cfg.eps));
  at_least_zero("weight_decay", cfg.weight_decay);
}

AdamStep adam_step(const AdamConfig& cfg, int64_t t) {
  if (t < 1) fail_value("Adam: an update before its step began (step " + std::to_string(t) + ")");
  const double lr = cfg.lr, b1 = cfg.beta1, b2 = cfg.beta2, wd = cfg.weight_decay;
  const double bias1 = 1.0 - std::pow(b1, static_cast<double>(t));
  const double bias2 = 1.0 - std::pow(b2, static_cast<double>(t));
  AdamStep s;
  s.decay = cfg.decoupled ? static_cast<float>(1.0 - lr * wd) : 1.f;
  s.l2 = cfg.decoupled ? 0.f : cfg.weight_decay;
  s.one_minus_beta1 = static_cast<float>(1.0 - b1);
  s.beta2 = cfg.beta2;
  s.one_minus_beta2 = static_cast<float>(1.0 - b2);
  s.eps = cfg.eps;
  s.step_size = static_cast<float>(lr / bias1);
  s.bias2_sqrt = static_cast<float>(std::sqrt(bias2));
  return s;
}

void adam_update_cpu(int64_t n, float* p, const float* g, float* m, float* v, const AdamStep& s) {
  // Below this many floats the update (4 arrays, ~28 bytes a float) is cheaper on one thread
  // than waking the team.
  constexpr int64_t kParallelElems = 1 << 14;
#pragma omp parallel for simd schedule(static) if (n > kParallelElems)
  for (int64_t i = 0; i < n; ++i) {
    const float pi = p[i] * s.decay;
    const float gi = g[i] + s.l2 * pi;
    const float mi = m[i] + s.one_minus_beta1 * (gi - m[i]);
    const float vi = s.beta2 * v[i] + s.one_minus_beta2 * gi * gi;
    m[i] = mi;
    v[i] = vi;
    p[i] = pi - s.step_size * mi / (std::sqrt(vi) / s.bias2_sqrt + s.eps);
  }
}

}  // namespace hc
