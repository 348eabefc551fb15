// Exceptions thrown by the core. Each kind maps to one Python exception class in the bindings
// (hc.ShapeError, hc.DeviceOutOfMemoryError, ...), all subclasses of hc.HeteroCNNError.
#pragma once
#include <stdexcept>
#include <string>

namespace hc {

enum class ErrorKind {
  Value,        // a bad value: shape mismatch, label out of range, NaN input  -> ValueError
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

}  // namespace hc
