// Exceptions thrown by the core. Each kind maps to one Python exception class in the bindings
// (hc.ShapeError, hc.DeviceOutOfMemoryError, ...), all subclasses of hc.HeteroCNNError.
#pragma once
#include <stdexcept>
#include <string>

namespace hc {

enum class ErrorKind {
  Value,        // a bad value: label out of range, NaN input, bad argument   -> ValueError
  Shape,        // arrays or layers whose shapes do not fit together           -> ValueError
  Type,         // a bad type or layout                                        -> TypeError
  Index,        // a missing device or parameter index                          -> IndexError
  OutOfMemory,  // host or device allocation failed                             -> MemoryError
  Device,       // a CUDA error, or a device that is not available             -> RuntimeError
};

class Error : public std::runtime_error {
 public:
  Error(ErrorKind kind, const std::string& what) : std::runtime_error(what), kind_(kind) {}
  ErrorKind kind() const { return kind_; }

 private:
  ErrorKind kind_;
};

[[noreturn]] inline void fail(ErrorKind kind, const std::string& what) { throw Error(kind, what); }
[[noreturn]] inline void fail_value(const std::string& what) { fail(ErrorKind::Value, what); }
[[noreturn]] inline void fail_shape(const std::string& what) { fail(ErrorKind::Shape, what); }

}  // namespace hc
