// C (M,N) = alpha * op(A) (M,K) * op(B) (K,N) + beta * C, row-major, fp32 (see gemm_cuda.h)
//
// Production kernel: a BM x BN block tile is cut into WM x WN warp tiles; each thread owns a
// TM x TN register tile made of 4-wide pieces spaced across the warp tile, so its shared-memory
// reads are float4 and conflict-free. A and B tiles (BK deep) are staged k-major in shared
// memory, double-buffered: the next tile's global loads (16 bytes wide where the layout and
// alignment allow, guarded scalars otherwise) are in flight while the current tile is used.
// Transposed operands only change how a tile is loaded, never what is stored.
#include "gemm_cuda.h"

#include <algorithm>
#include <string>

#include "check.h"
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
  int vecA, vecB, vecC;      // 16-byte accesses are legal for this operand
};

__device__ __forceinline__ float apply_epilogue(const GemmParams& p, float acc, float c, int m,
                                                int n) {
  float v = p.alpha * acc;
  if (p.beta != 0.f) v += p.beta * c;
  if (p.bias_mode == 1) v += p.bias[m];
  else if (p.bias_mode == 2) v += p.bias[n];
  if (p.relu) v = v > 0.f ? v : (v != v ? v : 0.f);
  return v;
}

template <int BM, int BN, int BK, int WM, int WN, int TM, int TN, int MINB, bool TA, bool TB>
__global__ void __launch_bounds__((BM / WM) * (BN / WN) * 32, MINB)
    sgemm_tiled_kernel(const GemmParams p) {
  constexpr int kThreads = (BM / WM) * (BN / WN) * 32;
  constexpr int LR = WM / TM, LC = WN / TN;  // lanes along a warp tile's rows and columns
  static_assert(LR * LC == 32, "a warp's lanes must cover its tile");
  static_assert(TM % 4 == 0 && TN % 4 == 0, "register tiles are made of float4 pieces");
  constexpr int PA = TA ? 0 : 4, PB = TB ? 4 : 0;  // pad the transposed-store side: no conflicts
  constexpr int A4 = BM * BK / 4 / kThreads, B4 = BN * BK / 4 / kThreads;  // float4 per thread
  static_assert(A4 * kThreads * 4 == BM * BK && B4 * kThreads * 4 == BN * BK, "tile loads");

  __shared__ __align__(16) float As[2][BK][BM + PA];
  __shared__ __align__(16) float Bs[2][BK][BN + PB];

  const int z = blockIdx.z;
  const int K = (z == gridDim.z - 1) ? p.K_last : p.K;
  const float* A = p.A + z * p.sA;
  const float* B = p.B + z * p.sB;
  float* C = p.C + z * p.sC;
  const int m0 = blockIdx.y * BM, n0 = blockIdx.x * BN;
  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
  const int wm0 = (warp / (BN / WN)) * WM, wn0 = (warp % (BN / WN)) * WN;
  const int tr = lane / LC, tc = lane % LC;

  float4 ra[A4], rb[B4];

  // Global -> registers for the tile starting at k0.
  auto load_tiles = [&](int k0) {
#pragma unroll
    for (int l = 0; l < A4; ++l) {
      const int f = tid + l * kThreads;
      int m, k;
      if (!TA) { m = m0 + f / (BK / 4); k = k0 + (f % (BK / 4)) * 4; }  // 4 along k
      else     { k = k0 + f / (BM / 4); m = m0 + (f % (BM / 4)) * 4; }  // 4 along m
      float v[4];
      if (!TA) {
        if (p.vecA && m < p.M && k + 3 < K) {
          const float4 q = *reinterpret_cast<const float4*>(A + (int64_t)m * p.lda + k);
          v[0] = q.x; v[1] = q.y; v[2] = q.z; v[3] = q.w;
        } else {
#pragma unroll
          for (int i = 0; i < 4; ++i)
            v[i] = (m < p.M && k + i < K) ? A[(int64_t)m * p.lda + k + i] : 0.f;
        }
      } else {
        if (p.vecA && k < K && m + 3 < p.M) {
          const float4 q = *reinterpret_cast<const float4*>(A + (int64_t)k * p.lda + m);
          v[0] = q.x; v[1] = q.y; v[2] = q.z; v[3] = q.w;
        } else {
#pragma unroll
          for (int i = 0; i < 4; ++i)
            v[i] = (k < K && m + i < p.M) ? A[(int64_t)k * p.lda + m + i] : 0.f;
        }
      }
      ra[l] = make_float4(v[0], v[1], v[2], v[3]);
    }
#pragma unroll
    for (int l = 0; l < B4; ++l) {
      const int f = tid + l * kThreads;
      int n, k;
      if (!TB) { k = k0 + f / (BN / 4); n = n0 + (f % (BN / 4)) * 4; }  // 4 along n
      else     { n = n0 + f / (BK / 4); k = k0 + (f % (BK / 4)) * 4; }  // 4 along k
      float v[4];
      if (!TB) {
        if (p.vecB && k < K && n + 3 < p.N) {
          const float4 q = *reinterpret_cast<const float4*>(B + (int64_t)k * p.ldb + n);
          v[0] = q.x; v[1] = q.y; v[2] = q.z; v[3] = q.w;
        } else {
#pragma unroll
          for (int i = 0; i < 4; ++i)
            v[i] = (k < K && n + i < p.N) ? B[(int64_t)k * p.ldb + n + i] : 0.f;
        }
      } else {
        if (p.vecB && n < p.N && k + 3 < K) {
          const float4 q = *reinterpret_cast<const float4*>(B + (int64_t)n * p.ldb + k);
          v[0] = q.x; v[1] = q.y; v[2] = q.z; v[3] = q.w;
        } else {
#pragma unroll
          for (int i = 0; i < 4; ++i)
            v[i] = (n < p.N && k + i < K) ? B[(int64_t)n * p.ldb + k + i] : 0.f;
        }
      }
      rb[l] = make_float4(v[0], v[1], v[2], v[3]);
    }
  };

  // Registers -> shared buffer `buf`, k-major.
  auto store_tiles = [&](int buf) {
#pragma unroll
    for (int l = 0; l < A4; ++l) {
      const int f = tid + l * kThreads;
      if (!TA) {
        const int m = f / (BK / 4), k = (f % (BK / 4)) * 4;
        As[buf][k + 0][m] = ra[l].x;
        As[buf][k + 1][m] = ra[l].y;
        As[buf][k + 2][m] = ra[l].z;
        As[buf][k + 3][m] = ra[l].w;
      } else {
        const int k = f / (BM / 4), m = (f % (BM / 4)) * 4;
        *reinterpret_cast<float4*>(&As[buf][k][m]) = ra[l];
      }
    }
#pragma unroll
    for (int l = 0; l < B4; ++l) {
      const int f = tid + l * kThreads;
      if (!TB) {
        const int k = f / (BN / 4), n = (f % (BN / 4)) * 4;
        *reinterpret_cast<float4*>(&Bs[buf][k][n]) = rb[l];
      } else {
        const int n = f / (BK / 4), k = (f % (BK / 4)) * 4;
        Bs[buf][k + 0][n] = rb[l].x;
        Bs[buf][k + 1][n] = rb[l].y;
        Bs[buf][k + 2][n] = rb[l].z;
        Bs[buf][k + 3][n] = rb[l].w;
      }
    }
  };

  float acc[TM][TN];
#pragma unroll
  for (int i = 0; i < TM; ++i)
#pragma unroll
    for (int j = 0; j < TN; ++j) acc[i][j] = 0.f;

  const int ktiles = (K + BK - 1) / BK;
  if (ktiles > 0) {
    load_tiles(0);
    store_tiles(0);
    __syncthreads();
  }
  for (int kt = 0; kt < ktiles; ++kt) {
    const int cur = kt & 1;
    if (kt + 1 < ktiles) load_tiles((kt + 1) * BK);
#pragma unroll
    for (int k = 0; k < BK; ++k) {
      float a[TM], b[TN];
#pragma unroll
      for (int i = 0; i < TM / 4; ++i) {
        const float4 q = *reinterpret_cast<const float4*>(&As[cur][k][wm0 + i * LR * 4 + tr * 4]);
        a[i * 4 + 0] = q.x; a[i * 4 + 1] = q.y; a[i * 4 + 2] = q.z; a[i * 4 + 3] = q.w;
      }
#pragma unroll
      for (int j = 0; j < TN / 4; ++j) {
        const float4 q = *reinterpret_cast<const float4*>(&Bs[cur][k][wn0 + j * LC * 4 + tc * 4]);
        b[j * 4 + 0] = q.x; b[j * 4 + 1] = q.y; b[j * 4 + 2] = q.z; b[j * 4 + 3] = q.w;
      }
#pragma unroll
      for (int i = 0; i < TM; ++i)
#pragma unroll
        for (int j = 0; j < TN; ++j) acc[i][j] = fmaf(a[i], b[j], acc[i][j]);
    }
    if (kt + 1 < ktiles) store_tiles(cur ^ 1);
    __syncthreads();
  }

  // Epilogue: 4-wide column pieces, float4 stores where C allows.
#pragma unroll
  for (int i = 0; i < TM; ++i) {
    const int m = m0 + wm0 + (i / 4) * LR * 4 + tr * 4 + (i % 4);
    if (m >= p.M) continue;
    float* crow = C + (int64_t)m * p.ldc;
#pragma unroll
    for (int j4 = 0; j4 < TN / 4; ++j4) {
      const int n = n0 + wn0 + j4 * LC * 4 + tc * 4;
      if (p.vecC && n + 3 < p.N) {
        float4 c = make_float4(0.f, 0.f, 0.f, 0.f);
        if (p.beta != 0.f) c = *reinterpret_cast<const float4*>(crow + n);
        float4 o;
        o.x = apply_epilogue(p, acc[i][j4 * 4 + 0], c.x, m, n + 0);
        o.y = apply_epilogue(p, acc[i][j4 * 4 + 1], c.y, m, n + 1);
        o.z = apply_epilogue(p, acc[i][j4 * 4 + 2], c.z, m, n + 2);
        o.w = apply_epilogue(p, acc[i][j4 * 4 + 3], c.w, m, n + 3);
        *reinterpret_cast<float4*>(crow + n) = o;
      } else {
#pragma unroll
        for (int j = 0; j < 4; ++j) {
          if (n + j >= p.N) break;
          const float c = p.beta != 0.f ? crow[n + j] : 0.f;
          crow[n + j] = apply_epilogue(p, acc[i][j4 * 4 + j], c, m, n + j);
        }
      }
    }
  }
}

// Tile shapes: large (many output tiles), medium, and short ones for M <= 32 and M <= 16 (conv
// layers with few filters, small batches), all summing k in the same order.
enum class TileShape { Large, Medium, Short, Thin };

template <int BM, int BN, int BK, int WM, int WN, int TM, int TN, int MINB>
void launch_shape(bool ta, bool tb, const GemmParams& p, int batch, cudaStream_t stream) {
  constexpr int threads = (BM / WM) * (BN / WN) * 32;
  const dim3 grid((p.N + BN - 1) / BN, (p.M + BM - 1) / BM, batch);
  if (grid.y > 65535u) fail_value("sgemm_cuda: M = " + std::to_string(p.M) + " is too large");
  if (!ta && !tb) sgemm_tiled_kernel<BM, BN, BK, WM, WN, TM, TN, MINB, false, false><<<grid, threads, 0, stream>>>(p);
  if (!ta && tb) sgemm_tiled_kernel<BM, BN, BK, WM, WN, TM, TN, MINB, false, true><<<grid, threads, 0, stream>>>(p);
  if (ta && !tb) sgemm_tiled_kernel<BM, BN, BK, WM, WN, TM, TN, MINB, true, false><<<grid, threads, 0, stream>>>(p);
  if (ta && tb) sgemm_tiled_kernel<BM, BN, BK, WM, WN, TM, TN, MINB, true, true><<<grid, threads, 0, stream>>>(p);
  HC_CUDA_CHECK_LAUNCH("sgemm_tiled_kernel");
}

TileShape pick_shape(int64_t M, int64_t N, int64_t batch) {
  if (M <= 16) return TileShape::Thin;
  if (M <= 32) return TileShape::Short;
  const int64_t large_tiles = ((M + 127) / 128) * ((N + 127) / 128) * batch;
  return M > 64 && large_tiles >= 132 ? TileShape::Large : TileShape::Medium;
}

void launch(bool ta, bool tb, const GemmParams& p, int batch, cudaStream_t stream) {
  switch (pick_shape(p.M, p.N, batch)) {
    case TileShape::Large: launch_shape<128, 128, 8, 64, 32, 8, 8, 2>(ta, tb, p, batch, stream); break;
    case TileShape::Medium: launch_shape<64, 64, 16, 32, 32, 8, 4, 4>(ta, tb, p, batch, stream); break;
    case TileShape::Short: launch_shape<32, 128, 16, 32, 32, 8, 4, 3>(ta, tb, p, batch, stream); break;
    case TileShape::Thin: launch_shape<16, 128, 32, 16, 32, 4, 4, 3>(ta, tb, p, batch, stream); break;
  }
}

bool aligned16(const void* ptr) { return (reinterpret_cast<uintptr_t>(ptr) & 15u) == 0; }

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
  p.vecA = aligned16(A) && lda % 4 == 0 && sA % 4 == 0;
  p.vecB = aligned16(B) && ldb % 4 == 0 && sB % 4 == 0;
  p.vecC = aligned16(C) && ldc % 4 == 0 && sC % 4 == 0;
  return p;
}

// Sum of the split-K partials in slice order, then the epilogue.  ws (S,M,N) -> C (M,N)
__global__ void splitk_reduce_kernel(const GemmParams p, int splits, const float* ws) {
  const int64_t total = (int64_t)p.M * p.N;
  for (int64_t idx = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; idx < total;
       idx += (int64_t)gridDim.x * blockDim.x) {
    float s = 0.f;
    for (int z = 0; z < splits; ++z) s += ws[z * total + idx];
    const int m = (int)(idx / p.N), n = (int)(idx % p.N);
    float* c = p.C + (int64_t)m * p.ldc + n;
    *c = apply_epilogue(p, s, p.beta != 0.f ? *c : 0.f, m, n);
  }
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
  const int64_t total = M * N;
  const int blocks = (int)std::min<int64_t>((total + 255) / 256, 4096);
  splitk_reduce_kernel<<<blocks, 256, 0, stream>>>(r, used, ws);
  HC_CUDA_CHECK_LAUNCH("splitk_reduce_kernel");
}

}  // namespace hc
