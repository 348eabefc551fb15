// A warp's fp32 tile product on tensor cores with 3xTF32 error compensation, for
// sgemm_tiled_kernel (gemm_tile.cuh) on devices of compute capability 8.0 and newer.
//   C (WM, WN) += A (WM, 8) * B (8, WN) per step; A read column-major (A[m][k] at a[k*lda + m]),
//   B row-major (B[k][n] at b[k*ldb + n]) from shared memory, C in (WM/16) x (WN/16) wmma
//   accumulator fragments of 16 x 16 (fp32).
// Each fp32 operand x is split into x_hi = tf32(x) and x_lo = tf32(x - x_hi) (round to
// nearest), and a*b is taken as a_lo*b_hi + a_hi*b_lo + a_hi*b_hi (the small terms first); the
// dropped a_lo*b_lo and the rounding of x_lo leave about 2^-22 of each product, the order of
// fp32's own rounding, so the sums carry fp32's accuracy (measured against fp64 by
// cuda/dev/test_ops_cuda.cu) while the multiplies run on the tensor cores.
// An operand that is inf or NaN makes x - x_hi NaN: a product with one is NaN (FFMA gives inf).
#pragma once
#include <cuda_runtime.h>
#include <mma.h>

namespace hc {

// The epilogue's staging of one 16 x 16 fragment per warp, rows padded to kStageLd floats.
constexpr int kStageLd = 20;
constexpr int kStageFloats = 16 * kStageLd;

#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 800

template <int WM, int WN>
struct Tf32x3WarpTile {
  static_assert(WM % 16 == 0 && WN % 16 == 0, "warp tiles are made of 16 x 16 fragments");
  static constexpr int FM = WM / 16, FN = WN / 16;
  using Acc = nvcuda::wmma::fragment<nvcuda::wmma::accumulator, 16, 16, 8, float>;
  using FragA = nvcuda::wmma::fragment<nvcuda::wmma::matrix_a, 16, 16, 8,
                                       nvcuda::wmma::precision::tf32, nvcuda::wmma::col_major>;
  using FragB = nvcuda::wmma::fragment<nvcuda::wmma::matrix_b, 16, 16, 8,
                                       nvcuda::wmma::precision::tf32, nvcuda::wmma::row_major>;
  static constexpr int kElems = FM * FN * Acc::num_elements;  // accumulators per lane

  Acc c[FM][FN];

  __device__ void zero() {
#pragma unroll
    for (int i = 0; i < FM; ++i)
#pragma unroll
      for (int j = 0; j < FN; ++j) nvcuda::wmma::fill_fragment(c[i][j], 0.f);
  }

  // hi = tf32(x), lo = tf32(x - hi), element by element (both fragments share one layout).
  template <class Frag>
  __device__ static void split(Frag& hi, Frag& lo) {
#pragma unroll
    for (int t = 0; t < Frag::num_elements; ++t) {
      const float x = hi.x[t];
      const float h = nvcuda::wmma::__float_to_tf32(x);
      hi.x[t] = h;
      lo.x[t] = nvcuda::wmma::__float_to_tf32(x - h);
    }
  }

  // One k step of 8. a, b and lda, ldb must allow wmma's loads: 32-byte aligned pointers,
  // leading dimensions multiples of 4 floats.
  __device__ void step(const float* a, int lda, const float* b, int ldb) {
    FragB bh[FN], bl[FN];
#pragma unroll
    for (int j = 0; j < FN; ++j) {
      nvcuda::wmma::load_matrix_sync(bh[j], b + j * 16, ldb);
      split(bh[j], bl[j]);
    }
#pragma unroll
    for (int i = 0; i < FM; ++i) {
      FragA ah, al;
      nvcuda::wmma::load_matrix_sync(ah, a + i * 16, lda);
      split(ah, al);
#pragma unroll
      for (int j = 0; j < FN; ++j) {
        nvcuda::wmma::mma_sync(c[i][j], al, bh[j], c[i][j]);
        nvcuda::wmma::mma_sync(c[i][j], ah, bl[j], c[i][j]);
        nvcuda::wmma::mma_sync(c[i][j], ah, bh[j], c[i][j]);
      }
    }
  }

  // Accumulator e of this lane (0 <= e < kElems): the same output in every warp's tile, so
  // warp groups covering one tile can add theirs element by element.
  __device__ float& elem(int e) {
    return c[e / (FN * Acc::num_elements)][(e / Acc::num_elements) % FN].x[e % Acc::num_elements];
  }

  // Hands the tile to out(r, col, float4 of C[r][col..col+3]) for 0 <= r < WM and col a
  // multiple of 4 below WN, each fragment through `stage` (kStageFloats of this warp's shared
  // memory, 32-byte aligned). Every lane of the warp must call it.
  template <class Out>
  __device__ void store(float* stage, int lane, Out out) const {
    const int r = lane / 2, c0 = (lane % 2) * 8;
#pragma unroll
    for (int i = 0; i < FM; ++i)
#pragma unroll
      for (int j = 0; j < FN; ++j) {
        nvcuda::wmma::store_matrix_sync(stage, c[i][j], kStageLd, nvcuda::wmma::mem_row_major);
        __syncwarp();
        out(i * 16 + r, j * 16 + c0, *reinterpret_cast<const float4*>(stage + r * kStageLd + c0));
        out(i * 16 + r, j * 16 + c0 + 4,
            *reinterpret_cast<const float4*>(stage + r * kStageLd + c0 + 4));
        __syncwarp();
      }
  }
};

#else  // no tensor-core TF32 before compute capability 8.0: never launched there

template <int WM, int WN>
struct Tf32x3WarpTile {
  static constexpr int kElems = 1;
  float dummy;
  __device__ void zero() { __trap(); }
  __device__ void step(const float*, int, const float*, int) { __trap(); }
  __device__ float& elem(int) { return dummy; }
  template <class Out>
  __device__ void store(float*, int, Out) const { __trap(); }
};

#endif

}  // namespace hc
