// A small seeded generator (xoshiro256** seeded by splitmix64) with a Box-Muller normal, so
// that initial weights are the same on every platform and standard library for one seed.
#pragma once
#include <cstdint>

namespace hc {

class Rng {
 public:
  explicit Rng(uint64_t seed);
  uint64_t next_u64();
  double uniform();  // [0, 1)
  double normal();   // mean 0, std 1

 private:
  uint64_t s_[4];
  bool has_spare_ = false;
  double spare_ = 0.0;
};

}  // namespace hc
