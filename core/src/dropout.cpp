// Dropout: x (any shape) -> y (same shape); Dropout2d: x (N,C,H,W) -> y (N,C,H,W)
#include "heterocnn/dropout.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "heterocnn/buffer.h"
#include "heterocnn/error.h"
#include "heterocnn/parallel.h"
#include "heterocnn/philox.h"

namespace hc {

uint32_t dropout_keep_below(double p) {
  return static_cast<uint32_t>(std::llround((1.0 - p) * 16777216.0));
}

float dropout_scale(double p) { return p < 1.0 ? static_cast<float>(1.0 / (1.0 - p)) : 0.f; }

uint64_t dropout_stream_key(uint64_t stream) {
  if (stream == 0) return 0;
  uint64_t z = stream * 0x9E3779B97F4A7C15ull;  // splitmix64's finaliser: far-apart keys
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

void dropout_forward_cpu(int64_t n, int64_t group, const float* x, float* y, const int64_t* state,
                         uint64_t stream_key, uint32_t keep_below, float scale) {
  const uint64_t seed = static_cast<uint64_t>(state[0]) ^ stream_key;
  const uint64_t step = static_cast<uint64_t>(state[1]);
  if (group == 1) {  // one Philox block gives the draws of 4 consecutive elements
    const int64_t blocks = (n + 3) / 4;
#pragma omp parallel for schedule(static) if (parallel : team_pays(2 * n))
    for (int64_t b = 0; b < blocks; ++b) {
      const Philox4 r = philox_block(seed, step, static_cast<uint64_t>(b));
      const int64_t end = std::min<int64_t>(n, 4 * b + 4);
      for (int64_t i = 4 * b; i < end; ++i)
        y[i] = x[i] * (philox_keep(r.v[i & 3], keep_below) ? scale : 0.f);
    }
    return;
  }
  const int64_t units = n / group;
#pragma omp parallel for schedule(static) if (parallel : team_pays(2 * n))
  for (int64_t u = 0; u < units; ++u) {
    const bool keep = philox_keep(philox_word(seed, step, static_cast<uint64_t>(u)), keep_below);
    const float s = keep ? scale : 0.f;  // multiplied, so NaN stays NaN, as in torch
    const float* xu = x + u * group;
    float* yu = y + u * group;
    for (int64_t i = 0; i < group; ++i) yu[i] = xu[i] * s;
  }
}

void dropout_advance_cpu(int64_t* state) { ++state[1]; }

Dropout::Dropout(double p, bool channels) : p_(p), channels_(channels) {
  if (!(p >= 0.0 && p <= 1.0))
    fail_value(kind() + "(p=" + std::to_string(p) + "): p must be in [0, 1]");
  keep_below_ = dropout_keep_below(p);
  scale_ = dropout_scale(p);
  add_buffer("rng_state", Shape{2}, /*is_int64=*/true, /*persistent=*/false);
}

Shape Dropout::output_shape(const Shape& in) const {
  if (channels_ && in.ndim != 4)
    fail_shape("Dropout2d expects input (N, C, H, W), got " + in.str());
  in.check();
  return in;
}

void Dropout::init_params(Rng& rng) {
  const int64_t host[2] = {static_cast<int64_t>(rng.next_u64() >> 2), 0};
  Buffer& b = buffers_[0].value;
  copy_floats(b.data(), b.place(), reinterpret_cast<const float*>(host), Place{},
              floats_for<int64_t>(2));
}

void Dropout::forward_cpu(const Tensor& x, Tensor& y, float*) {
  const int64_t n = x.numel();
  if (!training_) {
    if (y.data != x.data) std::memcpy(y.data, x.data, sizeof(float) * static_cast<size_t>(n));
    return;
  }
  dropout_advance_cpu(state());
  dropout_forward_cpu(n, group(x.shape), x.data, y.data, state(), stream_key_, keep_below_,
                      scale_);
}

void Dropout::backward_cpu(const Tensor& x, const Tensor&, const Tensor& dy, Tensor* dx, float*) {
  if (!dx) return;
  const int64_t n = dy.numel();
  if (!training_) {
    std::memcpy(dx->data, dy.data, sizeof(float) * static_cast<size_t>(n));
    return;
  }
  // The mask of the forward (the same state), applied to the gradient.
  dropout_forward_cpu(n, group(x.shape), dy.data, dx->data, state(), stream_key_, keep_below_,
                      scale_);
}

}  // namespace hc
