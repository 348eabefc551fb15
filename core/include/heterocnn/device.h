// The CUDA devices this process can use. Without CUDA in the build there are none.
#pragma once
#include <string>

namespace hc {

struct DeviceInfo {
  int index = 0;
  std::string name;
  int major = 0, minor = 0;  // compute capability
  size_t total_bytes = 0, free_bytes = 0;
  int multiprocessors = 0;
};

#ifdef HC_WITH_CUDA
// Number of usable CUDA devices; 0 when there is no driver or no GPU (never throws).
int cuda_device_count();
// Throws a Device error when `index` names no device.
DeviceInfo cuda_device_info(int index);
#else
inline int cuda_device_count() { return 0; }
#endif

}  // namespace hc
