// Device memory, copies and the per-device compute stream (heterocnn/cuda_api.h).
#include <cuda_runtime.h>

#include <mutex>
#include <string>
#include <vector>

#include "check.h"
#include "heterocnn/cuda_api.h"
#include "heterocnn/device.h"
#include "side_branch.h"

namespace hc::cuda {

namespace {

// Per device, created on first use: the compute stream, and the side stream with its fork and
// join events (side_branch.h).
struct DeviceStreams {
  cudaStream_t compute = nullptr;
  SideStream side;
};
std::mutex streams_mutex;
std::vector<DeviceStreams> streams;

DeviceStreams& streams_of(int device) {  // with streams_mutex held
  if (streams.size() <= static_cast<size_t>(device)) streams.resize(device + 1);
  return streams[device];
}

}  // namespace

void use_device(int device) {
  const int n = cuda_device_count();
  if (device < 0 || device >= n)
    fail(ErrorKind::Index, "device cuda:" + std::to_string(device) + " does not exist: " +
                               std::to_string(n) + " CUDA device(s) found");
  HC_CUDA_CHECK(cudaSetDevice(device));
}

float* alloc(size_t count, int device) {
  use_device(device);
  void* p = nullptr;
  const size_t bytes = count * sizeof(float);
  HC_CUDA_CHECK_BYTES(cudaMalloc(&p, bytes), bytes);
  return static_cast<float*>(p);
}

void release(float* p, int device) noexcept {
  if (!p) return;
  if (cudaSetDevice(device) == cudaSuccess) cudaFree(p);
  cudaGetLastError();  // a failure here (e.g. at process exit) has nobody to report to
}

void copy(float* dst, Place dst_place, const float* src, Place src_place, size_t count) {
  if (count == 0) return;
  const bool dst_dev = dst_place.device == Device::CUDA, src_dev = src_place.device == Device::CUDA;
  const int device = dst_dev ? dst_place.index : src_place.index;
  use_device(device);
  const cudaMemcpyKind kind = dst_dev ? (src_dev ? cudaMemcpyDeviceToDevice : cudaMemcpyHostToDevice)
                                      : (src_dev ? cudaMemcpyDeviceToHost : cudaMemcpyHostToHost);
  cudaStream_t s = static_cast<cudaStream_t>(stream(device));
  if (dst_dev && src_dev && dst_place.index != src_place.index) {
    HC_CUDA_CHECK(cudaMemcpyPeerAsync(dst, dst_place.index, src, src_place.index,
                                      count * sizeof(float), s));
  } else {
    HC_CUDA_CHECK(cudaMemcpyAsync(dst, src, count * sizeof(float), kind, s));
  }
  HC_CUDA_CHECK(cudaStreamSynchronize(s));
}

void zero(float* p, size_t count, int device) {
  if (count == 0) return;
  use_device(device);
  HC_CUDA_CHECK(cudaMemsetAsync(p, 0, count * sizeof(float),
                                static_cast<cudaStream_t>(stream(device))));
}

void* alloc_pinned(size_t bytes) {
  void* p = nullptr;
  HC_CUDA_CHECK_BYTES(cudaMallocHost(&p, bytes), bytes);
  return p;
}

void release_pinned(void* p) noexcept {
  if (p) cudaFreeHost(p);
  cudaGetLastError();
}

void* stream(int device) {
  std::lock_guard<std::mutex> lock(streams_mutex);
  DeviceStreams& s = streams_of(device);
  if (!s.compute) {
    use_device(device);
    HC_CUDA_CHECK(cudaStreamCreateWithFlags(&s.compute, cudaStreamNonBlocking));
  }
  return s.compute;
}

SideStream side_stream(int device) {
  std::lock_guard<std::mutex> lock(streams_mutex);
  SideStream& s = streams_of(device).side;
  if (!s.stream) {
    use_device(device);
    HC_CUDA_CHECK(cudaStreamCreateWithFlags(&s.stream, cudaStreamNonBlocking));
    HC_CUDA_CHECK(cudaEventCreateWithFlags(&s.fork, cudaEventDisableTiming));
    HC_CUDA_CHECK(cudaEventCreateWithFlags(&s.join, cudaEventDisableTiming));
  }
  return s;
}

void synchronize(int device) {
  use_device(device);
  HC_CUDA_CHECK(cudaStreamSynchronize(static_cast<cudaStream_t>(stream(device))));
}

}  // namespace hc::cuda
