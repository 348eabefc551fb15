# cython: language_level=3, boundscheck=False, wraparound=False
"""Thin bindings of the C++ core. Arrays cross by pointer: the caller (nn.py) has already
checked dtype, contiguity and ndim, and the core checks shapes, labels and values."""

from libc.stdint cimport int64_t, uint64_t
from libcpp cimport bool as cbool
from libcpp.memory cimport unique_ptr
from libcpp.string cimport string
from libcpp.vector cimport vector

cimport numpy as cnp
import numpy as np

from . import errors

cnp.import_array()


cdef extern from "error_bridge.h" namespace "hc_py":
    void raise_py_error()
    void set_error_class(int kind, object cls)


cdef extern from "heterocnn/shape.h" namespace "hc":
    cdef cppclass Shape:
        int64_t d[4]
        int ndim
        int64_t numel()


cdef extern from "heterocnn/place.h" namespace "hc":
    cdef enum class Device(int):
        CPU
        CUDA
    cdef cppclass Place:
        Device device
        int index


cdef extern from "heterocnn/buffer.h" namespace "hc":
    cdef cppclass Buffer:
        void copy_from_host(const float* src, size_t count) except +raise_py_error
        void copy_to_host(float* dst, size_t count) except +raise_py_error


cdef extern from "heterocnn/layer.h" namespace "hc":
    cdef cppclass Param:
        string name
        Shape shape
        Buffer value, grad, velocity
    cdef cppclass Layer:
        vector[Param]& params()
        Place place()
        void to(Place place) except +raise_py_error
    unique_ptr[Layer] make_layer(const string& kind, const vector[int64_t]& args) except +raise_py_error


cdef extern from "heterocnn/loss.h" namespace "hc":
    cdef enum class LossKind(int):
        CrossEntropy
        BCE
    cdef cppclass LossResult:
        double loss
        int64_t correct


cdef extern from "heterocnn/sgd.h" namespace "hc":
    cdef cppclass SgdConfig:
        float lr, momentum, weight_decay
    void validate(const SgdConfig& cfg) except +raise_py_error


cdef extern from "heterocnn/net.h" namespace "hc":
    cdef cppclass Net:
        Net(LossKind loss)
        void add(unique_ptr[Layer] layer) except +raise_py_error
        vector[unique_ptr[Layer]]& layers()
        void init(uint64_t seed) except +raise_py_error
        void reset_momentum() except +raise_py_error
        Shape output_shape(const Shape& s) except +raise_py_error
        void forward(const float* x, const Shape& s, float* out) except +raise_py_error
        LossResult loss_and_grads(const float* x, const Shape& s, const int64_t* y) except +raise_py_error
        LossResult train_step(const float* x, const Shape& s, const int64_t* y, const SgdConfig& cfg) except +raise_py_error


cdef extern from "heterocnn/build_info.h" namespace "hc":
    cdef cppclass BuildInfo:
        string version
        cbool openmp
        int threads
        cbool cuda_compiled
        string gemm_kernel
    BuildInfo c_build_info "hc::build_info"() except +raise_py_error


cdef extern from "heterocnn/parallel.h" namespace "hc":
    void c_set_threads "hc::set_threads"(int n)


cdef extern from "heterocnn/gemm.h" namespace "hc":
    cdef enum class Trans(int):
        N
        T
    void c_sgemm "hc::sgemm"(Trans ta, Trans tb, int64_t M, int64_t N, int64_t K, float alpha,
                             const float* A, int64_t lda, const float* B, int64_t ldb,
                             float beta, float* C, int64_t ldc) except +raise_py_error


# Order of hc::ErrorKind.
for _kind, _cls in enumerate((errors.InvalidValueError, errors.ShapeError, errors.DTypeError,
                              errors.DeviceError, errors.DeviceOutOfMemoryError,
                              errors.DeviceError)):
    set_error_class(_kind, _cls)


cdef Shape to_shape(tuple dims) except *:
    cdef Shape s
    if len(dims) > 4:
        raise errors.ShapeError(f"arrays have at most 4 dims here, got shape {dims}")
    s.ndim = len(dims)
    for i, v in enumerate(dims):
        s.d[i] = v
    return s


cdef tuple from_shape(Shape s):
    cdef int i
    return tuple([s.d[i] for i in range(s.ndim)])


cdef class CoreNet:
    """A C++ hc::Net. Built from layer specs [(kind, [ints]), ...]."""
    cdef unique_ptr[Net] net

    def __cinit__(self, list specs, str loss, uint64_t seed):
        self.net.reset(new Net(LossKind.BCE if loss == "bce" else LossKind.CrossEntropy))
        for kind, args in specs:
            self.net.get().add(make_layer(kind.encode(), args))
        self.net.get().init(seed)

    def output_shape(self, tuple in_shape):
        return from_shape(self.net.get().output_shape(to_shape(in_shape)))

    def forward(self, cnp.ndarray x):
        out = np.empty(self.output_shape((<object>x).shape), dtype=np.float32)
        self.net.get().forward(<const float*>cnp.PyArray_DATA(x), to_shape((<object>x).shape),
                               <float*>cnp.PyArray_DATA(out))
        return out

    def loss_and_grads(self, cnp.ndarray x, cnp.ndarray y):
        r = self.net.get().loss_and_grads(<const float*>cnp.PyArray_DATA(x), to_shape((<object>x).shape),
                                          <const int64_t*>cnp.PyArray_DATA(y))
        return r.loss, r.correct

    def train_step(self, cnp.ndarray x, cnp.ndarray y, float lr, float momentum,
                   float weight_decay):
        cdef SgdConfig cfg
        cfg.lr = lr
        cfg.momentum = momentum
        cfg.weight_decay = weight_decay
        r = self.net.get().train_step(<const float*>cnp.PyArray_DATA(x), to_shape((<object>x).shape),
                                      <const int64_t*>cnp.PyArray_DATA(y), cfg)
        return r.loss, r.correct

    def reset_momentum(self):
        self.net.get().reset_momentum()

    def param_list(self):
        """[(layer index, name, shape), ...] in state_dict order."""
        cdef size_t i, j
        out = []
        for i in range(self.net.get().layers().size()):
            params = &self.net.get().layers()[i].get().params()
            for j in range(params.size()):
                out.append((i, params[0][j].name.decode(), from_shape(params[0][j].shape)))
        return out

    cdef Param* param(self, int layer, int index) except NULL:
        return &self.net.get().layers()[layer].get().params()[index]

    def get(self, int layer, int index, str which="value"):
        """A host copy of one parameter's value, grad or velocity."""
        cdef Param* p = self.param(layer, index)
        out = np.empty(from_shape(p.shape), dtype=np.float32)
        cdef Buffer* b = &p.value if which == "value" else (&p.grad if which == "grad" else &p.velocity)
        b.copy_to_host(<float*>cnp.PyArray_DATA(out), p.shape.numel())
        return out

    def set(self, int layer, int index, cnp.ndarray src, str which="value"):
        """Copies a float32 C-contiguous array of the parameter's shape into it."""
        cdef Param* p = self.param(layer, index)
        cdef Buffer* b = &p.value if which == "value" else &p.velocity
        b.copy_from_host(<const float*>cnp.PyArray_DATA(src), p.shape.numel())

    def to(self, list places):
        """places: one (device, index) per layer, device 0 = CPU, 1 = CUDA."""
        cdef Place pl
        cdef size_t i
        for i in range(self.net.get().layers().size()):
            pl.device = Device.CUDA if places[i][0] == 1 else Device.CPU
            pl.index = places[i][1]
            self.net.get().layers()[i].get().to(pl)


def validate_sgd(float lr, float momentum, float weight_decay):
    cdef SgdConfig cfg
    cfg.lr = lr
    cfg.momentum = momentum
    cfg.weight_decay = weight_decay
    validate(cfg)


def build_info():
    b = c_build_info()
    return {"version": b.version.decode(), "openmp": b.openmp, "threads": b.threads,
            "cuda_compiled": b.cuda_compiled, "gemm_kernel": b.gemm_kernel.decode()}


def set_threads(int n):
    c_set_threads(n)


def sgemm(cnp.ndarray A, cnp.ndarray B, bint trans_a=False, bint trans_b=False):
    """C = op(A) @ op(B) with the core's CPU SGEMM (float32, C-contiguous inputs)."""
    M = A.shape[1] if trans_a else A.shape[0]
    K = A.shape[0] if trans_a else A.shape[1]
    N = B.shape[0] if trans_b else B.shape[1]
    if (B.shape[1] if trans_b else B.shape[0]) != K:
        raise errors.ShapeError(f"sgemm: op(A) is ({M}, {K}) but op(B) is "
                                f"({B.shape[1] if trans_b else B.shape[0]}, {N})")
    C = np.empty((M, N), dtype=np.float32)
    c_sgemm(Trans.T if trans_a else Trans.N, Trans.T if trans_b else Trans.N, M, N, K, 1.0,
            <const float*>cnp.PyArray_DATA(A), A.shape[1], <const float*>cnp.PyArray_DATA(B),
            B.shape[1], 0.0, <float*>cnp.PyArray_DATA(C), N)
    return C
