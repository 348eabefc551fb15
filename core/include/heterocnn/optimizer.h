// Optimizers. An optimizer owns its state (SGD: a momentum buffer per parameter; Adam: the
// two moment estimates) and the count of steps it has taken, laid out
// like the ParamStore it updates: per place, state_count() flat spans of the store's span,
// parameter i at the store's offset for it. It applies one update to all the parameters of a
// place at once (one loop on the CPU, one launch on a GPU). When the store is re-laid out
// (the model moved) the state follows it, parameter by parameter, on the next use.
//
// The step count: whoever runs a training step calls begin_step() once, before the step's
// hyper-parameters are written (write_config) and before its update(s): Net::start_step,
// start_step_on and apply_update do (so a model split over places, updated once per place,
// and data-parallel replicas, updated once on the master, count one step each). Adam's bias
// correction reads it; SGD's first step (torch's v = g) too.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "heterocnn/adam.h"
#include "heterocnn/buffer.h"
#include "heterocnn/param_store.h"
#include "heterocnn/sgd.h"

namespace hc {

class Optimizer {
 public:
  virtual ~Optimizer() = default;

  // Spans of state per parameter and their names ("momentum"; Adam: "exp_avg", "exp_avg_sq").
  virtual int state_count() const = 0;
  virtual std::string state_name(int k) const = 0;
  // Bytes of the hyper-parameters one update reads (at most kMaxConfigBytes); write_config
  // writes those of the current step (begin_step() first), as the update on a GPU reads them
  // from device memory (so a captured step takes a new learning rate and step count without
  // being captured again; each slot of net.cu's pipeline has its own copy).
  static constexpr size_t kMaxConfigBytes = 32;
  virtual size_t config_bytes() const = 0;
  virtual void write_config(void* dst) const = 0;

  // Updates every parameter of `store` on `place` from its gradient: on the CPU now, with the
  // current hyper-parameters; on a CUDA device enqueued on `stream` (a cudaStream_t), with the
  // hyper-parameters read from `device_config` (device memory written by write_config).
  void update(ParamStore& store, Place place, const void* device_config, void* stream);
  // Host copies of, and writes to, state k of parameter i of `store`.
  void get_state(const ParamStore& store, int k, size_t i, float* dst);
  void set_state(const ParamStore& store, int k, size_t i, const float* src);
  // All state and the step count back to zero (a fresh optimizer).
  void reset();
  // Steps begun: begin_step() counts one (see the top of this file); set_steps restores a
  // saved count (>= 0, a Value error otherwise).
  void begin_step() { ++steps_; }
  int64_t steps() const { return steps_; }
  void set_steps(int64_t steps);
  // Changes whenever the state memory moves (captured graphs that hold it must go).
  uint64_t state_generation() const { return state_generation_; }
  // Follows `store`'s layout (moving the state if the store was re-laid out since).
  void follow(const ParamStore& store);

 protected:
  // state[k]: the k-th state span of the place, n floats each (p, g too).
  virtual void update_cpu(float* p, const float* g, float* const* state, size_t n) = 0;
#ifdef HC_WITH_CUDA
  virtual void update_cuda(float* p, const float* g, float* const* state, size_t n,
                           const void* device_config, void* stream) = 0;
#endif

 private:
  struct PlaceState {
    Place place;
    size_t span;
    Buffer memory;  // state_count() * span floats
  };
  PlaceState* find(Place place);
  float* state_at(const ParamStore::Slot& slot, int k);

  std::vector<PlaceState> places_;
  std::vector<ParamStore::Slot> layout_;  // the store's slots the state is laid out by
  uint64_t store_generation_ = 0;
  uint64_t state_generation_ = 0;
  int64_t steps_ = 0;
};

// torch.optim.SGD's rule (see sgd.h).
class Sgd : public Optimizer {
 public:
  explicit Sgd(const SgdConfig& config) : config_(config) { validate(config); }
  const SgdConfig& config() const { return config_; }
  void set_config(const SgdConfig& config) {
    validate(config);
    config_ = config;
  }
  int state_count() const override { return 1; }
  std::string state_name(int) const override { return "momentum"; }
  size_t config_bytes() const override { return sizeof(SgdConfig); }
  void write_config(void* dst) const override;
  // The rule of the current step: the config, with dampening 0 on the first step.
  SgdConfig step_config() const;

 protected:
  void update_cpu(float* p, const float* g, float* const* state, size_t n) override;
#ifdef HC_WITH_CUDA
  void update_cuda(float* p, const float* g, float* const* state, size_t n,
                   const void* device_config, void* stream) override;
#endif

 private:
  SgdConfig config_;
};

// torch.optim.Adam's rule, and AdamW's with config.decoupled (see adam.h).
class Adam : public Optimizer {
 public:
  explicit Adam(const AdamConfig& config) : config_(config) { validate(config); }
  const AdamConfig& config() const { return config_; }
  void set_config(const AdamConfig& config) {
    validate(config);
    config_ = config;
  }
  int state_count() const override { return 2; }
  std::string state_name(int k) const override { return k == 0 ? "exp_avg" : "exp_avg_sq"; }
  size_t config_bytes() const override { return sizeof(AdamStep); }
  void write_config(void* dst) const override;

 protected:
  void update_cpu(float* p, const float* g, float* const* state, size_t n) override;
#ifdef HC_WITH_CUDA
  void update_cuda(float* p, const float* g, float* const* state, size_t n,
                   const void* device_config, void* stream) override;
#endif

 private:
  AdamConfig config_;
};

static_assert(sizeof(SgdConfig) <= Optimizer::kMaxConfigBytes &&
                  sizeof(AdamStep) <= Optimizer::kMaxConfigBytes,
              "an optimizer's config must fit Optimizer::kMaxConfigBytes");

}  // namespace hc
