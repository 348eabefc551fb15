// Philox-4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", SC'11): a
// counter-based generator, four 32-bit words out of a 128-bit counter and a 64-bit key, with
// no state. The same header is compiled by the C++ compiler and by nvcc, so the CPU and the
// GPU draw bit-identical numbers for the same (key, counter): Dropout's masks depend only on
// (seed, step, element index), on either device.
#pragma once
#include <cstdint>

#include "heterocnn/host_device.h"

namespace hc {

struct Philox4 {
  uint32_t v[4];
};

namespace philox_detail {
constexpr uint32_t kM0 = 0xD2511F53u, kM1 = 0xCD9E8D57u;  // round multipliers
constexpr uint32_t kW0 = 0x9E3779B9u, kW1 = 0xBB67AE85u;  // key schedule (Weyl) increments
}  // namespace philox_detail

// The 10-round Philox-4x32 bijection of counter `c` under key (k0, k1).
HC_HOST_DEVICE Philox4 philox4x32_10(Philox4 c, uint32_t k0, uint32_t k1) {
  using namespace philox_detail;
  for (int round = 0; round < 10; ++round) {
    if (round > 0) {
      k0 += kW0;
      k1 += kW1;
    }
    const uint64_t p0 = static_cast<uint64_t>(kM0) * c.v[0];
    const uint64_t p1 = static_cast<uint64_t>(kM1) * c.v[2];
    const uint32_t hi0 = static_cast<uint32_t>(p0 >> 32), lo0 = static_cast<uint32_t>(p0);
    const uint32_t hi1 = static_cast<uint32_t>(p1 >> 32), lo1 = static_cast<uint32_t>(p1);
    c = Philox4{{hi1 ^ c.v[1] ^ k0, lo1, hi0 ^ c.v[3] ^ k1, lo0}};
  }
  return c;
}

// Block `block` of the stream (seed, step): the counter (block as 64 bits, step as 64 bits)
// under the key `seed`; it holds elements 4*block .. 4*block+3.
HC_HOST_DEVICE Philox4 philox_block(uint64_t seed, uint64_t step, uint64_t block) {
  return philox4x32_10(
      Philox4{{static_cast<uint32_t>(block), static_cast<uint32_t>(block >> 32),
               static_cast<uint32_t>(step), static_cast<uint32_t>(step >> 32)}},
      static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32));
}

// Element `i` of the stream (seed, step): word i % 4 of block i / 4.
HC_HOST_DEVICE uint32_t philox_word(uint64_t seed, uint64_t step, uint64_t i) {
  return philox_block(seed, step, i >> 2).v[i & 3];
}

// Dropout's keep decision: the top 24 bits of the word, as a uniform integer in [0, 2^24),
// below `keep_below` = round((1 - p) * 2^24) (0: nothing kept, 2^24: everything kept).
HC_HOST_DEVICE bool philox_keep(uint32_t word, uint32_t keep_below) {
  return (word >> 8) < keep_below;
}

}  // namespace hc
