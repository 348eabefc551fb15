// Single-precision GEMM on the CPU, row-major:  C = alpha * op(A) * op(B) + beta * C
//   op(A) is (M,K): A stored (M,K) with lda >= K, or with TransA::T stored (K,M) with lda >= M;
//   op(B) is (K,N): B stored (K,N) with ldb >= N, or with T stored (N,K) with ldb >= K;
//   C (M,N) with ldc >= N.
// No transpose is ever materialised: packing reads A and B in whichever layout they have.
// Runs on the OpenMP team when called outside a parallel region, on the calling thread when
// called from inside one (so per-sample convolution GEMMs can be spread over threads).
// beta == 0 means C is written without being read (NaN in C's old contents does not leak).
#pragma once
#include <cstdint>

namespace hc {

enum class Trans { N, T };

// Problems whose operands total at most this many bytes are small enough to stay in cache
// unpacked: a transposed A and a non-transposed B are then read in place (their k-major
// layout is what the kernel wants), saving the packing pass.
constexpr int64_t kSgemmInPlaceBytes = 512 * 1024;

void sgemm(Trans ta, Trans tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
           int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc);

// Which micro-kernel sgemm chose for this CPU at run time: "avx512", "avx2" or "generic".
const char* sgemm_kernel_name();

// The width of that kernel's tiles of C (NR columns): a C whose N is a multiple of it fills
// every tile, one with N just above a multiple runs a mostly empty tile at its edge.
int sgemm_tile_columns();

}  // namespace hc
