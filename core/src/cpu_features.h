// Internal: what this CPU can run, checked once, for the ops that have an AVX-512 kernel in a
// translation unit of their own (conv_direct_avx512.cpp, maxpool2d_avx512.cpp).
#pragma once

namespace hc {

inline bool cpu_has_avx512f() {
  static const bool has = (__builtin_cpu_init(), __builtin_cpu_supports("avx512f"));
  return has;
}

}  // namespace hc
