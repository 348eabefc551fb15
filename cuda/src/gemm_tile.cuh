// The tiled fp32 GEMM kernel, C (M,N) = op(A) (M,K) * op(B) (K,N) per batch entry z, written
// once over an operand access policy `Acc`, so that the same kernel multiplies dense matrices
// (gemm.cu) and convolutions whose operands are gathered from images on the fly (implicit GEMM,
// conv_gemm.cu). Acc provides:
//   int M, N;                                   output size
//   int depth(int z)                            K of batch entry z
//   float4 load_a<TA>(int z, int m, int k, int K)   op(A)[m][k..k+3] (TA false) or
//                                                   op(A)[m..m+3][k] (TA true), 0 outside
//   float4 load_b<TB>(int z, int k, int n, int K)   op(B)[k][n..n+3] (TB false) or
//                                                   op(B)[k..k+3][n] (TB true), 0 outside
//                                                   (not needed with a cursor, below)
//   void store(int z, int m, int n, float4 acc)      C[m][n..n+3] (columns >= N dropped)
// and optionally, for TB false, a column cursor (the Acc names a type ColCursor):
//   ColCursor col_cursor(int z, int n)                  per-thread state for columns n..n+3
//   float4 load_b_cursor(const ColCursor&, int k, int K) op(B)[k][n..n+3] through it
// Each thread loads the same 4 columns of B at every k-tile (the thread count is a multiple of
// BN/4), so a policy that gathers B (implicit GEMM) decodes its columns once per thread.
//
// A BM x BN block tile is cut into WM x WN warp tiles; each thread owns a TM x TN register tile
// made of 4-wide pieces spaced across the warp tile, so its shared-memory reads are float4 and
// conflict-free. A and B tiles (BK deep) are staged k-major in shared memory, double-buffered:
// the next tile's global loads are in flight while the current tile is used.
// With KS > 1 the block has KS warp groups, each covering the whole output tile: group g takes
// k steps [g*BK/KS, (g+1)*BK/KS) of every shared tile, and at the end groups 1..KS-1 hand their
// sums to group 0 through shared memory. That doubles (KS = 2) the warps per multiprocessor for
// the same tiles, for launches too small to put more than one block of 4 warps on most of them.
// Every output is summed in a fixed order (per group in ascending k, then the groups in order),
// whatever the launch.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>
#include <string>
#include <type_traits>

#include "check.h"
#include "heterocnn/error.h"

namespace hc {

// Whether a pointer allows the accessors' 16-byte (float4) loads and stores.
inline bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15u) == 0; }

struct NoColCursor {};
template <class Acc, class = void>
struct ColCursorOf {
  using type = NoColCursor;
  static constexpr bool value = false;
};
template <class Acc>
struct ColCursorOf<Acc, std::void_t<typename Acc::ColCursor>> {
  using type = typename Acc::ColCursor;
  static constexpr bool value = true;
};

// For TB true, a policy may name RowCursor and KCursor instead: each thread loads the same
// rows n of op(B)'s transpose at every k-tile and the same k offset, moving by BK per tile:
//   RowCursor row_cursor(int z, int n); KCursor k_cursor(int z, int k); void k_advance(KCursor&, int)
//   float4 load_b_rows(const RowCursor&, const KCursor&, int k, int K)   op(B)[k..k+3][n]
template <class Acc, class = void>
struct RowCursorOf {
  using row = NoColCursor;
  using kc = NoColCursor;
  static constexpr bool value = false;
};
template <class Acc>
struct RowCursorOf<Acc, std::void_t<typename Acc::RowCursor>> {
  using row = typename Acc::RowCursor;
  using kc = typename Acc::KCursor;
  static constexpr bool value = true;
};

// Optionally (for TA false) a policy that names `static constexpr bool kRowSums = true` also
// gets the sums over k of its rows of op(A), from the blocks of the first column tile, each
// summed in ascending k: void store_row_sum(int z, int m, float sum) (a bias gradient).
template <class Acc, class = void>
struct RowSumsOf {
  static constexpr bool value = false;
};
template <class Acc>
struct RowSumsOf<Acc, std::void_t<decltype(Acc::kRowSums)>> {
  static constexpr bool value = Acc::kRowSums;
};

template <int BM, int BN, int BK, int WM, int WN, int TM, int TN, int MINB, int KS, bool TA,
          bool TB, class Acc>
__global__ void __launch_bounds__((BM / WM) * (BN / WN) * 32 * KS, MINB)
    sgemm_tiled_kernel(const Acc acc) {
  constexpr int kGroup = (BM / WM) * (BN / WN) * 32;  // threads of one warp group
  constexpr int kThreads = kGroup * KS;
  constexpr int KG = BK / KS;                         // k steps of a shared tile per group
  static_assert(KG * KS == BK, "the groups share a tile's k steps evenly");
  constexpr int LR = WM / TM, LC = WN / TN;  // lanes along a warp tile's rows and columns
  static_assert(LR * LC == 32, "a warp's lanes must cover its tile");
  static_assert(TM % 4 == 0 && TN % 4 == 0, "register tiles are made of float4 pieces");
  constexpr int PA = TA ? 0 : 4, PB = TB ? 4 : 0;  // pad the transposed-store side: no conflicts
  constexpr int A4 = BM * BK / 4 / kThreads, B4 = BN * BK / 4 / kThreads;  // float4 per thread
  static_assert(A4 * kThreads * 4 == BM * BK && B4 * kThreads * 4 == BN * BK, "tile loads");

  // The double-buffered A and B tiles; after the last k-tile, the groups' hand-over.
  constexpr int kStage = 2 * BK * (BM + PA) + 2 * BK * (BN + PB);
  constexpr int kHand = (KS - 1) * BM * BN;
  __shared__ __align__(16) float smem[kStage > kHand ? kStage : kHand];
  auto As = reinterpret_cast<float (*)[BK][BM + PA]>(smem);
  auto Bs = reinterpret_cast<float (*)[BK][BN + PB]>(smem + 2 * BK * (BM + PA));

  const int z = blockIdx.z;
  const int K = acc.depth(z);
  const int m0 = blockIdx.y * BM, n0 = blockIdx.x * BN;
  const int tid = threadIdx.x, warp = (tid % kGroup) / 32, lane = tid % 32;
  const int group = tid / kGroup;
  const int wm0 = (warp / (BN / WN)) * WM, wn0 = (warp % (BN / WN)) * WN;
  const int tr = lane / LC, tc = lane % LC;

  float4 ra[A4], rb[B4];

  constexpr bool kCursor = !TB && ColCursorOf<Acc>::value;
  static_assert(!kCursor || kThreads % (BN / 4) == 0, "a cursor needs fixed columns per thread");
  typename ColCursorOf<Acc>::type bcur;
  if constexpr (kCursor) bcur = acc.col_cursor(z, n0 + (tid % (BN / 4)) * 4);
  constexpr bool kRows = TB && RowCursorOf<Acc>::value;
  static_assert(!kRows || kThreads % (BK / 4) == 0, "a row cursor needs a fixed k offset");
  typename RowCursorOf<Acc>::row brow[kRows ? B4 : 1];
  typename RowCursorOf<Acc>::kc bk;
  if constexpr (kRows) {
#pragma unroll
    for (int l = 0; l < B4; ++l) brow[l] = acc.row_cursor(z, n0 + (tid + l * kThreads) / (BK / 4));
    bk = acc.k_cursor(z, (tid % (BK / 4)) * 4);
  }

  // Global -> registers for the tile starting at k0.
  auto load_tiles = [&](int k0) {
#pragma unroll
    for (int l = 0; l < A4; ++l) {
      const int f = tid + l * kThreads;
      if (!TA) ra[l] = acc.template load_a<TA>(z, m0 + f / (BK / 4), k0 + (f % (BK / 4)) * 4, K);
      else     ra[l] = acc.template load_a<TA>(z, m0 + (f % (BM / 4)) * 4, k0 + f / (BM / 4), K);
    }
#pragma unroll
    for (int l = 0; l < B4; ++l) {
      const int f = tid + l * kThreads;
      if constexpr (kCursor) rb[l] = acc.load_b_cursor(bcur, k0 + f / (BN / 4), K);
      else if constexpr (kRows) rb[l] = acc.load_b_rows(brow[l], bk, k0 + (f % (BK / 4)) * 4, K);
      else if (!TB) rb[l] = acc.template load_b<TB>(z, k0 + f / (BN / 4), n0 + (f % (BN / 4)) * 4, K);
      else     rb[l] = acc.template load_b<TB>(z, k0 + (f % (BK / 4)) * 4, n0 + f / (BK / 4), K);
    }
    if constexpr (kRows) acc.k_advance(bk, BK);
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

  constexpr bool kRowSums = RowSumsOf<Acc>::value;
  static_assert(!kRowSums || (!TA && BM <= kThreads), "row sums: one thread per row of A");
  const bool row_summer = kRowSums && blockIdx.x == 0 && tid < BM;
  float row_sum = 0.f;

  float c[TM][TN];
#pragma unroll
  for (int i = 0; i < TM; ++i)
#pragma unroll
    for (int j = 0; j < TN; ++j) c[i][j] = 0.f;

  const int ktiles = (K + BK - 1) / BK;
  if (ktiles > 0) {
    load_tiles(0);
    store_tiles(0);
    __syncthreads();
  }
  for (int kt = 0; kt < ktiles; ++kt) {
    const int cur = kt & 1;
    if (kt + 1 < ktiles) load_tiles((kt + 1) * BK);
    if constexpr (kRowSums) {
      if (row_summer) {
#pragma unroll
        for (int k = 0; k < BK; ++k) row_sum += As[cur][k][tid];
      }
    }
#pragma unroll
    for (int kk = 0; kk < KG; ++kk) {
      const int k = group * KG + kk;
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
        for (int j = 0; j < TN; ++j) c[i][j] = fmaf(a[i], b[j], c[i][j]);
    }
    if (kt + 1 < ktiles) store_tiles(cur ^ 1);
    __syncthreads();
  }

  if constexpr (kRowSums) {
    if (row_summer && m0 + tid < acc.M) acc.store_row_sum(z, m0 + tid, row_sum);
  }

  if constexpr (KS > 1) {  // groups 1.. hand their sums to group 0 (the loop ended synced)
    const int t = tid % kGroup;
    if (group > 0) {
#pragma unroll
      for (int i = 0; i < TM; ++i)
#pragma unroll
        for (int j = 0; j < TN; ++j) smem[(((group - 1) * TM + i) * TN + j) * kGroup + t] = c[i][j];
    }
    __syncthreads();
    if (group > 0) return;
#pragma unroll
    for (int g = 1; g < KS; ++g)
#pragma unroll
      for (int i = 0; i < TM; ++i)
#pragma unroll
        for (int j = 0; j < TN; ++j) c[i][j] += smem[(((g - 1) * TM + i) * TN + j) * kGroup + t];
  }

  // Epilogue: 4-wide column pieces.
#pragma unroll
  for (int i = 0; i < TM; ++i) {
    const int m = m0 + wm0 + (i / 4) * LR * 4 + tr * 4 + (i % 4);
    if (m >= acc.M) continue;
#pragma unroll
    for (int j4 = 0; j4 < TN / 4; ++j4) {
      const int n = n0 + wn0 + j4 * LC * 4 + tc * 4;
      if (n < acc.N)
        acc.store(z, m, n, make_float4(c[i][j4 * 4 + 0], c[i][j4 * 4 + 1], c[i][j4 * 4 + 2],
                                       c[i][j4 * 4 + 3]));
    }
  }
}

// Tile shapes: large (many output tiles), medium, and short ones for M <= 32 and M <= 16 (conv
// layers with few filters, small batches), all summing k in the same order.
enum class TileShape { Large, Medium, Short, Thin };

inline TileShape pick_tile_shape(int64_t M, int64_t N, int64_t batch) {
  if (M <= 16) return TileShape::Thin;
  if (M <= 32) return TileShape::Short;
  const int64_t large_tiles = ((M + 127) / 128) * ((N + 127) / 128) * batch;
  return M > 64 && large_tiles >= 132 ? TileShape::Large : TileShape::Medium;
}

// Output tile (rows, columns) of a shape, for counting a launch's tiles.
inline void tile_extent(TileShape s, int& bm, int& bn) {
  switch (s) {
    case TileShape::Large: bm = 128; bn = 128; return;
    case TileShape::Medium: bm = 64; bn = 64; return;
    case TileShape::Short: bm = 32; bn = 128; return;
    case TileShape::Thin: bm = 16; bn = 128; return;
  }
}

// Multiprocessors of the current device (read when a launch is enqueued, not in a replay).
inline int multiprocessors() {
  int device = 0, sms = 0;
  HC_CUDA_CHECK(cudaGetDevice(&device));
  HC_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
  return sms;
}

template <int BM, int BN, int BK, int WM, int WN, int TM, int TN, int MINB, int KS, bool TA,
          bool TB, class Acc>
void launch_tile(const Acc& acc, int batch, cudaStream_t stream) {
  constexpr int threads = (BM / WM) * (BN / WN) * 32 * KS;
  const dim3 grid((acc.N + BN - 1) / BN, (acc.M + BM - 1) / BM, batch);
  if (grid.y > 65535u) fail_value("sgemm_cuda: M = " + std::to_string(acc.M) + " is too large");
  sgemm_tiled_kernel<BM, BN, BK, WM, WN, TM, TN, MINB, KS, TA, TB>
      <<<grid, threads, 0, stream>>>(acc);
  HC_CUDA_CHECK_LAUNCH("sgemm_tiled_kernel");
}

// Whether `blocks` tiles are at most two per multiprocessor: most of them then hold one or
// two blocks, too few warps to hide a tile's load and shared-memory latencies.
inline bool few_blocks(int64_t blocks) { return blocks <= 2 * int64_t(multiprocessors()); }

inline int64_t tile_count(int64_t M, int64_t N, int batch, int bm, int bn) {
  return ((M + bm - 1) / bm) * ((N + bn - 1) / bn) * batch;
}

// One launch of `batch` GEMMs through `acc`, with the tile shape picked from (M, N, batch).
// Medium and Short tiles get two warp groups (KS = 2: 2 blocks of 8 warps per multiprocessor)
// when they are few (cuda/dev/CONV_NOTES.md v6).
template <bool TA, bool TB, class Acc>
void launch_tiled(const Acc& acc, int batch, cudaStream_t stream) {
  if (acc.M == 0 || acc.N == 0 || batch == 0) return;
  const TileShape shape = pick_tile_shape(acc.M, acc.N, batch);
  int bm, bn;
  tile_extent(shape, bm, bn);
  const bool two_groups = few_blocks(tile_count(acc.M, acc.N, batch, bm, bn));
  switch (shape) {
    case TileShape::Large:
      launch_tile<128, 128, 8, 64, 32, 8, 8, 2, 1, TA, TB>(acc, batch, stream);
      break;
    case TileShape::Medium:
      if (two_groups)
        launch_tile<64, 64, 16, 32, 32, 8, 4, 2, 2, TA, TB>(acc, batch, stream);
      else
        launch_tile<64, 64, 16, 32, 32, 8, 4, 4, 1, TA, TB>(acc, batch, stream);
      break;
    case TileShape::Short:  // with two groups: 32 deep, so that each still takes 16 k steps
      if (two_groups)
        launch_tile<32, 128, 32, 32, 32, 8, 4, 2, 2, TA, TB>(acc, batch, stream);
      else
        launch_tile<32, 128, 16, 32, 32, 8, 4, 3, 1, TA, TB>(acc, batch, stream);
      break;
    case TileShape::Thin:
      launch_tile<16, 128, 32, 16, 32, 4, 4, 3, 1, TA, TB>(acc, batch, stream);
      break;
  }
}

}  // namespace hc
