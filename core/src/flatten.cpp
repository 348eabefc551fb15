// x (N, d1, d2, ...) -> y (N, d1*d2*...)
#include "heterocnn/flatten.h"

#include "heterocnn/error.h"

namespace hc {

Shape Flatten::output_shape(const Shape& in) const {
  if (in.ndim < 2) fail_shape("Flatten expects input with a batch dim and more, got " + in.str());
  return Shape{in[0], in.sample_numel()};
}

}  // namespace hc
