// Grid sizes for the element-wise kernels of the ops (grid-stride loops cover the rest).
#pragma once
#include <algorithm>
#include <cstdint>

namespace hc {

constexpr int kOpThreads = 256;

inline unsigned op_blocks(int64_t n) {
  return static_cast<unsigned>(std::max<int64_t>(1, std::min<int64_t>((n + kOpThreads - 1) / kOpThreads, 65535)));
}

}  // namespace hc
