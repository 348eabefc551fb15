// y (n) += x (n)
#include "heterocnn/reduce.h"

namespace hc {

void add_into_cpu(int64_t n, float* y, const float* x) {
  constexpr int64_t kParallelElems = 1 << 16;  // below this one thread beats waking the team
#pragma omp parallel for simd schedule(static) if (n > kParallelElems)
  for (int64_t i = 0; i < n; ++i) y[i] += x[i];
}

}  // namespace hc
