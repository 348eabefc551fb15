// What this build of the core contains, for hc.build_info().
#pragma once
#include <string>

namespace hc {

struct BuildInfo {
  std::string version;
  bool openmp = false;
  int threads = 1;           // OpenMP threads a parallel region uses now
  bool cuda_compiled = false;
  std::string gemm_kernel;   // CPU SGEMM micro-kernel chosen for this processor
  bool relu_fusion = true;   // relu_fusion_enabled() (step_plan.h): HC_RELU_FUSION
};

BuildInfo build_info();

}  // namespace hc
