// Internal: what this CPU can run and how large its caches are, checked once, for the ops that
// have an AVX-512 kernel in a translation unit of their own (conv_direct_avx512.cpp,
// maxpool2d_avx512.cpp) and those that size their blocks from the caches (conv2d.cpp).
#pragma once
#include <unistd.h>

#include <cstdint>
#include <fstream>

namespace hc {

inline bool cpu_has_avx512f() {
  static const bool has = (__builtin_cpu_init(), __builtin_cpu_supports("avx512f"));
  return has;
}

// Bytes of the L2 cache of one core, as the OS reports it (sysconf, else sysfs); 512 KiB,
// a small modern L2, where neither says.
inline int64_t cpu_l2_bytes() {
  static const int64_t bytes = [] {
    int64_t b = 0;
#ifdef _SC_LEVEL2_CACHE_SIZE
    b = sysconf(_SC_LEVEL2_CACHE_SIZE);
#endif
    if (b <= 0) {
      std::ifstream f("/sys/devices/system/cpu/cpu0/cache/index2/size");
      int64_t kib = 0;
      char unit = 0;
      if (f >> kib >> unit) b = unit == 'M' ? kib << 20 : kib << 10;
    }
    return b > 0 ? b : int64_t{512} << 10;
  }();
  return bytes;
}

}  // namespace hc
