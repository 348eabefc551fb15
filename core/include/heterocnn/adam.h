// Adam and AdamW, the update rules of torch.optim.Adam and torch.optim.AdamW (amsgrad off).
// At step t (1, 2, ...):
//   AdamW: p *= 1 - lr * wd            Adam: g += wd * p
//   m = m + (1 - b1) * (g - m)          v = b2 * v + (1 - b2) * g * g
//   p -= (lr / (1 - b1^t)) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
#pragma once
#include <cstddef>
#include <cstdint>

namespace hc {

struct AdamConfig {
  float lr = 1e-3f;
  float beta1 = 0.9f;
  float beta2 = 0.999f;
  float eps = 1e-8f;
  float weight_decay = 0.f;
  bool decoupled = false;  // AdamW: the decay is applied to p, not added to g
};

// Throws a Value error naming the bad hyper-parameter: lr and weight_decay finite and >= 0,
// betas in [0, 1), eps finite and > 0.
void validate(const AdamConfig& cfg);

// The coefficients one step's update reads (on a GPU from device memory, written per step,
// so a captured graph takes a new learning rate and step count without being re-captured).
// The bias corrections are computed in double, as torch does with Python floats.
struct AdamStep {
  float decay;            // p *= decay first (AdamW: 1 - lr * wd; Adam: 1)
  float l2;               // g += l2 * p (Adam: wd; AdamW: 0)
  float one_minus_beta1;  // 1 - b1
  float beta2;
  float one_minus_beta2;  // 1 - b2
  float eps;
  float step_size;        // lr / (1 - b1^t)
  float bias2_sqrt;       // sqrt(1 - b2^t)
};

// The coefficients of step t (>= 1; a Value error otherwise).
AdamStep adam_step(const AdamConfig& cfg, int64_t t);

// p, g, m (exp_avg), v (exp_avg_sq): n floats each; g is left as it was. One OpenMP loop
// (serial when small); element-wise, so the result does not depend on the team size.
void adam_update_cpu(int64_t n, float* p, const float* g, float* m, float* v, const AdamStep& s);

}  // namespace hc
