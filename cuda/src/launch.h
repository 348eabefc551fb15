// Grid sizes for the element-wise kernels of the ops (grid-stride loops cover the rest).
#pragma once
#include <algorithm>
#include <cstdint>

namespace hc {

constexpr int kOpThreads = 256;

inline unsigned op_blocks(int64_t n) {
  return static_cast<unsigned>(std::max<int64_t>(1, std::min<int64_t>((n + kOpThreads - 1) / kOpThreads, 65535)));
}

// Whether indices below n can run in 32-bit arithmetic in a grid-stride loop (64-bit division
// is many instructions on a GPU), with room for the last stride past the end.
inline bool fits_int32(int64_t n) { return n < (int64_t{1} << 31) - (int64_t{1} << 24); }

}  // namespace hc
