// One side stream and its fork/join events per device (side_branch.h), made on first use.
#include "side_branch.h"

#include <mutex>
#include <vector>

#include "check.h"

namespace hc {

namespace {

struct Side {
  cudaStream_t stream = nullptr;
  cudaEvent_t fork = nullptr, join = nullptr;
};

std::mutex sides_mutex;
std::vector<Side> sides;  // by device index

const Side& side_of_current_device() {
  int device = 0;
  HC_CUDA_CHECK(cudaGetDevice(&device));
  std::lock_guard<std::mutex> lock(sides_mutex);
  if (sides.size() <= static_cast<size_t>(device)) sides.resize(device + 1);
  Side& s = sides[device];
  if (!s.stream) {
    HC_CUDA_CHECK(cudaStreamCreateWithFlags(&s.stream, cudaStreamNonBlocking));
    HC_CUDA_CHECK(cudaEventCreateWithFlags(&s.fork, cudaEventDisableTiming));
    HC_CUDA_CHECK(cudaEventCreateWithFlags(&s.join, cudaEventDisableTiming));
  }
  return s;
}

}  // namespace

SideBranch::SideBranch(cudaStream_t main) : main_(main) {
  const Side& s = side_of_current_device();
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
