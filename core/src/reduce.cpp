// y (n) += x (n)
#include "heterocnn/reduce.h"

#include "heterocnn/cuda_api.h"
#include "heterocnn/error.h"
#include "heterocnn/parallel.h"

namespace hc {

void add_into_cpu(int64_t n, float* y, const float* x) {
#pragma omp parallel for simd schedule(static) if (team_pays(2 * n))
  for (int64_t i = 0; i < n; ++i) y[i] += x[i];
}

void add_into(Place place, int64_t n, float* y, const float* x) {
  if (place.device == Device::CPU) return add_into_cpu(n, y, x);
#ifdef HC_WITH_CUDA
  cuda::add_into(n, y, x, place.index);
#else
  fail(ErrorKind::Device, "heterocnn was built without CUDA");
#endif
}

}  // namespace hc
