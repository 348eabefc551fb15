// The optimizers' update on a CUDA device (the rest of each optimizer is core/src/optimizer.cpp).
#include "heterocnn/optimizer.h"
#include "ops_cuda.h"

namespace hc {

void Sgd::update_cuda(float* p, const float* g, float* const* state, size_t n,
                      const void* device_config, void* stream) {
  sgd_update_cuda(static_cast<int64_t>(n), p, g, state[0],
                  static_cast<const SgdConfig*>(device_config), static_cast<cudaStream_t>(stream));
}

void Adam::update_cuda(float* p, const float* g, float* const* state, size_t n,
                       const void* device_config, void* stream) {
  adam_update_cuda(static_cast<int64_t>(n), p, g, state[0], state[1],
                   static_cast<const AdamStep*>(device_config), static_cast<cudaStream_t>(stream));
}

}  // namespace hc
