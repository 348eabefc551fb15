// Internal to conv2d.cpp: Winograd F(2x2, 3x3) convolutions for 3x3, stride-1 layers.
//   forward:     x (n,C,H,W), U (16,C,M), b (M,) or none -> y (n,M,Ho,Wo)
//   weight_grad: x (n,C,H,W), dy (n,M,Ho,Wo) -> dU (16,M,C) +=
// The output is cut into 2 x 2 tiles, each computed from the 4 x 4 input patch under it
// (Lavin and Gray, "Fast Algorithms for Convolutional Neural Networks", 2016):
//   y_tile = A^T [ sum_c (G w_mc G^T) o (B^T d_c B) ] A,
// o the elementwise product of 4 x 4 matrices. The sum over c at each of the 16 positions xi of
// those matrices is a GEMM, U_xi^T (M,C) * V_xi (C, tiles), so a tile costs 16 M C multiplies
// instead of the 36 M C of its four outputs computed directly: 2.25x fewer where 2 divides Ho
// and Wo (7 x 7: 16 tiles for 49 outputs, 1.7x). The transforms are additions (and halves, in
// G), vectorised along the tiles. The weight gradient runs the same algebra backwards:
//   dU_xi += (A dy_tile A^T)_xi V_xi^T over the tiles, then dw = G^T dU G.
// The input gradient is the forward of dy with the kernel flipped and its channels swapped
// (transform_weights' `for_dx`), padded by 2 - pad. The transforms are built for AVX-512F and
// for AVX2 + FMA (conv_winograd_kernels.h), the widest this CPU runs chosen at run time;
// conv2d.cpp checks available() and the geometry (fits) before calling forward or weight_grad.
#pragma once
#include <cstddef>
#include <cstdint>

#include "heterocnn/im2col.h"

namespace hc::conv_winograd {

// 3x3 kernels at stride 1; padding at most 2, so that the input gradient's padding 2 - pad is
// one too.
inline bool fits(const ConvGeom& g) { return g.K == 3 && g.stride == 1 && g.pad <= 2; }

// Whether this CPU runs one of the transforms' instruction sets (AVX-512F, or AVX2 with FMA).
bool available();

// Test hook: run the transforms built for this instruction set ("avx512", "avx2") if this CPU
// can, returning whether it did; nullptr goes back to the widest the CPU runs. Not
// thread-safe: call it only while no convolution is running.
bool force_transforms(const char* name);

// How forward and weight_grad cut one thread's tiles into blocks.
struct Tiling {
  int64_t TH, TW;  // tile rows and columns of one output plane
  int64_t rows;    // tile rows per block (its capacity)
  int64_t tiles() const { return rows * TW; }
  // Floats from one position xi's matrix (channels, tiles) of a block to the next: whole cache
  // lines and one more, so that the 16 rows a transform reads or writes at once (one a
  // position) do not fall into the same L1 sets when the matrix is a multiple of 4 KiB.
  int64_t plane(int64_t channels) const { return (channels * tiles() + 15) / 16 * 16 + 16; }
};

// Tile rows a block: as many as keep its V and products (or gradients) within half of the L2.
// Where the block's tiles are its GEMMs' columns (forward, and dx as a forward pass), from half
// that many up, the count whose tiles best fill the GEMM kernel's tiles of NR columns, the
// largest of equals: 10 tile rows of a 7 x 7 image, 40 tiles, would run one kernel tile of 32
// columns and one of 8; 8 rows fill one and one (CPU_PERF.md, entry 20). In dw the tiles are
// the GEMMs' depth (K): there, the more the better.
Tiling tiling(const ConvGeom& g, int64_t M, bool tiles_are_columns);

// The 16 GEMMs of one block of T tiles, on the block's matrices as forward and weight_grad lay
// them out (V (16, C, block tiles), P or D (16, M, block tiles), each position xi's matrix
// t.plane() floats from the next): forward's P_xi = U_xi^T V_xi, weight_grad's dU_xi +=
// D_xi V_xi^T. (tests/cpp/time_winograd times them apart from the transforms.)
void forward_gemms(const ConvGeom& g, const Tiling& t, int64_t M, int64_t T, const float* U,
                   const float* V, float* P);
void weight_grad_gemms(const ConvGeom& g, const Tiling& t, int64_t M, int64_t T, const float* D,
                       const float* V, float* dU);

// Floats of the transformed weights U (16, C, M), and of dU (16, M, C).
inline size_t transformed_size(int64_t M, int64_t C) {
  return static_cast<size_t>(16 * M * C);
}

// U[xi][c][m] = (G w[m][c] G^T)[xi] for w (M,C,3,3), each position's matrix transposed so
// that the GEMM reads it in place. for_dx: the weights of the input gradient's forward
// instead, U[xi][m][c] = (G w'[c][m] G^T)[xi] with w'[c][m][kh][kw] = w[m][c][2-kh][2-kw].
void transform_weights(int64_t M, int64_t C, const float* w, bool for_dx, float* U);

// dw (M,C,3,3) = G^T dU[m][c] G for each (m, c), dU (16,M,C) as weight_grad sums it.
// Both weight transforms spread large layers over the OpenMP threads: call them outside a
// parallel region.
void weights_from_transformed(int64_t M, int64_t C, const float* dU, float* dw);

// Floats of one thread's scratch for forward and weight_grad of this geometry (M output
// channels): a block of tiles' transformed input and output, sized from the L2 the CPU
// reports, and the rows the transforms go through.
size_t scratch_size(const ConvGeom& g, int64_t M);

// For each of `count` samples, y = conv(x, w) (+ b when b is not null), then max(., 0) when
// relu (NaN kept), with U = transform_weights(M, g.C, w, false). Single-threaded: the caller
// splits the batch.
void forward(const ConvGeom& g, int64_t M, int64_t count, const float* x, const float* U,
             const float* b, float* y, bool relu, float* scratch);

// dU (16,M,C) += the transformed weight gradient of `count` samples (see above).
void weight_grad(const ConvGeom& g, int64_t M, int64_t count, const float* x, const float* dy,
                 float* dU, float* scratch);

}  // namespace hc::conv_winograd
