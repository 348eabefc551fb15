// x (n,C,H,W), wt (C*K*K,M), b (M,) -> y (n,M,Ho,Wo);  x (n,C,H,W), dy (n,M,Ho,Wo) -> dw (M,C*K*K)
// The direct convolution kernels' one dispatch point (conv_direct.h): the widest instruction
// set's table (conv_direct_kernels.h), and within it the channel-vector kernels where the output
// is narrow and its channels fill whole vectors, else the row and flat kernels.
#include "conv_direct.h"

#include "conv_direct_kernels.h"
#include "cpu_features.h"

namespace hc::conv_direct {

namespace {

// The kernels of the widest instruction set this CPU runs, or those force_kernels chose.
constexpr IsaTables<Kernels> kTables{&kernels_avx512, &kernels_avx2};
const Kernels* active() { return kTables.active(); }

bool channels_fit(const ConvGeom& g, int64_t M, int lanes) {
  return fits(g) && g.Wo <= kMaxChannelWidth && M % lanes == 0;
}

}  // namespace

bool available() { return active() != nullptr; }

int lanes() { return available() ? active()->lanes : 0; }

bool force_kernels(const char* name) { return kTables.force(name); }

void forward(const ConvGeom& g, int64_t M, int64_t count, const float* x, const float* wt,
             const float* b, float* y, bool relu) {
  const Kernels& k = *active();
  (channels_fit(g, M, k.lanes) ? k.forward_channels : k.forward)(g, M, count, x, wt, b, y, relu);
}

void weight_grad(const ConvGeom& g, int64_t M, int64_t count, const float* x, const float* dy,
                 float* dw) {
  const Kernels& k = *active();
  (channels_fit(g, M, k.lanes) ? k.weight_grad_channels : k.weight_grad)(g, M, count, x, dy, dw);
}

}  // namespace hc::conv_direct
