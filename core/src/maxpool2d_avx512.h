// Internal to maxpool2d.cpp: 2x2, stride-2 max pooling of one plane with W <= 32, AVX-512F
// (maxpool2d_avx512.cpp). Same results as the portable path, bit for bit: the first maximum
// of each window in tap order (a NaN wins), dx written whole (the gradient or 0).
//   forward:  x (H,W) -> y (H/2, W/2)
//   backward: x (H,W), dy (H/2, W/2) -> dx (H,W); relu_mask: also 0 where x is not > 0
#pragma once
#include <cstdint>

namespace hc::maxpool_avx512 {

constexpr int64_t kMaxWidth = 32;

void forward_2x2(int64_t H, int64_t W, const float* x, float* y);
void backward_2x2(int64_t H, int64_t W, const float* x, const float* dy, float* dx,
                  bool relu_mask);

}  // namespace hc::maxpool_avx512
