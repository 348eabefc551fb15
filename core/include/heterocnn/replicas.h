// Data-parallel training, the thesis's Algorithm 2 (SGD with T workers): replicas of one model,
// each a Net wholly on one place, each taking a share of every minibatch. One step:
//   1. replica r computes the gradients of its rows [off_r, off_r + n_r) of the batch, weighted
//      by n_r / N, so that their sum is the gradient of the whole batch's mean loss; replicas
//      on a GPU run their captured gradient graph while the CPU replicas compute;
//   2. the gradients are summed into the master's store (replica 0), in replica order: a
//      fixed order, so a run repeats bit for bit;
//   3. the optimizer updates the master's parameters once;
//   4. the master's values are copied to every other replica before the next step.
// Where the master is on a GPU and every other replica on the CPU, start_step overlaps the
// steps: 2-4 are enqueued on the master's stream (the CPU replicas' gradients go up through
// page-locked staging, the new weights come down the same way on a copy stream) and the call
// returns; the next call starts the GPU's gradient pass first and lets the CPU replicas begin
// once the new weights have landed. The arithmetic, and so the result, is that of the
// synchronous step.
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

#include "heterocnn/net.h"
#include "heterocnn/optimizer.h"

namespace hc {

struct ReplicaPipeline;  // replicas.cu: staging, copy stream and events of overlapped steps
struct ReplicaPipelineDeleter {
  void operator()(ReplicaPipeline* p) const;
};

class Replicas {
 public:
  // nets[0] is the master. Every net holds the same chain, wholly on one place; threads[r]
  // is replica r's CPU thread count (0: as many as the process has).
  Replicas(std::vector<Net*> nets, std::vector<int> threads);
  // Waits for a step still running (its copies read this object's staging and scratch).
  ~Replicas();
  Replicas(const Replicas&) = delete;
  Replicas& operator=(const Replicas&) = delete;

  // Copies the master's parameter values to every other replica, and the layer buffers
  // (BatchNorm's running statistics) of replica `buffers_from` to every other replica
  // (the master included): after a step, those of the first replica that had rows.
  void broadcast(size_t buffers_from = 0);
  // One step on x (in[0] rows, host memory) with replica r taking counts[r] consecutive rows
  // (the counts sum to in[0]; a count may be 0). Checked before anything changes.
  LossResult train_step(const float* x, const Shape& in, const int64_t* labels,
                        const std::vector<int64_t>& counts, Optimizer& opt);
  // The same with replica `device_replica` (wholly on the data set's GPU) gathering its
  // counts[device_replica] rows from `data` by idx (host memory): x and labels then hold the
  // other replicas' rows alone, in replica order (in[0] is still the whole batch).
  LossResult train_step_on(const float* x, const Shape& in, const int64_t* labels,
                           const std::vector<int64_t>& counts, Optimizer& opt,
                           const DeviceDataset* data, const int64_t* idx, size_t device_replica);
  // train_step_on started without waiting (see the top of this file) where the master is
  // on a GPU and the others on the CPU; elsewhere it runs at once. Each call writes the
  // results of the steps finished since the last report into out (at most 1) and returns
  // how many: the step before this one where steps overlap, else this one. `data` may be
  // null (every replica's rows in x). finish_steps waits for the step still running, if any,
  // and reports it (0 or 1). broadcast, compute_grads, apply_update and set_random_stream
  // finish a running step first (its result dropped).
  int start_step(const float* x, const Shape& in, const int64_t* labels,
                 const std::vector<int64_t>& counts, Optimizer& opt, const DeviceDataset* data,
                 const int64_t* idx, size_t device_replica, LossResult* out);
  int finish_steps(LossResult* out);
  // The two halves of a step, for a caller that sums the gradients further (MPI ranks):
  // compute_grads leaves `weight` times the gradient of the batch's mean loss in the master's
  // store (steps 1 and 2); apply_update then updates the master and broadcasts (3 and 4).
  LossResult compute_grads(const float* x, const Shape& in, const int64_t* labels,
                           const std::vector<int64_t>& counts, float weight = 1.f,
                           const DeviceDataset* data = nullptr, const int64_t* idx = nullptr,
                           size_t device_replica = 0);
  void apply_update(Optimizer& opt);
  // Replica r draws random stream `base` + r (Net::set_random_stream); 0 at construction.
  // An MPI rank with replicas gives each replica a stream no other rank's replica has.
  void set_random_stream(uint64_t base);
  // Seconds of each replica's gradient pass in the last step (on a GPU from events; where
  // steps overlap, the GPU's of the step reported last, and the host's own time outside the
  // passes added to the CPU replicas by their rows, since they wait for it).
  const std::vector<double>& last_seconds() const { return seconds_; }

 private:
  void check(const Shape& in, const std::vector<int64_t>& counts) const;
  Place place_of(size_t r) const;
  // The layer buffers of replica r that replicas share after a step (not scratch ones), in
  // layer order: the same list, buffer for buffer, on every replica (listed once, at
  // construction: a replica's layers and their buffers stay where they are).
  const std::vector<Buffer*>& shared_buffers(size_t r) const { return shared_[r]; }
  // Where each replica's rows start in x and labels (those of the replica that gathers its
  // own from a device data set are not there), and replica r's weight in the sum.
  std::vector<int64_t> row_offsets(const std::vector<int64_t>& counts, bool gathered,
                                   size_t device_replica) const;
  // Step 1 for the replicas on one kind of place (GPU: started; CPU: run, timed), each with
  // its own thread count; on failure nothing is left running. Given `earlier`, the master's
  // pass still running is reported there (Net::start_grads); returns how many were.
  int run_passes(bool on_gpu, const float* x, const Shape& in, const int64_t* labels,
                 const std::vector<int64_t>& counts, float weight_all,
                 const DeviceDataset* data, const int64_t* idx, size_t device_replica,
                 LossResult* earlier = nullptr);
  void wait_all();
  // The loss of replica r's last pass, waiting for a GPU's (and its seconds from events).
  LossResult finished(size_t r);
  // The batch's loss from the replicas' in replica order (a fixed order), each by its rows.
  static LossResult combine(const std::vector<LossResult>& results,
                            const std::vector<int64_t>& counts);
  void choose_buffers_from(const std::vector<int64_t>& counts);
  // Overlapped steps (replicas.cu): whether they apply, the enqueued steps 2-4, the landing
  // of the new weights (and buffers) in the CPU replicas, and the report of a running step.
  bool overlaps() const;
  void enqueue_tail(Optimizer& opt, const std::vector<int64_t>& counts);
  void land();
  LossResult report_running(const LossResult* gpu);  // gpu: the master's, if reported
  void settle();  // finishes a running step, its result dropped

  std::unique_ptr<ReplicaPipeline, ReplicaPipelineDeleter> pipe_;
  bool running_ = false;                // an overlapped step is enqueued, not yet reported
  std::vector<int64_t> running_counts_; // its rows per replica
  std::vector<LossResult> running_results_;  // its replicas' results (the master's later)
  double host_left_at_ = -1;            // when start_step last returned (-1: not in a run)
  std::vector<Net*> nets_;
  std::vector<int> threads_;
  std::vector<double> seconds_;
  std::vector<std::vector<Buffer*>> shared_;  // shared_buffers(r)
  Buffer scratch_;  // replicas' gradients on the master's place, before they are added
  size_t buffers_from_ = 0;  // the first replica with rows in the last gradient pass
};

}  // namespace hc
