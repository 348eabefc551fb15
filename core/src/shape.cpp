#include "heterocnn/shape.h"

#include "heterocnn/error.h"

namespace hc {

namespace {

[[noreturn]] void overflow(const char* what, const std::string& a, const char* op,
                           const std::string& b, const std::string& limit) {
  fail_shape(std::string(what) + ": " + a + " " + op + " " + b + " is " +
             (limit.empty() ? "too large to represent" : "larger than " + limit));
}

std::string limit_str(int64_t limit) {
  return limit == INT64_MAX ? "" : std::to_string(limit);
}

// Product of dims [from, ndim), each >= 0, with the count bounded by kMaxNumel.
int64_t product(const Shape& s, int from) {
  for (int i = 0; i < s.ndim; ++i) {
    if (s.d[i] < 0) fail_shape("shape " + s.str() + " has a negative dim");
    if (s.d[i] > kMaxNumel)
      fail_shape("shape " + s.str() + " has a dim larger than " + std::to_string(kMaxNumel) +
                 " (2^40), more than heterocnn can address");
  }
  for (int i = from; i < s.ndim; ++i)
    if (s.d[i] == 0) return 0;
  int64_t n = 1;
  for (int i = from; i < s.ndim; ++i) {
    if (s.d[i] > kMaxNumel / n)
      fail_shape("shape " + s.str() + " has more than " + std::to_string(kMaxNumel) +
                 " (2^40) elements, more than heterocnn can address");
    n *= s.d[i];
  }
  return n;
}

}  // namespace

int64_t checked_mul(int64_t a, int64_t b, const char* what, int64_t limit) {
  int64_t r;
  if (a < 0 || b < 0 || __builtin_mul_overflow(a, b, &r) || r > limit)
    overflow(what, std::to_string(a), "*", std::to_string(b), limit_str(limit));
  return r;
}

int64_t checked_add(int64_t a, int64_t b, const char* what, int64_t limit) {
  int64_t r;
  if (a < 0 || b < 0 || __builtin_add_overflow(a, b, &r) || r > limit)
    overflow(what, std::to_string(a), "+", std::to_string(b), limit_str(limit));
  return r;
}

size_t checked_mul(size_t a, size_t b, const char* what) {
  size_t r;
  if (__builtin_mul_overflow(a, b, &r))
    overflow(what, std::to_string(a), "*", std::to_string(b), "");
  return r;
}

size_t checked_add(size_t a, size_t b, const char* what) {
  size_t r;
  if (__builtin_add_overflow(a, b, &r))
    overflow(what, std::to_string(a), "+", std::to_string(b), "");
  return r;
}

bool fits_numel(std::initializer_list<int64_t> dims) {
  int64_t n = 1;
  for (int64_t v : dims) {
    if (v < 0 || v > kMaxNumel) return false;
    if (v == 0) n = 0;
  }
  if (n == 0) return true;
  for (int64_t v : dims) {
    if (v > kMaxNumel / n) return false;
    n *= v;
  }
  return true;
}

Shape::Shape(std::initializer_list<int64_t> dims) {
  if (dims.size() > kMaxDims) fail_value("a shape has at most 4 dims");
  for (int64_t v : dims) d[ndim++] = v;
  check();
}

void Shape::check() const { product(*this, 0); }

int64_t Shape::numel() const { return ndim == 0 ? 0 : product(*this, 0); }

int64_t Shape::sample_numel() const { return product(*this, 1); }

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
