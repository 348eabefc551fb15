// p (n,), g (n,), v (n,) -> p, v updated in place
#include "heterocnn/sgd.h"

#include <cmath>
#include <string>

#include "heterocnn/error.h"

namespace hc {

void validate(const SgdConfig& cfg) {
  auto check = [](const char* name, float v) {
    if (!std::isfinite(v) || v < 0.f)
      fail_value(std::string("SGD ") + name + " must be finite and >= 0, got " + std::to_string(v));
  };
  check("lr", cfg.lr);
  check("momentum", cfg.momentum);
  check("weight_decay", cfg.weight_decay);
}

void sgd_update_cpu(int64_t n, float* p, const float* g, float* v, const SgdConfig& cfg) {
  const float lr = cfg.lr, mu = cfg.momentum, wd = cfg.weight_decay;
  if (mu == 0.f) {
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) p[i] -= lr * (g[i] + wd * p[i]);
    return;
  }
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) {
    v[i] = mu * v[i] + (g[i] + wd * p[i]);
    p[i] -= lr * v[i];
  }
}

}  // namespace hc
