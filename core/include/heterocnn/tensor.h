// A non-owning view of float data with a shape. Layers read and write tensors; buffers own
// the memory behind them.
#pragma once
#include "heterocnn/shape.h"

namespace hc {

struct Tensor {
  float* data = nullptr;
  Shape shape;
  int64_t numel() const { return shape.numel(); }
};

}  // namespace hc
