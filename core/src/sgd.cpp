// p (n,), g (n,), v (n,) -> p, v updated in place
#include "heterocnn/sgd.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "heterocnn/error.h"
#include "heterocnn/parallel.h"

namespace hc {

void validate(const SgdConfig& cfg) {
  auto check = [](const char* name, float v) {
    if (!std::isfinite(v) || v < 0.f)
      fail_value(std::string("SGD ") + name + " must be finite and >= 0, got " + std::to_string(v));
  };
  check("lr", cfg.lr);
  check("momentum", cfg.momentum);
  check("weight_decay", cfg.weight_decay);
  check("dampening", cfg.dampening);
  if (cfg.nesterov && (cfg.momentum <= 0.f || cfg.dampening != 0.f))
    fail_value("SGD nesterov needs momentum > 0 and dampening 0, got momentum " +
               std::to_string(cfg.momentum) + " and dampening " + std::to_string(cfg.dampening));
}

void sgd_update_cpu(int64_t n, float* p, const float* g, float* v, const SgdConfig& cfg) {
  const float lr = cfg.lr, mu = cfg.momentum, wd = cfg.weight_decay;
  const float keep = 1.f - cfg.dampening;
  if (mu == 0.f) {
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) p[i] -= lr * (g[i] + wd * p[i]);
    return;
  }
  if (cfg.nesterov) {
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) {
      const float gi = g[i] + wd * p[i];
      v[i] = mu * v[i] + keep * gi;
      p[i] -= lr * (gi + mu * v[i]);
    }
    return;
  }
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) {
    v[i] = mu * v[i] + keep * (g[i] + wd * p[i]);
    p[i] -= lr * v[i];
  }
}

void sgd_update_all_cpu(const SgdSlice* slices, size_t count, const SgdConfig& cfg) {
  int64_t total = 0;
  for (size_t s = 0; s < count; ++s) total += slices[s].n;
  // Below this many floats the update (3 arrays, ~12 bytes a float) is cheaper on one thread
  // than waking the team.
  constexpr int64_t kParallelElems = 1 << 14;
#pragma omp parallel if (total > kParallelElems)
  {
    // This thread's range of the concatenation, cut at multiples of 16 floats (one cache line).
    const int t = thread_id(), team = team_size();
    const int64_t begin = split_at(total, t, team), end = split_at(total, t + 1, team);
    int64_t offset = 0;  // where slice s starts in the concatenation
    for (size_t s = 0; s < count && offset < end; offset += slices[s].n, ++s) {
      const int64_t lo = std::max(begin, offset), hi = std::min(end, offset + slices[s].n);
      if (hi <= lo) continue;
      const SgdSlice& q = slices[s];
      const int64_t i = lo - offset;
      sgd_update_cpu(hi - lo, q.p + i, q.g + i, q.v + i, cfg);
    }
  }
}

}  // namespace hc
