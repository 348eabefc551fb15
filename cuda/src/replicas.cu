// The replicas' overlapped steps, where the master is on a GPU and every other replica on the
// CPU (the rest of Replicas is core/src/replicas.cpp). After the CPU replicas' passes, on the
// master's stream, behind its own gradient pass:
//   2. each CPU replica's gradients are copied into page-locked staging (by the host, at
//      once) and uploaded on the pipeline's copy stream (beside the GPU's pass), then added
//      into the master's on its stream, in replica order;
//   3. the optimizer's update;
//   4. on the pipeline's copy stream, once the update is done, the new values (and, when the
//      master had rows, its layer buffers) are downloaded into page-locked staging.
// The next step's GPU pass is enqueued behind 3 and runs while 4 does; land() waits for 4 and
// copies the staging into the CPU replicas before their next pass. While no CPU replica has
// rows nothing waits for 4: each step's download follows the last one on the copy stream,
// and the newest lands when a CPU pass (or finish_steps) needs it.
#include <cuda_runtime.h>

#include <cstring>

#include "check.h"
#include "heterocnn/cuda_api.h"
#include "heterocnn/replicas.h"
#include "ops_cuda.h"
#include "stream_sync.h"

namespace hc {

namespace {

int made_current(int device) {
  cuda::use_device(device);
  return device;
}

}  // namespace

struct ReplicaPipeline {
  explicit ReplicaPipeline(int d) : device(made_current(d)) {
    HC_CUDA_CHECK(cudaStreamCreateWithFlags(&copy, cudaStreamNonBlocking));
  }
  ~ReplicaPipeline() {
    cudaSetDevice(device);
    cudaStreamSynchronize(copy);
    cudaStreamDestroy(copy);
    cudaGetLastError();
  }
  ReplicaPipeline(const ReplicaPipeline&) = delete;
  ReplicaPipeline& operator=(const ReplicaPipeline&) = delete;

  int device;
  cudaStream_t copy = nullptr;
  PinnedBytes up, down;             // the CPU replicas' gradients; the master's values, buffers
  Event uploaded, updated, downloaded;
  bool up_used = false;             // `uploaded` was recorded (the staging may be in use)
  bool pending = false;             // a download not landed yet
  bool with_buffers = false;        // it holds the master's layer buffers after the values
};

void ReplicaPipelineDeleter::operator()(ReplicaPipeline* p) const { delete p; }

bool Replicas::overlaps() const {
  if (nets_.size() < 2 || place_of(0).device != Device::CUDA) return false;
  for (size_t r = 1; r < nets_.size(); ++r)
    if (place_of(r).device != Device::CPU) return false;
  return true;
}

void Replicas::enqueue_tail(Optimizer& opt, const std::vector<int64_t>& counts) {
  Net& master = *nets_[0];
  const Place p0 = place_of(0);
  const size_t K = nets_.size(), span = master.params().span(p0), bytes = span * sizeof(float);
  if (!pipe_) pipe_.reset(new ReplicaPipeline(p0.index));
  ReplicaPipeline& pp = *pipe_;
  cuda::use_device(p0.index);
  cudaStream_t s = static_cast<cudaStream_t>(master.stream_for(p0));

  // 2. The CPU replicas' gradients go up on the copy stream while the GPU's pass may still
  //    run, then the compute stream sums them, in replica order, into the master's.
  if (pp.up_used) HC_CUDA_CHECK(cudaEventSynchronize(pp.uploaded.get()));  // staging is free
  float* up = reinterpret_cast<float*>(pp.up.reserve((K - 1) * bytes));
  scratch_.reserve((K - 1) * span, p0);
  for (size_t r = 1; r < K; ++r) {
    if (counts[r] == 0) continue;
    float* stage = up + (r - 1) * span;
    std::memcpy(stage, nets_[r]->params().grads(place_of(r)), bytes);
    HC_CUDA_CHECK(cudaMemcpyAsync(scratch_.data() + (r - 1) * span, stage, bytes,
                                  cudaMemcpyHostToDevice, pp.copy));
  }
  HC_CUDA_CHECK(cudaEventRecord(pp.uploaded.get(), pp.copy));
  pp.up_used = true;
  HC_CUDA_CHECK(cudaStreamWaitEvent(s, pp.uploaded.get(), 0));
  float* grads = master.params().grads(p0);
  bool first = counts[0] > 0;
  for (size_t r = 1; r < K; ++r) {
    if (counts[r] == 0) continue;
    const float* theirs = scratch_.data() + (r - 1) * span;
    if (first)
      add_into_cuda(static_cast<int64_t>(span), grads, theirs, s);
    else  // the first contribution is copied as is
      HC_CUDA_CHECK(cudaMemcpyAsync(grads, theirs, bytes, cudaMemcpyDeviceToDevice, s));
    first = true;
  }

  // The layer buffers of the first replica with rows go to every other one. From a CPU
  // replica (the master had none): to the other CPU replicas now, and up to the master
  // before its next pass.
  choose_buffers_from(counts);
  if (buffers_from_ != 0) {
    const std::vector<Buffer*>& from = shared_buffers(buffers_from_);
    for (size_t r = 0; r < K; ++r) {
      if (r == buffers_from_) continue;
      const std::vector<Buffer*>& to = shared_buffers(r);
      for (size_t k = 0; k < to.size(); ++k) {
        const size_t n = from[k]->size() * sizeof(float);
        if (r == 0)  // pageable: staged by the driver before the call returns
          HC_CUDA_CHECK(cudaMemcpyAsync(to[k]->data(), from[k]->data(), n,
                                        cudaMemcpyHostToDevice, s));
        else
          std::memcpy(to[k]->data(), from[k]->data(), n);
      }
    }
  }

  // 3. One update.
  master.enqueue_update(opt);

  // 4. The new values (and the master's buffers) down to the staging, beside the next pass.
  pp.with_buffers = buffers_from_ == 0;
  const std::vector<Buffer*>& buffers = shared_buffers(0);
  size_t extra = 0;  // room for the buffers always: a download still running writes there
  for (const Buffer* b : buffers) extra += b->size();
  float* down = reinterpret_cast<float*>(pp.down.reserve(bytes + extra * sizeof(float)));
  HC_CUDA_CHECK(cudaEventRecord(pp.updated.get(), s));
  HC_CUDA_CHECK(cudaStreamWaitEvent(pp.copy, pp.updated.get(), 0));
  HC_CUDA_CHECK(cudaMemcpyAsync(down, master.params().values(p0), bytes, cudaMemcpyDeviceToHost,
                                pp.copy));
  if (pp.with_buffers) {
    float* at = down + span;
    for (const Buffer* b : buffers) {
      HC_CUDA_CHECK(cudaMemcpyAsync(at, b->data(), b->size() * sizeof(float),
                                    cudaMemcpyDeviceToHost, pp.copy));
      at += b->size();
    }
  }
  HC_CUDA_CHECK(cudaEventRecord(pp.downloaded.get(), pp.copy));
  pp.pending = true;
}

void Replicas::land() {
  if (!pipe_ || !pipe_->pending) return;
  ReplicaPipeline& pp = *pipe_;
  pp.pending = false;
  cuda::use_device(pp.device);
  HC_CUDA_CHECK(cudaEventSynchronize(pp.downloaded.get()));
  const Place p0 = place_of(0);
  const size_t span = nets_[0]->params().span(p0);
  const float* down = reinterpret_cast<const float*>(pp.down.reserve(0));
  for (size_t r = 1; r < nets_.size(); ++r) {
    std::memcpy(nets_[r]->params().values(place_of(r)), down, span * sizeof(float));
    if (!pp.with_buffers) continue;
    const float* at = down + span;
    for (Buffer* b : shared_buffers(r)) {
      std::memcpy(b->data(), at, b->size() * sizeof(float));
      at += b->size();
    }
  }
}

}  // namespace hc
