// The sums of data-parallel training and of gradient accumulation, over flat spans:
//   y (n) += x (n)
// element by element, so a sum over replicas taken in a fixed order is the same every run.
#pragma once
#include <cstdint>

#include "heterocnn/place.h"

namespace hc {

void add_into_cpu(int64_t n, float* y, const float* x);
// add_into_cpu or its CUDA twin on `place`, done when it returns.
void add_into(Place place, int64_t n, float* y, const float* x);

}  // namespace hc
