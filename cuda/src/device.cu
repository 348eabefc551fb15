// CUDA device discovery for hc.cuda_available() and hc.build_info().
#include <cuda_runtime.h>

#include "heterocnn/cuda_api.h"
#include "heterocnn/device.h"
#include "heterocnn/error.h"

namespace hc {

int cuda_device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();  // no driver or no device: clear the error, report none
    return 0;
  }
  return n;
}

DeviceInfo cuda_device_info(int index) {
  int previous = 0;
  cudaGetDevice(&previous);
  cuda::use_device(index);  // throws for a missing device
  cudaDeviceProp prop;
  cudaError_t err = cudaGetDeviceProperties(&prop, index);
  if (err != cudaSuccess)
    fail(ErrorKind::Device, std::string("cudaGetDeviceProperties(") + std::to_string(index) +
                                ") failed: " + cudaGetErrorName(err) + ": " +
                                cudaGetErrorString(err));
  DeviceInfo info;
  info.index = index;
  info.name = prop.name;
  info.major = prop.major;
  info.minor = prop.minor;
  info.multiprocessors = prop.multiProcessorCount;
  if (cudaMemGetInfo(&info.free_bytes, &info.total_bytes) != cudaSuccess) cudaGetLastError();
  cudaSetDevice(previous);
  return info;
}

}  // namespace hc
