// Flatten: x (N, d1, d2, ...) -> y (N, d1*d2*...), C order, as torch.nn.Flatten. The output is
// a view of the input, so forward and backward move no data.
#pragma once
#include "heterocnn/layer.h"

namespace hc {

class Flatten : public Layer {
 public:
  std::string kind() const override { return "Flatten"; }
  Shape output_shape(const Shape& in) const override;
  bool is_view() const override { return true; }

 protected:
  void forward_cpu(const Tensor&, Tensor&, float*) override {}
  void backward_cpu(const Tensor&, const Tensor&, const Tensor&, Tensor*, float*) override {}
#ifdef HC_WITH_CUDA
  void forward_cuda(const Tensor&, Tensor&, float*, cudaStream_t) override {}
  void backward_cuda(const Tensor&, const Tensor&, const Tensor&, Tensor*, float*,
                     cudaStream_t) override {}
#endif
};

}  // namespace hc
