// OpenMP in one place, so the rest of the core compiles the same with or without it.
#pragma once

#include <cstdint>

#ifdef _OPENMP
#include <omp.h>
#endif

namespace hc {

inline int max_threads() {
#ifdef _OPENMP
  return omp_get_max_threads();
#else
  return 1;
#endif
}

inline int thread_id() {
#ifdef _OPENMP
  return omp_get_thread_num();
#else
  return 0;
#endif
}

// Threads in the current team (1 outside a parallel region).
inline int team_size() {
#ifdef _OPENMP
  return omp_get_num_threads();
#else
  return 1;
#endif
}

inline void set_threads(int n) {
#ifdef _OPENMP
  omp_set_num_threads(n);
#else
  (void)n;
#endif
}

// Whether a loop over memory of `floats` floats (each array it reads or writes counted once: a
// ReLU's forward on n elements is 2n) pays for waking the OpenMP team: below 2^17 floats
// (512 KiB, a few microseconds on one core) one thread is done before the team would be.
constexpr int64_t kTeamFloats = int64_t{1} << 17;
inline bool team_pays(int64_t floats) { return floats >= kTeamFloats; }

// Where part k of `parts` starts when n floats are cut into contiguous ranges of whole 64-byte
// cache lines (16 floats), as even as that allows: split_at(n, 0, p) = 0, split_at(n, p, p) = n.
// A team's threads take parts thread_id() of team_size() and write no line another writes.
inline int64_t split_at(int64_t n, int k, int parts) {
  const int64_t at = (n * k / parts + 15) / 16 * 16;
  return at < n ? at : n;
}

inline bool openmp_enabled() {
#ifdef _OPENMP
  return true;
#else
  return false;
#endif
}

}  // namespace hc
