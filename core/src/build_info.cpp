#include "heterocnn/build_info.h"

#include "heterocnn/gemm.h"
#include "heterocnn/parallel.h"
#include "heterocnn/step_plan.h"

namespace hc {

BuildInfo build_info() {
  BuildInfo b;
  b.version = HC_VERSION;
  b.openmp = openmp_enabled();
  b.threads = max_threads();
#ifdef HC_WITH_CUDA
  b.cuda_compiled = true;
#endif
  b.gemm_kernel = sgemm_kernel_name();
  b.relu_fusion = relu_fusion_enabled();
  return b;
}

}  // namespace hc
