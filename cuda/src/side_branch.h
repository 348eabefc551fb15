// A branch of work beside a device's compute stream: kernels that need not wait for the ones
// enqueued after them (a layer's weight gradient, which only SGD reads, beside its input
// gradient, which the layer before needs next). Where neither pass fills the GPU the two run
// side by side (convnet on an H200: +8% at batch 256, no change at 64; CONV_NOTES.md v5).
//
//   SideBranch side(stream);           // the side stream waits for all of `stream` so far
//   wgrad_kernel<<<..., side.stream()>>>(...);
//   dgrad_kernel<<<..., stream>>>(...);  // disjoint outputs and workspace
//   side.join();                       // `stream` waits for the branch (also on unwinding)
//
// Inside a graph capture of `stream` the fork and the join become edges of the graph, so a
// replayed step runs both branches at once. One side stream (and its two events) per compute
// stream: work on one compute stream is enqueued from one thread at a time.
#pragma once
#include <cuda_runtime.h>

namespace hc {

namespace cuda {
// A compute stream's side stream and the events that fork it from and join it to the compute
// stream, made with the compute stream (memory.cu: cuda::stream, cuda::create_stream).
struct SideStream {
  cudaStream_t stream = nullptr;
  cudaEvent_t fork = nullptr, join = nullptr;
};
SideStream side_stream_of(cudaStream_t compute);  // a copy: the registry may change
}  // namespace cuda

class SideBranch {
 public:
  explicit SideBranch(cudaStream_t main);
  ~SideBranch();  // joins if join() was not called (an exception unwinding the step)
  SideBranch(const SideBranch&) = delete;
  SideBranch& operator=(const SideBranch&) = delete;

  cudaStream_t stream() const { return side_; }
  void join();

 private:
  cudaStream_t main_, side_;
  cudaEvent_t joined_;
  bool open_ = true;
};

}  // namespace hc
