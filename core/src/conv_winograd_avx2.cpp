// Winograd's transforms (conv_winograd_kernels.h) for AVX2 + FMA: the loops along the tiles run
// 8 floats wide; rows are transformed by PortableRows' loops.
#include "conv_winograd_kernels.h"

namespace hc::conv_winograd {

const Transforms& transforms_avx2() { return Blocks<PortableRows>::table; }

}  // namespace hc::conv_winograd
