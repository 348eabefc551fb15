// Internal: what this CPU can run and how large its caches are, checked once in each translation
// unit, for the ops that have kernels for an instruction set in a translation unit of their own
// (conv_direct.cpp, maxpool2d.cpp, conv_winograd.cpp, gemm.cpp) and those that size their blocks
// from the caches (conv2d.cpp, the direct kernels). Internal linkage (an unnamed namespace): a
// kernel's translation unit, compiled for its instruction set, keeps its own copy, so the
// linker never picks that copy for code that runs on any CPU.
#pragma once
#include <unistd.h>

#include <cstdint>
#include <fstream>
#include <string>

namespace hc {
namespace {

inline bool cpu_has_avx512f() {
  static const bool has = (__builtin_cpu_init(), __builtin_cpu_supports("avx512f"));
  return has;
}

// AVX2 with FMA: what the AVX2 kernels' translation units are compiled for (-mavx2 -mfma).
inline bool cpu_has_avx2_fma() {
  static const bool has = (__builtin_cpu_init(), __builtin_cpu_supports("avx2") &&
                                                     __builtin_cpu_supports("fma"));
  return has;
}

// One op's kernel tables, one per instruction set (avx512 and avx2 return those of its
// translation units), and the one in use: the widest this CPU runs, chosen at the first call,
// or the one a test hook forced. One IsaTables per table type T (active() is kept per T).
template <class T>
struct IsaTables {
  const T& (*avx512)();
  const T& (*avx2)();

  const T* widest() const {
    return cpu_has_avx512f() ? &avx512() : cpu_has_avx2_fma() ? &avx2() : nullptr;
  }
  // The table in use; null where this CPU runs neither set.
  const T*& active() const {
    static const T* t = widest();
    return t;
  }
  // Use the table of this instruction set ("avx512", "avx2") if this CPU runs it (returns
  // whether it does); nullptr: the widest again.
  bool force(const char* name) const {
    if (!name) return active() = widest(), true;
    const std::string n = name;
    if (n == "avx512" && cpu_has_avx512f()) return active() = &avx512(), true;
    if (n == "avx2" && cpu_has_avx2_fma()) return active() = &avx2(), true;
    return false;
  }
};

// Bytes of one of a core's caches, as the OS reports it: sysconf(sysconf_name) (none where
// negative), else sysfs's /sys/devices/system/cpu/cpu0/cache/index<index>/size, else `fallback`.
inline int64_t cpu_cache_bytes(int sysconf_name, int index, int64_t fallback) {
  int64_t b = sysconf_name >= 0 ? sysconf(sysconf_name) : 0;
  if (b <= 0) {
    std::ifstream f("/sys/devices/system/cpu/cpu0/cache/index" + std::to_string(index) + "/size");
    int64_t kib = 0;
    char unit = 0;
    if (f >> kib >> unit) b = unit == 'M' ? kib << 20 : kib << 10;
  }
  return b > 0 ? b : fallback;
}

// Bytes of the L2 cache of one core; 512 KiB, a small modern L2, where the OS does not say.
inline int64_t cpu_l2_bytes() {
#ifdef _SC_LEVEL2_CACHE_SIZE
  static const int64_t bytes = cpu_cache_bytes(_SC_LEVEL2_CACHE_SIZE, 2, int64_t{512} << 10);
#else
  static const int64_t bytes = cpu_cache_bytes(-1, 2, int64_t{512} << 10);
#endif
  return bytes;
}

// Bytes of the L1 data cache of one core (sysfs index 0 is the data cache on x86 Linux); 32 KiB,
// the smallest of current x86 cores, where the OS does not say.
inline int64_t cpu_l1d_bytes() {
#ifdef _SC_LEVEL1_DCACHE_SIZE
  static const int64_t bytes = cpu_cache_bytes(_SC_LEVEL1_DCACHE_SIZE, 0, int64_t{32} << 10);
#else
  static const int64_t bytes = cpu_cache_bytes(-1, 0, int64_t{32} << 10);
#endif
  return bytes;
}

}  // namespace
}  // namespace hc
