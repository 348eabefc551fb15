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

# The most elements of any array (and the largest dim) the core handles (shape.h).
MAX_NUMEL = kMaxNumel


cdef extern from "error_bridge.h" namespace "hc_py":
    void raise_py_error()
    void set_error_class(int kind, object cls)


cdef extern from "heterocnn/shape.h" namespace "hc":
    const int64_t kMaxNumel
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


cdef extern from "heterocnn/tensor.h" namespace "hc":
    cdef cppclass Tensor:
        float* data
        Shape shape


cdef extern from "heterocnn/rng.h" namespace "hc":
    cdef cppclass Rng:
        Rng(uint64_t seed)


cdef extern from "heterocnn/parallel.h" namespace "hc":
    int max_threads()


cdef extern from "heterocnn/buffer.h" namespace "hc":
    void copy_floats(float* dst, Place dst_place, const float* src, Place src_place, size_t count) except +raise_py_error
    cdef cppclass Buffer:
        Buffer(size_t count, Place place) except +raise_py_error
        float* data()
        size_t size()
        void copy_from_host(const float* src, size_t count) except +raise_py_error
        void copy_to_host(float* dst, size_t count) except +raise_py_error


cdef extern from "heterocnn/layer.h" namespace "hc":
    cdef cppclass Param:
        string name
        Shape shape
        Buffer value, grad
    cdef cppclass LayerBuffer:
        string name
        Shape shape
        cbool is_int64, persistent
        Buffer value
    cdef cppclass Layer:
        Shape output_shape(const Shape& s) except +raise_py_error
        size_t workspace_size(const Shape& s, int threads) except +raise_py_error
        void forward(const Tensor& x, Tensor& y, float* ws) except +raise_py_error
        void backward(const Tensor& x, const Tensor& y, const Tensor& dy, Tensor* dx, float* ws) except +raise_py_error
        void init_params(Rng& rng) except +raise_py_error
        vector[Param]& params()
        vector[LayerBuffer]& buffers()
        void set_training(cbool on)
        Place place()
        void to(Place place) except +raise_py_error
    unique_ptr[Layer] make_layer(const string& kind, const vector[double]& args) except +raise_py_error


cdef extern from "heterocnn/loss.h" namespace "hc":
    cdef enum class LossKind(int):
        CrossEntropy
        BCE
    cdef cppclass LossResult:
        double loss
        int64_t correct
    LossResult softmax_cross_entropy_cpu(int64_t N, int64_t K, const float* logits, const int64_t* labels, float* dlogits, float grad_scale, float label_smoothing) except +raise_py_error
    LossResult sigmoid_bce_cpu(int64_t N, const float* logits, const int64_t* labels, float* dlogits) except +raise_py_error


cdef extern from "heterocnn/sgd.h" namespace "hc":
    cdef cppclass SgdConfig:
        float lr, momentum, weight_decay, dampening
        cbool nesterov
    void validate(const SgdConfig& cfg) except +raise_py_error


cdef extern from "heterocnn/adam.h" namespace "hc":
    cdef cppclass AdamConfig:
        float lr, beta1, beta2, eps, weight_decay
        cbool decoupled
    void validate(const AdamConfig& cfg) except +raise_py_error


cdef extern from "heterocnn/param_store.h" namespace "hc":
    cdef cppclass ParamStore:
        size_t bytes(Place place)
        size_t span(Place place)
        float* grads(Place place)
        vector[Place] places()


cdef extern from "heterocnn/optimizer.h" namespace "hc":
    cdef cppclass Optimizer:
        int state_count()
        string state_name(int k)
        void get_state(const ParamStore& store, int k, size_t i, float* dst) except +raise_py_error
        void set_state(const ParamStore& store, int k, size_t i, const float* src) except +raise_py_error
        void reset() except +raise_py_error
        int64_t steps()
        void set_steps(int64_t steps) except +raise_py_error
    cdef cppclass Sgd(Optimizer):
        Sgd(const SgdConfig& config) except +raise_py_error
        void set_config(const SgdConfig& config) except +raise_py_error
    cdef cppclass Adam(Optimizer):
        Adam(const AdamConfig& config) except +raise_py_error
        void set_config(const AdamConfig& config) except +raise_py_error


cdef extern from "heterocnn/step_plan.h" namespace "hc":
    cdef enum class StepMode(int):
        Train
        Infer
    cdef cppclass StepPlan:
        vector[Shape] shapes


cdef extern from "heterocnn/device_dataset.h" namespace "hc":
    cdef cppclass DeviceDataset:
        DeviceDataset(const void* images, cbool uint8, const Shape& shape, const int64_t* labels,
                      Place place) except +raise_py_error
        int64_t size()


cdef extern from "heterocnn/net.h" namespace "hc":
    cdef cppclass LayerTimes:
        double forward_s, backward_s
        int64_t forward_calls, backward_calls
    cdef struct GradsReady:
        void (*fn)(void* ctx, size_t offset) noexcept nogil
        void* ctx
    cdef cppclass Net:
        void set_profiling(cbool on)
        size_t arena_bytes(int device)
        cppclass PlaceBytes:
            PlaceBytes()
            Place place
            size_t parameters, buffers, missing
        vector[PlaceBytes] step_bytes(const Shape& s, StepMode mode, int optimizer_states) except +raise_py_error
        vector[LayerTimes]& layer_times() except +raise_py_error
        Net(LossKind loss, float label_smoothing) except +raise_py_error
        void add(unique_ptr[Layer] layer) except +raise_py_error
        vector[unique_ptr[Layer]]& layers()
        ParamStore& params()
        void init(uint64_t seed) except +raise_py_error
        void set_training(cbool on) except +raise_py_error
        void set_random_stream(uint64_t stream) except +raise_py_error
        cbool training()
        Shape output_shape(const Shape& s) except +raise_py_error
        void forward(const float* x, const Shape& s, float* out) except +raise_py_error
        LossResult compute_grads(const float* x, const Shape& s, const int64_t* y, float weight, cbool accumulate, GradsReady ready) except +raise_py_error nogil
        void to(const vector[Place]& places) except +raise_py_error
        int start_step(const float* x, const Shape& s, const int64_t* y, Optimizer& opt, LossResult* out) except +raise_py_error
        int start_step_on(const DeviceDataset& data, const int64_t* idx, int64_t n, Optimizer& opt, LossResult* out) except +raise_py_error
        int finish_steps(LossResult* out) except +raise_py_error
        void wait() except +raise_py_error
        void apply_update(Optimizer& opt) except +raise_py_error
        StepPlan plan(const Shape& s, StepMode mode) except +raise_py_error


cdef extern from "heterocnn/replicas.h" namespace "hc":
    cdef cppclass Replicas:
        Replicas(vector[Net*] nets, vector[int] threads) except +raise_py_error
        void broadcast(size_t buffers_from) except +raise_py_error
        LossResult compute_grads(const float* x, const Shape& s, const int64_t* y, const vector[int64_t]& counts, float weight) except +raise_py_error
        void apply_update(Optimizer& opt) except +raise_py_error
        int start_step(const float* x, const Shape& s, const int64_t* y, const vector[int64_t]& counts, Optimizer& opt, const DeviceDataset* data, const int64_t* idx, size_t device_replica, LossResult* out) except +raise_py_error
        int finish_steps(LossResult* out) except +raise_py_error
        void set_random_stream(uint64_t base) except +raise_py_error
        const vector[double]& last_seconds()


cdef extern from "heterocnn/build_info.h" namespace "hc":
    cdef cppclass BuildInfo:
        string version
        cbool openmp
        int threads
        cbool cuda_compiled
        string gemm_kernel
        cbool relu_fusion
    BuildInfo c_build_info "hc::build_info"() except +raise_py_error


cdef extern from "heterocnn/parallel.h" namespace "hc":
    void c_set_threads "hc::set_threads"(int n)


cdef extern from "heterocnn/device.h" namespace "hc":
    cdef cppclass DeviceInfo:
        int index
        string name
        int major, minor
        size_t total_bytes, free_bytes
        int multiprocessors
    int c_cuda_device_count "hc::cuda_device_count"() except +raise_py_error


cdef extern from "device_info.h" namespace "hc_py":
    DeviceInfo device_info(int index) except +raise_py_error


cdef extern from "heterocnn/dataset.h" namespace "hc":
    void c_gather_batch_cpu "hc::gather_batch_cpu"(const void* images, bint uint8, int64_t N,
                                                   int64_t S, const int64_t* idx, int64_t n,
                                                   float scale, float* x) except +raise_py_error


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
        if not -2**63 <= v < 2**63:  # the core checks the rest (dims <= 2^40)
            raise errors.ShapeError(f"shape {dims}: dim {v} is far too large")
        s.d[i] = v
    return s


def host_array(tuple shape):
    """np.empty(shape, float32), or DeviceOutOfMemoryError naming the bytes."""
    try:
        return np.empty(shape, dtype=np.float32)
    except MemoryError:
        raise errors.DeviceOutOfMemoryError(
            f"host allocation of {4 * int(np.prod(shape, dtype=object))} bytes for an array "
            f"of shape {shape} failed (out of memory)") from None


cdef tuple from_shape(Shape s):
    cdef int i
    return tuple([s.d[i] for i in range(s.ndim)])


cdef SgdConfig sgd_config(float lr, float momentum, float weight_decay, float dampening,
                          bint nesterov):
    cdef SgdConfig cfg
    cfg.lr = lr
    cfg.momentum = momentum
    cfg.weight_decay = weight_decay
    cfg.dampening = dampening
    cfg.nesterov = nesterov
    return cfg


cdef AdamConfig adam_config(float lr, float beta1, float beta2, float eps, float weight_decay,
                            bint decoupled):
    cdef AdamConfig cfg
    cfg.lr = lr
    cfg.beta1 = beta1
    cfg.beta2 = beta2
    cfg.eps = eps
    cfg.weight_decay = weight_decay
    cfg.decoupled = decoupled
    return cfg


cdef class CoreOptimizer


cdef void _grads_ready(void* ctx, size_t offset) noexcept with gil:
    """GradsReady's function: calls holder[0](offset) until it raises; keeps the exception
    in holder[1] for compute_grads to raise after the pass."""
    holder = <list>ctx
    if holder[1] is not None:
        return
    try:
        holder[0](offset)
    except BaseException as e:  # raised after the pass, never through C++
        holder[1] = e


cdef class CoreNet:
    """A C++ hc::Net. Built from layer specs [(kind, [ints]), ...]."""
    cdef unique_ptr[Net] net

    def __cinit__(self, list specs, str loss, uint64_t seed, float label_smoothing=0.0):
        self.net.reset(new Net(LossKind.BCE if loss == "bce" else LossKind.CrossEntropy,
                               label_smoothing))
        for kind, args in specs:
            self.net.get().add(make_layer(kind.encode(), args))
        self.net.get().init(seed)

    def output_shape(self, tuple in_shape):
        return from_shape(self.net.get().output_shape(to_shape(in_shape)))

    def layer_shapes(self, tuple in_shape):
        """The output shape of every layer for input ``in_shape``, from the step plan."""
        cdef StepPlan p = self.net.get().plan(to_shape(in_shape), StepMode.Infer)
        return [from_shape(s) for s in p.shapes]

    def forward(self, cnp.ndarray x):
        out = host_array(self.output_shape((<object>x).shape))
        self.net.get().forward(<const float*>cnp.PyArray_DATA(x), to_shape((<object>x).shape),
                               <float*>cnp.PyArray_DATA(out))
        return out

    def compute_grads(self, cnp.ndarray x, cnp.ndarray y, float weight=1.0,
                      bint accumulate=False, ready=None):
        """(loss, correct); the gradients (times weight, added when accumulate) in the store.
        The pass runs without the GIL. ``ready(offset)`` is called (with the GIL) as the
        gradients from ``offset`` of the CPU span on are final, where the whole net is on the
        CPU and nothing accumulates; an exception it raises comes up after the pass."""
        cdef GradsReady hook
        cdef LossResult r
        cdef const float* xp = <const float*>cnp.PyArray_DATA(x)
        cdef const int64_t* yp = <const int64_t*>cnp.PyArray_DATA(y)
        cdef Shape shape = to_shape((<object>x).shape)
        holder = [ready, None]  # the callback and the first exception it raised
        if ready is not None:
            hook.fn = _grads_ready
            hook.ctx = <void*>holder
        with nogil:
            r = self.net.get().compute_grads(xp, shape, yp, weight, accumulate, hook)
        if holder[1] is not None:
            raise holder[1]
        return r.loss, r.correct

    def start_step(self, cnp.ndarray x, cnp.ndarray y, CoreOptimizer opt):
        """Starts a step; returns [(loss, correct)] of the steps finished since the last
        report (on a GPU the previous step, on the CPU this one)."""
        cdef LossResult out[2]
        n = self.net.get().start_step(<const float*>cnp.PyArray_DATA(x), to_shape((<object>x).shape),
                                      <const int64_t*>cnp.PyArray_DATA(y), opt.ptr[0], out)
        return [(out[i].loss, out[i].correct) for i in range(n)]

    def start_step_on(self, CoreDeviceDataset data, cnp.ndarray idx, CoreOptimizer opt):
        """start_step on the samples idx (int64) of a data set held on the net's GPU."""
        cdef LossResult out[2]
        n = self.net.get().start_step_on(data.data.get()[0], <const int64_t*>cnp.PyArray_DATA(idx),
                                         idx.shape[0], opt.ptr[0], out)
        return [(out[i].loss, out[i].correct) for i in range(n)]

    def apply_update(self, CoreOptimizer opt):
        """The optimizer's update from the gradients in the store, waited for."""
        self.net.get().apply_update(opt.ptr[0])

    def finish_steps(self):
        cdef LossResult out[1]
        n = self.net.get().finish_steps(out)
        return [(out[i].loss, out[i].correct) for i in range(n)]

    def step_bytes(self, tuple in_shape, str mode="train", int optimizer_states=1):
        """{place: (parameter bytes, step buffer bytes, bytes not allocated yet)} of a step
        on input ``in_shape``, from the plan the step allocates by."""
        out = {}
        cdef StepMode m = StepMode.Infer if mode == "infer" else StepMode.Train
        for b in self.net.get().step_bytes(to_shape(in_shape), m, optimizer_states):
            place = "cpu" if b.place.device == Device.CPU else f"cuda:{b.place.index}"
            out[place] = (b.parameters, b.buffers, b.missing)
        return out

    def arena_bytes(self, int device):
        """Bytes of the step's arena on CUDA device ``device``."""
        return self.net.get().arena_bytes(device)

    def store_bytes(self, str device):
        """Bytes of the parameter store (values and gradients) on ``device``."""
        return self.net.get().params().bytes(to_place(device))

    def store_devices(self):
        """The devices the parameter store has a span on, in its order."""
        return ["cpu" if p.device == Device.CPU else f"cuda:{p.index}"
                for p in self.net.get().params().places()]

    def grads_span(self, str device, size_t lo=0, hi=None):
        """A host copy of the store's gradient span on ``device`` (every parameter's gradient
        there, each padded to 64 floats with zeros), float32; floats [lo, hi) of it where
        given."""
        cdef Place pl = to_place(device)
        cdef Place host = to_place("cpu")
        cdef size_t n = self.net.get().params().span(pl)
        cdef size_t end = n if hi is None else hi
        if lo > end or end > n:
            raise errors.ShapeError(f"floats [{lo}, {end}) of a gradient span of {n} on {device}")
        out = np.empty(end - lo, dtype=np.float32)
        self.net.get().wait()
        copy_floats(<float*>cnp.PyArray_DATA(out), host, self.net.get().params().grads(pl) + lo,
                    pl, end - lo)
        return out

    def set_grads_span(self, str device, cnp.ndarray src):
        """Writes a float32 C-contiguous array of the span's length into the gradient span."""
        cdef Place pl = to_place(device)
        cdef Place host = to_place("cpu")
        cdef size_t n = self.net.get().params().span(pl)
        if src.shape[0] != n:
            raise errors.ShapeError(f"a gradient span on {device} holds {n} floats, got {src.shape[0]}")
        self.net.get().wait()
        copy_floats(self.net.get().params().grads(pl), pl, <const float*>cnp.PyArray_DATA(src), host, n)

    def set_profiling(self, bint on):
        self.net.get().set_profiling(on)

    def layer_times(self):
        """[(forward seconds, forward calls, backward seconds, backward calls)] per layer."""
        return [(t.forward_s, t.forward_calls, t.backward_s, t.backward_calls)
                for t in self.net.get().layer_times()]

    def param_list(self):
        """[(layer index, name, shape), ...] in state_dict order."""
        cdef size_t i, j
        out = []
        for i in range(self.net.get().layers().size()):
            params = &self.net.get().layers()[i].get().params()
            for j in range(params.size()):
                out.append((i, params[0][j].name.decode(), from_shape(params[0][j].shape)))
        return out

    def buffer_list(self):
        """[(layer index, name, shape, dtype, persistent), ...]: every layer buffer, in net
        and then layer order (torch.nn's buffer order)."""
        cdef size_t i, k
        out = []
        for i in range(self.net.get().layers().size()):
            bufs = &self.net.get().layers()[i].get().buffers()
            for k in range(bufs.size()):
                out.append((i, bufs[0][k].name.decode(), from_shape(bufs[0][k].shape),
                            np.int64 if bufs[0][k].is_int64 else np.float32,
                            bool(bufs[0][k].persistent)))
        return out

    def get_buffer(self, int layer, int index):
        """A host copy of one layer buffer (float32 or int64)."""
        cdef LayerBuffer* b = &self.net.get().layers()[layer].get().buffers()[index]
        out = np.empty(from_shape(b.shape), dtype=np.int64 if b.is_int64 else np.float32)
        self.net.get().wait()
        b.value.copy_to_host(<float*>cnp.PyArray_DATA(out), b.value.size())
        return out

    def set_buffer(self, int layer, int index, cnp.ndarray src):
        """Copies a C-contiguous array of the buffer's shape and dtype into it."""
        cdef LayerBuffer* b = &self.net.get().layers()[layer].get().buffers()[index]
        self.net.get().wait()
        b.value.copy_from_host(<const float*>cnp.PyArray_DATA(src), b.value.size())

    def set_training(self, bint on):
        self.net.get().set_training(on)

    def set_random_stream(self, uint64_t stream):
        """The random stream of the net's Dropout layers (replica r of a data-parallel model
        takes r; the replicas set it themselves)."""
        self.net.get().set_random_stream(stream)

    def training(self):
        return self.net.get().training()

    cdef Param* param(self, int layer, int index) except NULL:
        return &self.net.get().layers()[layer].get().params()[index]

    def get(self, int layer, int index, str which="value"):
        """A host copy of one parameter's value or grad."""
        cdef Param* p = self.param(layer, index)
        out = np.empty(from_shape(p.shape), dtype=np.float32)
        cdef Buffer* b = &p.value if which == "value" else &p.grad
        self.net.get().wait()
        b.copy_to_host(<float*>cnp.PyArray_DATA(out), p.shape.numel())
        return out

    def set(self, int layer, int index, cnp.ndarray src):
        """Copies a float32 C-contiguous array of the parameter's shape into its value."""
        cdef Param* p = self.param(layer, index)
        self.net.get().wait()
        p.value.copy_from_host(<const float*>cnp.PyArray_DATA(src), p.shape.numel())

    def to(self, list places):
        """places: one (device, index) per layer, device 0 = CPU, 1 = CUDA. All or nothing."""
        cdef vector[Place] v
        cdef Place pl
        for device, index in places:
            pl.device = Device.CUDA if device == 1 else Device.CPU
            pl.index = index
            v.push_back(pl)
        self.net.get().to(v)


cdef Place to_place(str device) except *:
    cdef Place pl
    if device == "cpu":
        pl.device = Device.CPU
        pl.index = 0
    else:
        pl.device = Device.CUDA
        pl.index = int(device.split(":")[1])
    return pl


cdef class CoreOptimizer:
    """A C++ hc::Optimizer: its hyper-parameters, step count and state, laid out like the
    parameter store of the net it updates. CoreSGD and CoreAdam make one."""
    cdef Optimizer* ptr  # owned by the subclass

    def state_names(self):
        return [self.ptr.state_name(k).decode() for k in range(self.ptr.state_count())]

    def get_state(self, CoreNet net, int k, int i, tuple shape):
        """A host copy of state k of parameter i (state_dict order) of ``net``."""
        out = np.empty(shape, dtype=np.float32)
        net.net.get().wait()
        self.ptr.get_state(net.net.get().params(), k, i, <float*>cnp.PyArray_DATA(out))
        return out

    def set_state(self, CoreNet net, int k, int i, cnp.ndarray src):
        net.net.get().wait()
        self.ptr.set_state(net.net.get().params(), k, i, <const float*>cnp.PyArray_DATA(src))

    def steps(self):
        return self.ptr.steps()

    def set_steps(self, int64_t steps):
        self.ptr.set_steps(steps)

    def reset(self):
        self.ptr.reset()


cdef class CoreSGD(CoreOptimizer):
    """A C++ hc::Sgd (one momentum buffer per parameter)."""
    cdef unique_ptr[Sgd] opt

    def __cinit__(self, float lr, float momentum, float weight_decay, float dampening=0.0,
                  bint nesterov=False):
        self.opt.reset(new Sgd(sgd_config(lr, momentum, weight_decay, dampening, nesterov)))
        self.ptr = self.opt.get()

    def set_config(self, float lr, float momentum, float weight_decay, float dampening=0.0,
                   bint nesterov=False):
        self.opt.get().set_config(sgd_config(lr, momentum, weight_decay, dampening, nesterov))


cdef class CoreAdam(CoreOptimizer):
    """A C++ hc::Adam (exp_avg and exp_avg_sq per parameter); AdamW with ``decoupled``."""
    cdef unique_ptr[Adam] opt

    def __cinit__(self, float lr, float beta1, float beta2, float eps, float weight_decay,
                  bint decoupled):
        self.opt.reset(new Adam(adam_config(lr, beta1, beta2, eps, weight_decay, decoupled)))
        self.ptr = self.opt.get()

    def set_config(self, float lr, float beta1, float beta2, float eps, float weight_decay,
                   bint decoupled):
        self.opt.get().set_config(adam_config(lr, beta1, beta2, eps, weight_decay, decoupled))


cdef class CoreReplicas:
    """A C++ hc::Replicas over CoreNets (the first is the master), each wholly on one place."""
    cdef unique_ptr[Replicas] reps
    cdef list nets  # keeps the CoreNets alive as long as the replicas

    def __cinit__(self, list nets, list threads):
        cdef vector[Net*] v
        cdef CoreNet n
        for n in nets:
            v.push_back(n.net.get())
        self.nets = list(nets)
        self.reps.reset(new Replicas(v, threads))

    def broadcast(self):
        """The master's weights and layer buffers to every other replica."""
        self.reps.get().broadcast(0)

    def start_step(self, cnp.ndarray x, tuple shape, cnp.ndarray y, list counts, CoreOptimizer opt,
                   CoreDeviceDataset data=None, cnp.ndarray idx=None, int device_replica=0):
        """train_step (or train_step_on, given ``data``) started without waiting where the
        master is on a GPU and the others on the CPU: [(loss, correct)] of the steps finished
        since the last report (the one before this, or this one where steps do not overlap)."""
        cdef LossResult out[1]
        cdef const DeviceDataset* d = NULL
        cdef const int64_t* ip = NULL
        if data is not None:
            d = data.data.get()
            ip = <const int64_t*>cnp.PyArray_DATA(idx)
        n = self.reps.get().start_step(<const float*>cnp.PyArray_DATA(x), to_shape(shape),
                                       <const int64_t*>cnp.PyArray_DATA(y), counts, opt.ptr[0],
                                       d, ip, device_replica, out)
        return [(out[i].loss, out[i].correct) for i in range(n)]

    def finish_steps(self):
        """[(loss, correct)] of the step still running, if any, after waiting for it."""
        cdef LossResult out[1]
        n = self.reps.get().finish_steps(out)
        return [(out[i].loss, out[i].correct) for i in range(n)]

    def compute_grads(self, cnp.ndarray x, tuple shape, cnp.ndarray y, list counts, float weight):
        """(loss, correct) of the gradient pass alone: weight times the batch's gradients in
        the master's store, for apply_update after they are summed further."""
        r = self.reps.get().compute_grads(<const float*>cnp.PyArray_DATA(x), to_shape(shape),
                                          <const int64_t*>cnp.PyArray_DATA(y), counts, weight)
        return r.loss, r.correct

    def apply_update(self, CoreOptimizer opt):
        """The master's update, then its weights (and the buffers) to every replica."""
        self.reps.get().apply_update(opt.ptr[0])

    def set_random_stream(self, uint64_t base):
        """Replica r draws random stream base + r."""
        self.reps.get().set_random_stream(base)

    def last_seconds(self):
        return list(self.reps.get().last_seconds())


cdef Tensor as_tensor(cnp.ndarray a) except *:
    cdef Tensor t
    t.data = <float*>cnp.PyArray_DATA(a)
    t.shape = to_shape((<object>a).shape)
    return t


cdef class CoreDeviceDataset:
    """A C++ hc::DeviceDataset: images (uint8 or float32, C-contiguous) and int64 labels
    copied to CUDA device ``index``."""
    cdef unique_ptr[DeviceDataset] data

    def __cinit__(self, cnp.ndarray images, cnp.ndarray labels, int index):
        cdef Place pl
        pl.device = Device.CUDA
        pl.index = index
        self.data.reset(new DeviceDataset(cnp.PyArray_DATA(images), images.dtype == np.uint8,
                                          to_shape((<object>images).shape),
                                          <const int64_t*>cnp.PyArray_DATA(labels), pl))


cdef class CoreLayer:
    """One C++ layer on the CPU, run on its own: the unit the op tests check against the
    NumPy reference. Arrays must be float32 and C-contiguous."""
    cdef unique_ptr[Layer] layer

    def __cinit__(self, str kind, list args, uint64_t seed=0):
        self.layer = make_layer(kind.encode(), args)
        cdef Rng* rng = new Rng(seed)
        try:
            self.layer.get().init_params(rng[0])
        finally:
            del rng

    def output_shape(self, tuple in_shape):
        return from_shape(self.layer.get().output_shape(to_shape(in_shape)))

    def _copies(self, bint grads):
        """{name: host copy of each parameter's value (or gradient)}"""
        cdef size_t j
        cdef Buffer* b
        out = {}
        cdef vector[Param]* ps = &self.layer.get().params()
        for j in range(ps.size()):
            a = np.empty(from_shape(ps[0][j].shape), dtype=np.float32)
            b = &ps[0][j].grad if grads else &ps[0][j].value
            b.copy_to_host(<float*>cnp.PyArray_DATA(a), a.size)
            out[ps[0][j].name.decode()] = a
        return out

    def params(self):
        """{name: host copy of the value}"""
        return self._copies(False)

    def set_training(self, bint on):
        self.layer.get().set_training(on)

    def buffers(self):
        """{name: host copy of each layer buffer (float32 or int64)}"""
        cdef size_t k
        cdef LayerBuffer* b
        out = {}
        for k in range(self.layer.get().buffers().size()):
            b = &self.layer.get().buffers()[k]
            a = np.empty(from_shape(b.shape), dtype=np.int64 if b.is_int64 else np.float32)
            b.value.copy_to_host(<float*>cnp.PyArray_DATA(a), b.value.size())
            out[b.name.decode()] = a
        return out

    def set_buffer(self, str name, cnp.ndarray a):
        cdef size_t k
        cdef LayerBuffer* b
        for k in range(self.layer.get().buffers().size()):
            b = &self.layer.get().buffers()[k]
            if b.name.decode() == name:
                b.value.copy_from_host(<const float*>cnp.PyArray_DATA(a), b.value.size())
                return
        raise KeyError(name)

    def set_param(self, str name, cnp.ndarray a):
        cdef size_t j
        cdef vector[Param]* ps = &self.layer.get().params()
        for j in range(ps.size()):
            if ps[0][j].name.decode() == name:
                ps[0][j].value.copy_from_host(<const float*>cnp.PyArray_DATA(a), ps[0][j].shape.numel())
                return
        raise KeyError(name)

    def _workspace(self, tuple shape):
        cdef size_t n = self.layer.get().workspace_size(to_shape(shape), max_threads())
        return host_array((max(1, n),))

    def forward(self, cnp.ndarray x):
        cdef cnp.ndarray y = host_array(self.output_shape((<object>x).shape))
        cdef cnp.ndarray ws = self._workspace((<object>x).shape)
        cdef Tensor tx = as_tensor(x), ty = as_tensor(y)
        self.layer.get().forward(tx, ty, <float*>cnp.PyArray_DATA(ws))
        return y

    def backward(self, cnp.ndarray x, cnp.ndarray y, cnp.ndarray dy, bint need_dx=True):
        """(dx or None, {name: gradient})"""
        cdef cnp.ndarray dx = np.empty_like(x)
        cdef cnp.ndarray ws = self._workspace((<object>x).shape)
        cdef Tensor tx = as_tensor(x), ty = as_tensor(y), tdy = as_tensor(dy), tdx = as_tensor(dx)
        self.layer.get().backward(tx, ty, tdy, &tdx if need_dx else NULL,
                                  <float*>cnp.PyArray_DATA(ws))
        return (dx if need_dx else None), self._copies(True)


def loss_cpu(str kind, cnp.ndarray logits, cnp.ndarray labels, float label_smoothing=0.0):
    """(mean loss, correct count, dlogits) of the core's loss op on the CPU."""
    cdef cnp.ndarray d = np.empty_like(logits)
    cdef LossResult r
    if kind == "bce":
        r = sigmoid_bce_cpu(logits.shape[0], <const float*>cnp.PyArray_DATA(logits),
                            <const int64_t*>cnp.PyArray_DATA(labels), <float*>cnp.PyArray_DATA(d))
    else:
        r = softmax_cross_entropy_cpu(logits.shape[0], logits.shape[1],
                                      <const float*>cnp.PyArray_DATA(logits),
                                      <const int64_t*>cnp.PyArray_DATA(labels),
                                      <float*>cnp.PyArray_DATA(d), 1.0, label_smoothing)
    return r.loss, r.correct, d


def validate_sgd(float lr, float momentum, float weight_decay, float dampening=0.0,
                 bint nesterov=False):
    validate(sgd_config(lr, momentum, weight_decay, dampening, nesterov))


def validate_adam(float lr, float beta1, float beta2, float eps, float weight_decay,
                  bint decoupled):
    validate(adam_config(lr, beta1, beta2, eps, weight_decay, decoupled))


def build_info():
    b = c_build_info()
    return {"version": b.version.decode(), "openmp": b.openmp, "threads": b.threads,
            "cuda_compiled": b.cuda_compiled, "gemm_kernel": b.gemm_kernel.decode(),
            "relu_fusion": b.relu_fusion}


def cuda_device_count():
    """Usable CUDA devices (0 without CUDA in the build, a driver or a GPU)."""
    return c_cuda_device_count()


def cuda_device(int index):
    """Name, compute capability and memory of CUDA device ``index``."""
    d = device_info(index)
    return {"index": d.index, "name": d.name.decode(), "compute_capability": (d.major, d.minor),
            "total_bytes": d.total_bytes, "free_bytes": d.free_bytes,
            "multiprocessors": d.multiprocessors}


def time_copy(str src, str dst, size_t nbytes, int repeats):
    """Seconds per copy of ``nbytes`` from device ``src`` to ``dst`` ("cpu", "cuda:N"), the
    best of ``repeats`` after one untimed copy (copies return when done)."""
    import time
    cdef size_t count = max(<size_t>1, nbytes // 4)
    cdef Place ps = to_place(src), pd = to_place(dst)
    cdef unique_ptr[Buffer] a
    cdef unique_ptr[Buffer] b
    a.reset(new Buffer(count, ps))
    b.reset(new Buffer(count, pd))
    best = float("inf")
    for i in range(repeats + 1):
        t0 = time.perf_counter()
        copy_floats(b.get().data(), pd, a.get().data(), ps, count)
        if i:
            best = min(best, time.perf_counter() - t0)
    return best


def set_threads(int n):
    c_set_threads(n)


def gather_batch(images, idx, out, float scale):
    """out = images[idx] as float32, uint8 images times ``scale`` (in float32, as numpy's
    multiply by a float32 scale), on the OpenMP team: images (N, ...) uint8 or float32 and
    C-contiguous, idx (n,) int64, out (n, ...) float32 and C-contiguous with images' sample
    shape. Returns out."""
    if not all(isinstance(a, np.ndarray) for a in (images, idx, out)):
        raise errors.DTypeError("gather_batch: images, idx and out must be numpy arrays")
    if images.dtype != np.uint8 and images.dtype != np.float32:
        raise errors.DTypeError(f"gather_batch: images must be uint8 or float32, got "
                                f"{images.dtype}")
    if out.dtype != np.float32 or idx.dtype != np.int64:
        raise errors.DTypeError(f"gather_batch: out must be float32 and idx int64, got "
                                f"{out.dtype} and {idx.dtype}")
    if not (images.flags.c_contiguous and out.flags.c_contiguous and idx.flags.c_contiguous):
        raise errors.DTypeError("gather_batch: images, idx and out must be C-contiguous")
    if (idx.ndim != 1 or images.ndim < 1 or out.ndim != images.ndim
            or out.shape[0] != idx.shape[0]
            or tuple(out.shape[1:]) != tuple(images.shape[1:])):
        raise errors.ShapeError(f"gather_batch: images {tuple(images.shape)}, idx "
                                f"{tuple(idx.shape)} and out {tuple(out.shape)} do not fit "
                                "(out must be (len(idx),) + images.shape[1:])")
    cdef int64_t n = idx.shape[0], N = images.shape[0]
    cdef int64_t S = images.size // N if N > 0 else 0
    c_gather_batch_cpu(cnp.PyArray_DATA(<cnp.ndarray>images), images.dtype == np.uint8, N, S,
                       <const int64_t*>cnp.PyArray_DATA(<cnp.ndarray>idx), n, scale,
                       <float*>cnp.PyArray_DATA(<cnp.ndarray>out))
    return out


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
