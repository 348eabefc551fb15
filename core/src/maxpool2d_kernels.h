// Internal to maxpool2d.cpp: 2x2, stride-2 max pooling of one plane with W <= 32, one
// translation unit per instruction set (maxpool2d_avx512.cpp, maxpool2d_avx2.cpp), chosen at
// run time in maxpool2d.cpp. Same results as the portable path, bit for bit: the first maximum
// of each window in tap order (a NaN wins), dx written whole (the gradient or 0).
//   forward:  x (H,W) -> y (H/2, W/2)
//   backward: x (H,W), dy (H/2, W/2) -> dx (H,W); relu_mask: also 0 where x is not > 0
#pragma once
#include <cstdint>

namespace hc::maxpool_2x2 {

constexpr int64_t kMaxWidth = 32;

struct Kernels {
  void (*forward)(int64_t H, int64_t W, const float* x, float* y);
  void (*backward)(int64_t H, int64_t W, const float* x, const float* dy, float* dx,
                   bool relu_mask);
};

const Kernels& kernels_avx512();  // maxpool2d_avx512.cpp: AVX-512F
const Kernels& kernels_avx2();    // maxpool2d_avx2.cpp: AVX2

// The kernels of the widest instruction set this CPU runs, or those force_kernels chose; null
// where there are none (maxpool2d.cpp).
const Kernels* kernels();

// Test hook: use the kernels built for this instruction set ("avx512", "avx2") if this CPU runs
// it (returns whether it does), or none ("portable": maxpool2d.cpp's loops); nullptr: the
// widest this CPU runs, as at start.
bool force_kernels(const char* name);

}  // namespace hc::maxpool_2x2
