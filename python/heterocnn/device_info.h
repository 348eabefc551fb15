// hc::cuda_device_info for the bindings, in builds with and without CUDA.
#pragma once
#include "heterocnn/device.h"
#include "heterocnn/error.h"

namespace hc_py {

inline hc::DeviceInfo device_info(int index) {
#ifdef HC_WITH_CUDA
  return hc::cuda_device_info(index);
#else
  hc::fail(hc::ErrorKind::Device, "device cuda:" + std::to_string(index) +
                                      " asked for, but heterocnn was built without CUDA");
#endif
}

}  // namespace hc_py
