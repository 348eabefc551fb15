// C (M,N) = alpha * op(A) (M,K) * op(B) (K,N) + beta * C, row-major, fp32 (see gemm_cuda.h)
//
// Production kernel: sgemm_tiled_kernel (gemm_tile.cuh) over dense operands. Transposed
// operands only change how a tile is loaded, never what is stored. GEMMs too small for tiles
// (gemm_small) take one thread per output instead.
#include "gemm_cuda.h"

#include <algorithm>
#include <string>

#include "check.h"
#include "column_sum.cuh"
#include "gemm_tile.cuh"
#include "heterocnn/activation.h"
#include "heterocnn/error.h"

namespace hc {

namespace {

struct GemmParams {
  int M, N, K, K_last;       // K of every batch entry except the last, which has K_last
  float alpha, beta;
  const float* A;
  int64_t lda, sA;
  const float* B;
  int64_t ldb, sB;
  float* C;
  int64_t ldc, sC;
  const float* bias;
  int bias_mode;             // 0 none, 1 per row, 2 per column
  int relu;
  const float* mask;         // laid out as C (ldc, sC), or null
  int vecA, vecB, vecC;      // 16-byte accesses are legal for this operand
};

// `at`: the offset of C[z][m][n] (the mask's too).
__device__ __forceinline__ float apply_epilogue(const GemmParams& p, float acc, float c, int m,
                                                int n, int64_t at) {
  float v = p.alpha * acc;
  if (p.beta != 0.f) v += p.beta * c;
  if (p.bias_mode == 1) v += p.bias[m];
  else if (p.bias_mode == 2) v += p.bias[n];
  if (p.relu) v = relu(v);
  if (p.mask && !(p.mask[at] > 0.f)) v = 0.f;
  return v;
}

// X[r][c..c+3] of a row-major (R, C) matrix with leading dimension ld, 0 outside it: one
// 16-byte load where `vec` (alignment and ld) allows and the 4 are inside, guarded scalars else.
__device__ __forceinline__ float4 row4(const float* X, int64_t ld, int r, int c, int R, int C,
                                       int vec) {
  if (vec && r < R && c + 3 < C) return *reinterpret_cast<const float4*>(X + (int64_t)r * ld + c);
  float v[4];
#pragma unroll
  for (int i = 0; i < 4; ++i) v[i] = (r < R && c + i < C) ? X[(int64_t)r * ld + c + i] : 0.f;
  return make_float4(v[0], v[1], v[2], v[3]);
}

// Dense row-major operands for sgemm_tiled_kernel (gemm_tile.cuh): a transposed operand is
// read along its stored rows (row4); the epilogue on the way out.
struct DenseAccess {
  GemmParams p;
  int M, N;

  __device__ int depth(int z) const { return z == (int)gridDim.z - 1 ? p.K_last : p.K; }

  template <bool TA>  // A stored (M, K), or (K, M) for TA
  __device__ float4 load_a(int z, int m, int k, int K) const {
    const float* A = p.A + z * p.sA;
    return TA ? row4(A, p.lda, k, m, K, M, p.vecA) : row4(A, p.lda, m, k, M, K, p.vecA);
  }

  template <bool TB>  // B stored (K, N), or (N, K) for TB
  __device__ float4 load_b(int z, int k, int n, int K) const {
    const float* B = p.B + z * p.sB;
    return TB ? row4(B, p.ldb, n, k, N, K, p.vecB) : row4(B, p.ldb, k, n, K, N, p.vecB);
  }

  __device__ void store(int z, int m, int n, float4 acc) const {
    const int64_t row = z * p.sC + (int64_t)m * p.ldc;
    float* crow = p.C + row;
    if (p.vecC && n + 3 < N) {
      float4 c = make_float4(0.f, 0.f, 0.f, 0.f);
      if (p.beta != 0.f) c = *reinterpret_cast<const float4*>(crow + n);
      float4 o;
      o.x = apply_epilogue(p, acc.x, c.x, m, n + 0, row + n + 0);
      o.y = apply_epilogue(p, acc.y, c.y, m, n + 1, row + n + 1);
      o.z = apply_epilogue(p, acc.z, c.z, m, n + 2, row + n + 2);
      o.w = apply_epilogue(p, acc.w, c.w, m, n + 3, row + n + 3);
      *reinterpret_cast<float4*>(crow + n) = o;
      return;
    }
    const float v[4] = {acc.x, acc.y, acc.z, acc.w};
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      if (n + j >= N) break;
      const float c = p.beta != 0.f ? crow[n + j] : 0.f;
      crow[n + j] = apply_epilogue(p, v[j], c, m, n + j, row + n + j);
    }
  }
};

// Few multiply-adds over a short K (Linear(256, 10) at batch 64: 64 x 10 x 256): a tile's
// staging and its k-tile latency chain cost more than they save, so one thread per output.
bool gemm_small(int64_t M, int64_t N, int64_t K) {  // M, N, K < 2^31 (check_args)
  return K <= 512 && M * N <= (int64_t(1) << 20) / std::max<int64_t>(K, 1);
}

// One thread per output C[z][m][n], summing k in ascending order, then the epilogue.
__global__ void sgemm_small_kernel(const GemmParams p, bool ta, bool tb) {
  const int z = blockIdx.y;
  const int K = z == (int)gridDim.y - 1 ? p.K_last : p.K;
  const int64_t am = ta ? 1 : p.lda, ak = ta ? p.lda : 1;  // op(A)[m][k] = A[m*am + k*ak]
  const int64_t bk = tb ? 1 : p.ldb, bn = tb ? p.ldb : 1;  // op(B)[k][n] = B[k*bk + n*bn]
  const int64_t total = (int64_t)p.M * p.N;
  for (int64_t idx = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; idx < total;
       idx += (int64_t)gridDim.x * blockDim.x) {
    const int m = (int)(idx / p.N), n = (int)(idx % p.N);
    const float* a = p.A + z * p.sA + m * am;
    const float* b = p.B + z * p.sB + n * bn;
    float acc = 0.f;
#pragma unroll 4
    for (int k = 0; k < K; ++k) acc = fmaf(a[k * ak], b[k * bk], acc);
    const int64_t at = z * p.sC + (int64_t)m * p.ldc + n;
    float* c = p.C + at;
    *c = apply_epilogue(p, acc, p.beta != 0.f ? *c : 0.f, m, n, at);
  }
}

void launch(bool ta, bool tb, const GemmParams& p, int batch, cudaStream_t stream) {
  if (gemm_small(p.M, p.N, std::max(p.K, p.K_last))) {
    const int64_t total = (int64_t)p.M * p.N;
    const dim3 grid((unsigned)std::min<int64_t>((total + 255) / 256, 65535), batch);
    sgemm_small_kernel<<<grid, 256, 0, stream>>>(p, ta, tb);
    HC_CUDA_CHECK_LAUNCH("sgemm_small_kernel");
    return;
  }
  const DenseAccess acc{p, p.M, p.N};
  if (!ta && !tb) launch_tiled<false, false>(acc, batch, stream);
  if (!ta && tb) launch_tiled<false, true>(acc, batch, stream);
  if (ta && !tb) launch_tiled<true, false>(acc, batch, stream);
  if (ta && tb) launch_tiled<true, true>(acc, batch, stream);
}

void check_args(const char* fn, Trans ta, Trans tb, int64_t M, int64_t N, int64_t K,
                int64_t lda, int64_t ldb, int64_t ldc) {
  const int64_t lim = int64_t(1) << 31;
  if (M < 0 || N < 0 || K < 0 || M >= lim || N >= lim || K >= lim)
    fail_value(std::string(fn) + ": bad sizes M=" + std::to_string(M) + " N=" +
               std::to_string(N) + " K=" + std::to_string(K));
  const int64_t need_a = ta == Trans::N ? K : M, need_b = tb == Trans::N ? N : K;
  if (lda < need_a || ldb < need_b || ldc < N)
    fail_value(std::string(fn) + ": leading dimension too small (lda=" + std::to_string(lda) +
               ", ldb=" + std::to_string(ldb) + ", ldc=" + std::to_string(ldc) + ")");
}

GemmParams make_params(int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                       int64_t lda, int64_t sA, const float* B, int64_t ldb, int64_t sB,
                       float beta, float* C, int64_t ldc, int64_t sC, const GemmEpilogue& ep) {
  GemmParams p;
  p.M = (int)M; p.N = (int)N; p.K = (int)K; p.K_last = (int)K;
  p.alpha = alpha; p.beta = beta;
  p.A = A; p.lda = lda; p.sA = sA;
  p.B = B; p.ldb = ldb; p.sB = sB;
  p.C = C; p.ldc = ldc; p.sC = sC;
  p.bias = ep.bias;
  p.bias_mode = ep.bias == nullptr ? 0 : ep.bias_mode == BiasMode::PerRow ? 1
              : ep.bias_mode == BiasMode::PerCol ? 2 : 0;
  p.relu = ep.relu ? 1 : 0;
  p.mask = ep.mask;
  p.vecA = aligned16(A) && lda % 4 == 0 && sA % 4 == 0;
  p.vecB = aligned16(B) && ldb % 4 == 0 && sB % 4 == 0;
  p.vecC = aligned16(C) && ldc % 4 == 0 && sC % 4 == 0;
  return p;
}

// Sum of the split-K partials (column_sum.cuh's fixed order), then the epilogue.
// ws (S, M*N) -> C (M,N)
__global__ void splitk_reduce_kernel(const GemmParams p, int splits, const float* ws) {
  column_sums(splits, (int64_t)p.M * p.N, ws, [&](int64_t idx, float s) {
    const int m = (int)(idx / p.N), n = (int)(idx % p.N);
    const int64_t at = (int64_t)m * p.ldc + n;
    float* c = p.C + at;
    *c = apply_epilogue(p, s, p.beta != 0.f ? *c : 0.f, m, n, at);
  });
}

}  // namespace

void sgemm_batched_cuda(Trans ta, Trans tb, int64_t M, int64_t N, int64_t K, float alpha,
                        const float* A, int64_t lda, int64_t strideA, const float* B,
                        int64_t ldb, int64_t strideB, float beta, float* C, int64_t ldc,
                        int64_t strideC, int64_t batch, const GemmEpilogue& ep,
                        cudaStream_t stream) {
  check_args("sgemm_cuda", ta, tb, M, N, K, lda, ldb, ldc);
  if (batch < 0 || batch > 65535)
    fail_value("sgemm_batched_cuda: batch " + std::to_string(batch) + " outside [0, 65535]");
  if (M == 0 || N == 0 || batch == 0) return;
  const GemmParams p = make_params(M, N, K, alpha, A, lda, strideA, B, ldb, strideB, beta, C,
                                   ldc, strideC, ep);
  launch(ta == Trans::T, tb == Trans::T, p, (int)batch, stream);
}

void sgemm_epilogue_cuda(Trans ta, Trans tb, int64_t M, int64_t N, int64_t K, float alpha,
                         const float* A, int64_t lda, const float* B, int64_t ldb, float beta,
                         float* C, int64_t ldc, const GemmEpilogue& ep, cudaStream_t stream) {
  sgemm_batched_cuda(ta, tb, M, N, K, alpha, A, lda, 0, B, ldb, 0, beta, C, ldc, 0, 1, ep,
                     stream);
}

void sgemm_cuda(Trans ta, Trans tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc,
                cudaStream_t stream) {
  sgemm_epilogue_cuda(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, GemmEpilogue{},
                      stream);
}

int sgemm_splitk_count(int64_t M, int64_t N, int64_t K) {
  if (gemm_small(M, N, K)) return 1;  // no tiles to split
  // Enough slices for ~264 medium tiles (two waves on 132 SMs), each at least 128 deep.
  const int64_t tiles = std::max<int64_t>(1, ((M + 63) / 64) * ((N + 63) / 64));
  if (tiles >= 132) return 1;  // the output alone fills the machine
  const int64_t by_fill = (264 + tiles - 1) / tiles, by_depth = std::max<int64_t>(1, K / 128);
  return (int)std::max<int64_t>(1, std::min<int64_t>({by_fill, by_depth, 64}));
}

size_t sgemm_splitk_workspace(int64_t M, int64_t N, int splits) {
  return splits > 1 ? static_cast<size_t>(splits) * M * N : 0;
}

void sgemm_splitk_cuda(Trans ta, Trans tb, int64_t M, int64_t N, int64_t K, float alpha,
                       const float* A, int64_t lda, const float* B, int64_t ldb, float beta,
                       float* C, int64_t ldc, int splits, float* ws, const GemmEpilogue& ep,
                       cudaStream_t stream) {
  check_args("sgemm_splitk_cuda", ta, tb, M, N, K, lda, ldb, ldc);
  if (splits < 1 || splits > 65535)
    fail_value("sgemm_splitk_cuda: splits " + std::to_string(splits) + " outside [1, 65535]");
  if (M == 0 || N == 0) return;
  // Slices of whole 16-deep steps, so that every slice start keeps 16-byte alignment.
  int64_t ks = ((K + splits - 1) / splits + 15) / 16 * 16;
  int used = ks > 0 ? (int)((K + ks - 1) / ks) : 1;
  if (splits == 1 || used <= 1) {
    sgemm_epilogue_cuda(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, ep, stream);
    return;
  }
  const int64_t sA = ta == Trans::N ? ks : ks * lda, sB = tb == Trans::N ? ks * ldb : ks;
  GemmParams p = make_params(M, N, ks, 1.f, A, lda, sA, B, ldb, sB, 0.f, ws, N, M * N,
                             GemmEpilogue{});
  p.K_last = (int)(K - (used - 1) * ks);
  launch(ta == Trans::T, tb == Trans::T, p, used, stream);
  GemmParams r = make_params(M, N, K, alpha, A, lda, 0, B, ldb, 0, beta, C, ldc, 0, ep);
  splitk_reduce_kernel<<<column_sum_blocks(M * N), dim3(32, kColSumRows), 0, stream>>>(r, used,
                                                                                      ws);
  HC_CUDA_CHECK_LAUNCH("splitk_reduce_kernel");
}

}  // namespace hc
