// Turns the C++ exception in flight into the matching Python exception. Cython calls
// raise_py_error() inside its catch block (functions declared `except +raise_py_error`).
#pragma once
#include <Python.h>

#include <new>

#include "heterocnn/error.h"

namespace hc_py {

// Python classes per hc::ErrorKind, filled once at import by set_error_class().
inline PyObject* error_classes[6] = {nullptr, nullptr, nullptr, nullptr, nullptr, nullptr};

inline void set_error_class(int kind, PyObject* cls) {
  Py_XINCREF(cls);
  error_classes[kind] = cls;
}

inline void raise_py_error() {
  try {
    throw;
  } catch (const hc::Error& e) {
    PyObject* cls = error_classes[static_cast<int>(e.kind())];
    PyErr_SetString(cls ? cls : PyExc_RuntimeError, e.what());
  } catch (const std::bad_alloc&) {
    PyObject* cls = error_classes[static_cast<int>(hc::ErrorKind::OutOfMemory)];
    PyErr_SetString(cls ? cls : PyExc_MemoryError, "host allocation failed (out of memory)");
  } catch (const std::exception& e) {
    PyErr_SetString(PyExc_RuntimeError, e.what());
  } catch (...) {
    PyErr_SetString(PyExc_RuntimeError, "unknown C++ exception");
  }
}

}  // namespace hc_py
