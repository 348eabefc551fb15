// Single-precision GEMM on the GPU, row-major, the same contract as hc::sgemm (gemm.h):
//   C = alpha * op(A) * op(B) + beta * C,  op(A) (M,K), op(B) (K,N), C (M,N) with ldc >= N;
//   A stored (M,K) lda >= K, or with Trans::T stored (K,M) lda >= M; likewise B.
// No transpose is materialised; beta == 0 never reads C; any M, N, K >= 0 (K == 0 gives
// beta*C). fp32 FFMA only (no tensor cores, no TF32). Every output element is summed over k in
// ascending order by one thread, so results do not depend on the tile shape that was chosen.
// All functions enqueue on `stream` and throw hc::Error on a bad argument or CUDA failure.
#pragma once
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "heterocnn/gemm.h"

namespace hc {

enum class BiasMode { None, PerRow, PerCol };

// Fused epilogue: C = act(alpha * op(A) op(B) + beta * C + bias).
struct GemmEpilogue {
  const float* bias = nullptr;           // device: M floats (PerRow) or N floats (PerCol)
  BiasMode bias_mode = BiasMode::None;
  bool relu = false;                     // max(v, 0); NaN stays NaN, like relu_forward_cpu
  const float* mask = nullptr;           // device, laid out as C: C = mask > 0 ? C : 0, last
};

void sgemm_cuda(Trans ta, Trans tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc,
                cudaStream_t stream);

// sgemm_cuda with the fused epilogue.
void sgemm_epilogue_cuda(Trans ta, Trans tb, int64_t M, int64_t N, int64_t K, float alpha,
                         const float* A, int64_t lda, const float* B, int64_t ldb, float beta,
                         float* C, int64_t ldc, const GemmEpilogue& ep, cudaStream_t stream);

// `batch` independent GEMMs in one launch: matrix z uses A + z*strideA, B + z*strideB,
// C + z*strideC (a stride may be 0 to share an operand, e.g. conv weights).
void sgemm_batched_cuda(Trans ta, Trans tb, int64_t M, int64_t N, int64_t K, float alpha,
                        const float* A, int64_t lda, int64_t strideA, const float* B,
                        int64_t ldb, int64_t strideB, float beta, float* C, int64_t ldc,
                        int64_t strideC, int64_t batch, const GemmEpilogue& ep,
                        cudaStream_t stream);

// Split-K for small outputs with deep K (Linear's forward of a small batch against a wide
// input): K is cut into `splits` slices whose partial products go to ws (splits * M * N floats) and are then summed in slice order, so the
// result is deterministic; the epilogue is applied by the final sum. sgemm_splitk_count picks
// `splits` from the shape alone (1 when splitting does not pay).
int sgemm_splitk_count(int64_t M, int64_t N, int64_t K);
size_t sgemm_splitk_workspace(int64_t M, int64_t N, int splits);
void sgemm_splitk_cuda(Trans ta, Trans tb, int64_t M, int64_t N, int64_t K, float alpha,
                       const float* A, int64_t lda, const float* B, int64_t ldb, float beta,
                       float* C, int64_t ldc, int splits, float* ws, const GemmEpilogue& ep,
                       cudaStream_t stream);

}  // namespace hc
