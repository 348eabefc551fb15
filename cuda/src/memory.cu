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

// Every compute stream made here (the devices' default ones and the nets' own), each with its
// side stream and the fork and join events (side_branch.h).
struct StreamPair {
  int device;
  cudaStream_t compute;
  SideStream side;
};
std::mutex streams_mutex;
std::vector<StreamPair> streams;
std::vector<cudaStream_t> defaults;  // per device, made on first use

cudaStream_t make_pair(int device) {  // with streams_mutex held
  use_device(device);
  StreamPair p{device, nullptr, SideStream{}};
  HC_CUDA_CHECK(cudaStreamCreateWithFlags(&p.compute, cudaStreamNonBlocking));
  HC_CUDA_CHECK(cudaStreamCreateWithFlags(&p.side.stream, cudaStreamNonBlocking));
  HC_CUDA_CHECK(cudaEventCreateWithFlags(&p.side.fork, cudaEventDisableTiming));
  HC_CUDA_CHECK(cudaEventCreateWithFlags(&p.side.join, cudaEventDisableTiming));
  streams.push_back(p);
  return p.compute;
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
  // Done when it returns, like copy(): the memory may be read next on any stream (a net's
  // own, an optimizer's first update), which the device's default stream does not order.
  cudaStream_t s = static_cast<cudaStream_t>(stream(device));
  HC_CUDA_CHECK(cudaMemsetAsync(p, 0, count * sizeof(float), s));
  HC_CUDA_CHECK(cudaStreamSynchronize(s));
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

cudaStream_t default_of(int device) {  // with streams_mutex held
  if (defaults.size() <= static_cast<size_t>(device)) defaults.resize(device + 1, nullptr);
  if (!defaults[device]) defaults[device] = make_pair(device);
  return defaults[device];
}

void* stream(int device) {
  std::lock_guard<std::mutex> lock(streams_mutex);
  return default_of(device);
}

void* create_stream(int device) {
  std::lock_guard<std::mutex> lock(streams_mutex);
  return make_pair(device);
}

void destroy_stream(void* stream) noexcept {
  std::lock_guard<std::mutex> lock(streams_mutex);
  for (size_t i = 0; i < streams.size(); ++i) {
    if (streams[i].compute != stream) continue;
    const StreamPair p = streams[i];
    streams.erase(streams.begin() + i);
    if (cudaSetDevice(p.device) == cudaSuccess) {
      cudaStreamSynchronize(p.compute);
      cudaStreamSynchronize(p.side.stream);
      cudaEventDestroy(p.side.fork);
      cudaEventDestroy(p.side.join);
      cudaStreamDestroy(p.side.stream);
      cudaStreamDestroy(p.compute);
    }
    cudaGetLastError();  // nobody to report to (this runs in destructors)
    return;
  }
}

SideStream side_stream_of(cudaStream_t compute) {
  std::lock_guard<std::mutex> lock(streams_mutex);
  for (const StreamPair& p : streams)
    if (p.compute == compute) return p.side;
  // A stream made elsewhere (a kernel test's): the current device's default side stream.
  int device = 0;
  HC_CUDA_CHECK(cudaGetDevice(&device));
  const cudaStream_t fallback = default_of(device);
  for (const StreamPair& p : streams)
    if (p.compute == fallback) return p.side;
  fail(ErrorKind::Device, "no side stream for a compute stream");
}

void synchronize(int device) {
  use_device(device);
  HC_CUDA_CHECK(cudaStreamSynchronize(static_cast<cudaStream_t>(stream(device))));
}

}  // namespace hc::cuda
