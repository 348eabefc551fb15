#include "heterocnn/shape.h"

#include "heterocnn/error.h"

namespace hc {

Shape::Shape(std::initializer_list<int64_t> dims) {
  if (dims.size() > kMaxDims) fail_value("a shape has at most 4 dims");
  for (int64_t v : dims) d[ndim++] = v;
}

int64_t Shape::numel() const {
  int64_t n = 1;
  for (int i = 0; i < ndim; ++i) n *= d[i];
  return ndim == 0 ? 0 : n;
}

int64_t Shape::sample_numel() const {
  int64_t n = 1;
  for (int i = 1; i < ndim; ++i) n *= d[i];
  return n;
}

bool Shape::operator==(const Shape& o) const {
  if (ndim != o.ndim) return false;
  for (int i = 0; i < ndim; ++i)
    if (d[i] != o.d[i]) return false;
  return true;
}

std::string Shape::str() const {
  std::string s = "(";
  for (int i = 0; i < ndim; ++i) {
    if (i) s += ", ";
    s += std::to_string(d[i]);
  }
  if (ndim == 1) s += ",";
  return s + ")";
}

}  // namespace hc
