// Convolution as an implicit GEMM: the tiled GEMM kernel (gemm_tile.cuh) reads its operands
// straight from x, w and dy, gathering each im2col entry when a tile is loaded, so the unrolled
// (C*K*K, N*Ho*Wo) matrix is never written to device memory. Columns of the GEMM run over the
// whole batch (j = n*Ho*Wo + p), so one launch covers every image without a partial tile each.
// Deterministic: every output is summed in a fixed order, no atomics.
#pragma once
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "heterocnn/im2col.h"

namespace hc {

// x (N,C,H,W), w (M,C,K,K), b (M,) or null -> y (N,M,Ho,Wo), y = relu(conv + b) when relu.
void conv2d_implicit_forward_cuda(const ConvGeom& g, int64_t N, int64_t M, const float* x,
                                  const float* w, const float* b, bool relu, float* y,
                                  cudaStream_t stream);

// x (N,C,H,W), dy (N,M,Ho,Wo) -> dw (M,C,K,K), db (M,) (or null), overwritten. The N*Ho*Wo sum is
// cut into slices whose partial (dw | db) products go to ws and are then added in slice order.
size_t conv2d_implicit_wgrad_workspace(const ConvGeom& g, int64_t N, int64_t M);
void conv2d_implicit_wgrad_cuda(const ConvGeom& g, int64_t N, int64_t M, const float* x,
                                const float* dy, float* dw, float* db, float* ws,
                                cudaStream_t stream);

// dy (N,M,Ho,Wo), w (M,C,K,K) -> dx (N,C,H,W), overwritten: a stride-1 convolution of dy with
// the flipped, transposed kernel (held in ws) and padding K-1-pad. Only for geometries where
// conv2d_implicit_dgrad_fits (stride 1, pad < K). With mask (N,C,H,W) not null,
// dx = mask > 0 ? dx : 0: the backward of a ReLU whose output (this layer's x) mask is.
bool conv2d_implicit_dgrad_fits(const ConvGeom& g);
size_t conv2d_implicit_dgrad_workspace(const ConvGeom& g, int64_t M);
void conv2d_implicit_dgrad_cuda(const ConvGeom& g, int64_t N, int64_t M, const float* w,
                                const float* dy, const float* mask, float* dx, float* ws,
                                cudaStream_t stream);

}  // namespace hc
