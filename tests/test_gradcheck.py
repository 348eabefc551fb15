"""Finite-difference gradient checks of every layer and both losses.

The core computes in float32, so each check uses the scalar L = sum(f(x) * r) with random r,
evaluated in float64 from the float32 outputs, and a central difference with step h = 1e-2:
 - rounding: every output carries a relative error below a few float32 epsilons, so L carries
   at most ~8 * 2**-24 * sum|f(x) * r|, and the difference quotient at most that / h;
 - truncation: O(h**2 * f''') — zero for the (piecewise) linear layers, whose inputs are kept
   more than h away from their kinks, and ~1e-4 relative for sigmoid and the losses.
The tolerance is that rounding bound plus 1e-3 relative: loose enough for float32, tight
enough that a wrong index or a missing term (errors of order 1) fails.
The NumPy reference is checked the same way in float64 with h = 1e-6, so the spec itself is
differentiated correctly."""

import numpy as np
import pytest

import heterocnn._core as core
import reference as ref

F32 = np.float32
H32 = 1e-2


def _coords(rng, shape, n=12):
    size = int(np.prod(shape))
    return [np.unravel_index(i, shape) for i in rng.choice(size, min(n, size), replace=False)]


def _fd_check(f, arrays, analytic, rng, h=H32, eps=2.0**-24):
    """f(arrays) -> (L as float64, sum|terms|); perturb random coordinates of each array."""
    for name, a in arrays.items():
        for idx in _coords(rng, a.shape):
            old = a[idx]
            a[idx] = old + h
            lp, scale = f()
            a[idx] = old - h
            lm, _ = f()
            a[idx] = old
            fd = (lp - lm) / (2 * h)
            an = float(analytic[name][idx])
            tol = 8 * eps * scale / h + 1e-3 * max(abs(an), abs(fd)) + 1e-6
            assert abs(fd - an) <= tol, f"{name}{idx}: finite difference {fd}, analytic {an}"


def _check_layer(rng, layer, x, param_names=("weight", "bias")):
    params = {k: v for k, v in layer.params().items() if k in param_names}
    y = layer.forward(x)
    r = rng.standard_normal(y.shape).astype(F32)
    dx, grads = layer.backward(x, y, r)

    def loss():
        for k, v in params.items():
            layer.set_param(k, v)
        out = layer.forward(x).astype(np.float64)
        return float((out * r).sum()), float(np.abs(out * r).sum())

    _fd_check(loss, {"x": x, **params}, {"x": dx, **grads}, rng)


def _away_from_zero(rng, shape, gap=3 * H32):
    """Random values with |v| >= gap, so a step of h never crosses a kink at 0."""
    v = rng.standard_normal(shape)
    return (np.sign(v) * (gap + np.abs(v))).astype(F32)


@pytest.mark.parametrize("N,C,H,W,M,K,stride,pad", [
    (1, 1, 5, 5, 2, 3, 1, 0), (2, 3, 7, 6, 5, 3, 2, 1), (1, 5, 6, 7, 3, 5, 1, 2),
    (2, 3, 8, 8, 4, 3, 3, 2), (1, 2, 4, 5, 3, 1, 1, 0),
    (1, 64, 5, 3, 64, 3, 1, 1)])  # Winograd's F(2x2, 3x3) in every pass (AVX-512 or AVX2 CPUs)
def test_conv2d_gradients(rng, N, C, H, W, M, K, stride, pad):
    layer = core.CoreLayer("Conv2d", [C, M, K, stride, pad], 3)
    layer.set_param("bias", rng.standard_normal(M).astype(F32))
    _check_layer(rng, layer, rng.standard_normal((N, C, H, W)).astype(F32))


@pytest.mark.parametrize("N,I,O", [(1, 5, 3), (4, 17, 9)])
def test_linear_gradients(rng, N, I, O):
    layer = core.CoreLayer("Linear", [I, O], 4)
    layer.set_param("bias", rng.standard_normal(O).astype(F32))
    _check_layer(rng, layer, rng.standard_normal((N, I)).astype(F32))


@pytest.mark.parametrize("N,C,H,W,K,stride", [(2, 3, 7, 9, 2, 2), (1, 2, 6, 5, 3, 2),
                                              (1, 1, 5, 5, 2, 1)])
def test_maxpool2d_gradients(rng, N, C, H, W, K, stride):
    # Distinct values 3h apart: no step of h changes which element is a window's maximum.
    size = N * C * H * W
    x = (rng.permutation(size) * 3 * H32).reshape(N, C, H, W).astype(F32)
    _check_layer(rng, core.CoreLayer("MaxPool2d", [K, stride]), x)


def test_relu_gradients(rng):
    _check_layer(rng, core.CoreLayer("ReLU", []), _away_from_zero(rng, (3, 4, 5, 2)))


def test_sigmoid_gradients(rng):
    _check_layer(rng, core.CoreLayer("Sigmoid", []), rng.standard_normal((3, 7)).astype(F32))


@pytest.mark.parametrize("N,C,H,W,K,stride,pad", [(3, 5, 7, 9, 3, 2, 1), (2, 3, 7, 9, 2, 2, 0),
                                                  (1, 2, 6, 5, 3, 1, 1)])
def test_avgpool2d_gradients(rng, N, C, H, W, K, stride, pad):
    x = rng.standard_normal((N, C, H, W)).astype(F32)
    _check_layer(rng, core.CoreLayer("AvgPool2d", [K, stride, pad]), x)


@pytest.mark.parametrize("out", [1, 3, 4])
def test_adaptive_avgpool2d_gradients(rng, out):
    x = rng.standard_normal((3, 5, 7, 9)).astype(F32)
    _check_layer(rng, core.CoreLayer("AdaptiveAvgPool2d", [out]), x)


def test_tanh_gradients(rng):
    _check_layer(rng, core.CoreLayer("Tanh", []), (2 * rng.standard_normal((3, 7))).astype(F32))


@pytest.mark.parametrize("slope", [0.01, 0.2, -0.5])
def test_leaky_relu_gradients(rng, slope):
    _check_layer(rng, core.CoreLayer("LeakyReLU", [slope]), _away_from_zero(rng, (3, 4, 5, 2)))


@pytest.mark.parametrize("args", [[], [1]])  # exact, tanh
def test_gelu_gradients(rng, args):
    _check_layer(rng, core.CoreLayer("GELU", args), (2 * rng.standard_normal((3, 4, 5))).astype(F32))


@pytest.mark.parametrize("N,C,H,W,M,K,stride,pad", [(2, 3, 7, 6, 5, 3, 2, 1),
                                                    (1, 2, 4, 5, 3, 1, 1, 0)])
def test_conv2d_without_bias_gradients(rng, N, C, H, W, M, K, stride, pad):
    layer = core.CoreLayer("Conv2d", [C, M, K, stride, pad, 0], 3)
    _check_layer(rng, layer, rng.standard_normal((N, C, H, W)).astype(F32), ("weight",))


def test_linear_without_bias_gradients(rng):
    layer = core.CoreLayer("Linear", [17, 9, 0], 4)
    _check_layer(rng, layer, rng.standard_normal((4, 17)).astype(F32), ("weight",))


def test_flatten_gradients(rng):
    # A view: the net moves no data, so check it through a net with Flatten before Linear.
    import heterocnn as hc
    model = hc.Sequential(hc.Conv2d(2, 3, 3), hc.Flatten(), hc.Linear(3 * 3 * 4, 4), seed=5)
    x = rng.standard_normal((2, 2, 5, 6)).astype(F32)
    y = rng.integers(0, 4, 2)
    _, grads = model.loss_and_grads(x, y)
    state = model.state_dict()

    def loss():
        model.load_state_dict(state)
        logits = model(x).astype(np.float64)
        value, _ = ref.softmax_cross_entropy(logits, y)
        return value, float(np.abs(logits).sum())

    _fd_check(loss, state, grads, rng)


@pytest.mark.parametrize("kind,N,K", [("cross_entropy", 1, 10), ("cross_entropy", 6, 4),
                                      ("bce", 5, 1)])
def test_loss_gradients(rng, kind, N, K):
    z = (2 * rng.standard_normal((N, K))).astype(F32)
    labels = rng.integers(0, 2 if kind == "bce" else K, N).astype(np.int64)
    _, _, dz = core.loss_cpu(kind, z, labels)

    def loss():
        value, _, _ = core.loss_cpu(kind, z, labels)
        return value, abs(value)

    _fd_check(loss, {"z": z}, {"z": dz}, rng)


# -- the reference itself, in float64 ---------------------------------------------------

def _fd64(f, a, rng, h=1e-6):
    grad = np.zeros_like(a)
    for idx in _coords(rng, a.shape, 8):
        old = a[idx]
        a[idx] = old + h
        lp = f()
        a[idx] = old - h
        lm = f()
        a[idx] = old
        grad[idx] = (lp - lm) / (2 * h)
    return grad


def test_reference_conv2d_backward_is_its_gradient(rng):
    x, w = rng.standard_normal((2, 3, 6, 5)), rng.standard_normal((4, 3, 3, 3))
    b = rng.standard_normal(4)
    r = rng.standard_normal(ref.conv2d_forward(x, w, b, 2, 1).shape)
    dx, dw, db = ref.conv2d_backward(x, w, r, 2, 1)
    L = lambda: (ref.conv2d_forward(x, w, b, 2, 1) * r).sum()  # noqa: E731
    for a, g in ((x, dx), (w, dw), (b, db)):
        fd = _fd64(L, a, rng)
        mask = fd != 0
        np.testing.assert_allclose(fd[mask], g[mask], rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("fwd,bwd", [
    (lambda x: ref.avgpool2d_forward(x, 3, 2, 1),
     lambda x, r: ref.avgpool2d_backward(x.shape, r, 3, 2, 1)),
    (lambda x: ref.adaptive_avgpool2d_forward(x, 4),
     lambda x, r: ref.adaptive_avgpool2d_backward(x.shape, r, 4)),
    (ref.tanh_forward, lambda x, r: ref.tanh_backward(ref.tanh_forward(x), r)),
    (lambda x: ref.leaky_relu_forward(x, 0.2), lambda x, r: ref.leaky_relu_backward(x, r, 0.2)),
    (ref.gelu_forward, ref.gelu_backward), (ref.gelu_tanh_forward, ref.gelu_tanh_backward)])
def test_reference_pooling_and_activations_are_differentiated_correctly(rng, fwd, bwd):
    x = rng.standard_normal((2, 3, 7, 9))
    r = rng.standard_normal(fwd(x).shape)
    fd = _fd64(lambda: (fwd(x) * r).sum(), x, rng)
    mask = fd != 0
    np.testing.assert_allclose(fd[mask], bwd(x, r)[mask], rtol=1e-6, atol=1e-7)


def test_reference_losses_are_differentiated_correctly(rng):
    z = rng.standard_normal((4, 5))
    y = rng.integers(0, 5, 4)
    _, dz = ref.softmax_cross_entropy(z, y)
    fd = _fd64(lambda: ref.softmax_cross_entropy(z, y)[0], z, rng)
    np.testing.assert_allclose(fd[fd != 0], dz[fd != 0], rtol=1e-6, atol=1e-8)
    zb, yb = rng.standard_normal((6, 1)), rng.integers(0, 2, 6)
    _, dzb = ref.sigmoid_bce(zb, yb)
    fd = _fd64(lambda: ref.sigmoid_bce(zb, yb)[0], zb, rng)
    np.testing.assert_allclose(fd[fd != 0], dzb[fd != 0], rtol=1e-6, atol=1e-8)
