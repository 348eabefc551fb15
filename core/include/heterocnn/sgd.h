// SGD with momentum, dampening, Nesterov and weight decay, the update rule of torch.optim.SGD:
//   g += wd * p;  v = mu * v + (1 - dampening) * g;  p -= lr * (nesterov ? g + mu * v : v)
// (with mu == 0: p -= lr * g). torch's first step sets v = g whatever the dampening: the
// optimizer passes dampening 0 for that step (Sgd::step_config).
#pragma once
#include <cstddef>
#include <cstdint>

namespace hc {

struct SgdConfig {
  float lr = 0.01f;
  float momentum = 0.f;
  float weight_decay = 0.f;
  float dampening = 0.f;
  bool nesterov = false;
};

// Throws a Value error naming the bad hyper-parameter (NaN, inf, negative; Nesterov without
// momentum or with dampening, as torch refuses).
void validate(const SgdConfig& cfg);

// p, g, v: n floats each; g is left as it was.
void sgd_update_cpu(int64_t n, float* p, const float* g, float* v, const SgdConfig& cfg);

// One parameter array for sgd_update_all_cpu.
struct SgdSlice {
  int64_t n;
  float* p;
  const float* g;
  float* v;
};

// sgd_update_cpu over every slice, as one OpenMP loop over their concatenation split statically
// over the team (serial when small). The update is element-wise, so the result does not depend
// on the split: bit-identical to calling sgd_update_cpu on each slice.
void sgd_update_all_cpu(const SgdSlice* slices, size_t count, const SgdConfig& cfg);

}  // namespace hc
