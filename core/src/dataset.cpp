// images (N, S) uint8 or float32, idx (n,) -> x (n, S) float32: a training batch gathered on
// the host (fit's batches on the CPU and a data-parallel step's host rows).
#include "heterocnn/dataset.h"

#include <cstring>
#include <string>

#include "heterocnn/error.h"
#include "heterocnn/parallel.h"

namespace hc {

void gather_batch_cpu(const void* images, bool uint8, int64_t N, int64_t S, const int64_t* idx,
                      int64_t n, float scale, float* x) {
  for (int64_t i = 0; i < n; ++i)
    if (idx[i] < 0 || idx[i] >= N)
      fail_value("gather_batch: index " + std::to_string(idx[i]) + " at position " +
                 std::to_string(i) + " is outside the " + std::to_string(N) + " images");
  // Each row read (1 or 4 bytes a value) and written (4): two floats a value for team_pays.
  if (uint8) {
    const auto* src = static_cast<const unsigned char*>(images);
#pragma omp parallel for schedule(static) if (team_pays(2 * n * S))
    for (int64_t i = 0; i < n; ++i) {
      const unsigned char* row = src + idx[i] * S;
      float* out = x + i * S;
#pragma omp simd
      for (int64_t j = 0; j < S; ++j) out[j] = static_cast<float>(row[j]) * scale;
    }
  } else {
    const auto* src = static_cast<const float*>(images);
#pragma omp parallel for schedule(static) if (team_pays(2 * n * S))
    for (int64_t i = 0; i < n; ++i)
      std::memcpy(x + i * S, src + idx[i] * S, sizeof(float) * S);
  }
}

}  // namespace hc
