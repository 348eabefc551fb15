// A small fixed-capacity shape (up to 4 dims, N first) that never touches the heap, so shapes
// can be computed inside the training step without allocating.
//
// Sizes are bounded where they are made: every dim and every element count is at most
// kMaxNumel, so the products the rest of the core forms from them (bytes = 4 * numel, two
// staging slots, sums of a net's buffers, per-thread workspaces) stay far inside int64_t and
// size_t. Anything larger is a Shape error naming the sizes. checked_mul / checked_add are the
// overflow-checked arithmetic for sizes computed from shapes (workspaces, im2col matrices).
#pragma once
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <string>

namespace hc {

// 2^40 elements (4 TiB of floats): more than any machine holds, small enough that
// 4 * kMaxNumel * 2^20 still fits in 63 bits.
constexpr int64_t kMaxNumel = int64_t{1} << 40;

// a * b and a + b for sizes (all >= 0); a Shape error "<what>: a * b overflows" when the result
// does not fit (int64_t) or exceeds `limit`.
int64_t checked_mul(int64_t a, int64_t b, const char* what, int64_t limit = INT64_MAX);
int64_t checked_add(int64_t a, int64_t b, const char* what, int64_t limit = INT64_MAX);
size_t checked_mul(size_t a, size_t b, const char* what);
size_t checked_add(size_t a, size_t b, const char* what);
// Whether an array of these dims (each >= 0) would hold at most kMaxNumel elements.
bool fits_numel(std::initializer_list<int64_t> dims);

struct Shape {
  static constexpr int kMaxDims = 4;
  int64_t d[kMaxDims] = {0, 0, 0, 0};
  int ndim = 0;

  Shape() = default;
  // Throws a Shape error for a negative dim or more than kMaxNumel elements.
  Shape(std::initializer_list<int64_t> dims);

  int64_t operator[](int i) const { return d[i]; }
  int64_t& operator[](int i) { return d[i]; }
  // Element count (0 for a shape without dims); a Shape error when a dim is negative or the
  // count exceeds kMaxNumel (so a shape filled in by hand is checked where it is used).
  int64_t numel() const;
  // Elements of one sample: all dims but the first (checked likewise).
  int64_t sample_numel() const;
  // Throws a Shape error unless every dim is >= 0 and numel() <= kMaxNumel.
  void check() const;
  bool operator==(const Shape& o) const;
  bool operator!=(const Shape& o) const { return !(*this == o); }
  std::string str() const;  // "(64, 1, 28, 28)"
};

}  // namespace hc
