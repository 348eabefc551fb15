// A small fixed-capacity shape (up to 4 dims, N first) that never touches the heap, so shapes
// can be computed inside the training step without allocating.
#pragma once
#include <cstdint>
#include <initializer_list>
#include <string>

namespace hc {

struct Shape {
  static constexpr int kMaxDims = 4;
  int64_t d[kMaxDims] = {0, 0, 0, 0};
  int ndim = 0;

  Shape() = default;
  Shape(std::initializer_list<int64_t> dims);

  int64_t operator[](int i) const { return d[i]; }
  int64_t& operator[](int i) { return d[i]; }
  int64_t numel() const;
  // Elements of one sample: all dims but the first.
  int64_t sample_numel() const;
  bool operator==(const Shape& o) const;
  bool operator!=(const Shape& o) const { return !(*this == o); }
  std::string str() const;  // "(64, 1, 28, 28)"
};

}  // namespace hc
