// SideBranch (side_branch.h): fork and join through the compute stream's side stream and events.
#include "side_branch.h"

#include "check.h"

namespace hc {

SideBranch::SideBranch(cudaStream_t main) : main_(main) {
  const cuda::SideStream s = cuda::side_stream_of(main);
  side_ = s.stream;
  joined_ = s.join;
  HC_CUDA_CHECK(cudaEventRecord(s.fork, main_));
  HC_CUDA_CHECK(cudaStreamWaitEvent(side_, s.fork, 0));
}

void SideBranch::join() {
  open_ = false;
  HC_CUDA_CHECK(cudaEventRecord(joined_, side_));
  HC_CUDA_CHECK(cudaStreamWaitEvent(main_, joined_, 0));
}

SideBranch::~SideBranch() {
  if (!open_) return;
  // Unwinding: rejoin without throwing, so that a capture can end and the error surface.
  if (cudaEventRecord(joined_, side_) == cudaSuccess) cudaStreamWaitEvent(main_, joined_, 0);
}

}  // namespace hc
