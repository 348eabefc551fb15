// Unrolling of convolution windows into a matrix, so that a convolution becomes a GEMM.
//   im2col: x (C,H,W) -> col (C*K*K, Ho*Wo), zero where the window hangs over the padding.
//   col2im: col (C*K*K, Ho*Wo) -> x (C,H,W), the adjoint of im2col: x is overwritten with the
//           sum of every col entry that im2col would have read from it.
//   im2row: x (C,H,W) -> row (Ho*Wo, C*K*K), the transpose of im2col's matrix: each output
//           position's window contiguous (the layout a GEMM reducing over positions reads
//           without repacking).
#pragma once
#include <cstdint>

namespace hc {

// Geometry of a square-kernel convolution over one image.
struct ConvGeom {
  int64_t C, H, W;        // input channels and size
  int64_t K, stride, pad;  // square kernel, stride, zero padding on every side
  int64_t Ho, Wo;         // output size: (H + 2*pad - K) / stride + 1, likewise Wo
  int64_t col_rows() const { return C * K * K; }
  int64_t col_cols() const { return Ho * Wo; }
};

ConvGeom make_conv_geom(int64_t C, int64_t H, int64_t W, int64_t K, int64_t stride, int64_t pad);

// ld: the distance between col's rows, at least Ho*Wo (0 means Ho*Wo), so that the samples of
// a group can be unrolled side by side into one matrix (C*K*K, samples*Ho*Wo), sample s at
// column s*Ho*Wo, for one GEMM over all of them.
void im2col_cpu(const ConvGeom& g, const float* x, float* col, int64_t ld = 0);
void col2im_cpu(const ConvGeom& g, const float* col, float* x, int64_t ld = 0);
void im2row_cpu(const ConvGeom& g, const float* x, float* row);

}  // namespace hc
