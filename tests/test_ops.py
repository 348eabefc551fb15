"""Every CPU op of the core against the NumPy reference (tests/reference.py), forward and
backward, on random odd shapes: batch 1, non-square images, stride 2, padding 2, channels 3
and 5, kernels and pooling windows that don't divide the input."""

import numpy as np
import pytest

import heterocnn._core as core
import reference as ref
from conftest import rel_err

F32 = np.float32
# float32 results against float64 references: each output is a sum of at most a few thousand
# products, so the relative error of the whole array stays near sqrt(K) * 2**-24 ~ 1e-6.
TOL = 1e-5

CONV_CASES = [  # N, C, H, W, M, K, stride, pad
    (1, 1, 5, 5, 2, 3, 1, 0),
    (2, 3, 7, 6, 5, 3, 2, 1),
    (3, 5, 9, 11, 4, 5, 1, 2),
    (2, 3, 8, 8, 6, 3, 3, 2),
    (1, 2, 4, 6, 3, 1, 1, 0),
    (2, 4, 10, 7, 7, 4, 2, 0),
    (1, 3, 5, 4, 2, 5, 1, 2),
    (16, 1, 28, 28, 6, 5, 1, 2),
    (4, 6, 14, 14, 16, 5, 1, 0),   # lenet5 conv2
    (2, 32, 14, 14, 64, 3, 1, 1),  # convnet conv3: Winograd forward and dx, direct dw
    (3, 64, 7, 9, 64, 3, 1, 1),    # Winograd in every pass: odd sizes, last tiles half out
    (2, 33, 5, 6, 65, 3, 1, 0),    # Winograd forward and dx, no padding (dx padded by 2)
    (1, 64, 6, 5, 80, 3, 1, 2),    # Winograd in every pass, padding 2 (dx unpadded)
]


def conv_layer(rng, C, M, K, stride, pad):
    layer = core.CoreLayer("Conv2d", [C, M, K, stride, pad], int(rng.integers(2**31)))
    layer.set_param("bias", rng.standard_normal(M).astype(F32))
    return layer


@pytest.mark.parametrize("N,C,H,W,M,K,stride,pad", CONV_CASES)
def test_conv2d_matches_reference(rng, N, C, H, W, M, K, stride, pad):
    layer = conv_layer(rng, C, M, K, stride, pad)
    p = layer.params()
    x = rng.standard_normal((N, C, H, W)).astype(F32)
    y = layer.forward(x)
    y_ref = ref.conv2d_forward(x.astype(np.float64), p["weight"], p["bias"], stride, pad)
    assert y.shape == y_ref.shape
    assert rel_err(y, y_ref) < TOL
    dy = rng.standard_normal(y.shape).astype(F32)
    dx, g = layer.backward(x, y, dy)
    dx_ref, dw_ref, db_ref = ref.conv2d_backward(x.astype(np.float64), p["weight"], dy, stride, pad)
    assert rel_err(dx, dx_ref) < TOL
    assert rel_err(g["weight"], dw_ref) < TOL
    assert rel_err(g["bias"], db_ref) < TOL


def test_conv2d_backward_without_dx_still_gives_param_grads(rng):
    layer = conv_layer(rng, 3, 4, 3, 1, 1)
    x = rng.standard_normal((2, 3, 6, 5)).astype(F32)
    y = layer.forward(x)
    dy = rng.standard_normal(y.shape).astype(F32)
    dx, g = layer.backward(x, y, dy, need_dx=False)
    _, g_full = layer.backward(x, y, dy)
    assert dx is None
    np.testing.assert_array_equal(g["weight"], g_full["weight"])


@pytest.mark.parametrize("N,I,O", [(1, 7, 3), (5, 33, 17), (64, 784, 256), (3, 1, 1)])
def test_linear_matches_reference(rng, N, I, O):
    layer = core.CoreLayer("Linear", [I, O], 1)
    layer.set_param("bias", rng.standard_normal(O).astype(F32))
    p = layer.params()
    x = rng.standard_normal((N, I)).astype(F32)
    y = layer.forward(x)
    assert rel_err(y, ref.linear_forward(x.astype(np.float64), p["weight"], p["bias"])) < TOL
    dy = rng.standard_normal(y.shape).astype(F32)
    dx, g = layer.backward(x, y, dy)
    dx_ref, dw_ref, db_ref = ref.linear_backward(x.astype(np.float64), p["weight"], dy)
    assert rel_err(dx, dx_ref) < TOL
    assert rel_err(g["weight"], dw_ref) < TOL
    assert rel_err(g["bias"], db_ref) < TOL


POOL_CASES = [  # N, C, H, W, K, stride
    (2, 3, 7, 9, 2, 2),
    (1, 5, 6, 5, 3, 2),
    (2, 2, 8, 8, 2, 1),
    (1, 1, 4, 4, 4, 4),
    (3, 4, 11, 6, 3, 3),
    (2, 2, 5, 141, 2, 2),  # 2x2 fast path: a row longer than one chunk, odd H and W
]


@pytest.mark.parametrize("N,C,H,W,K,stride", POOL_CASES)
def test_maxpool2d_matches_reference(rng, N, C, H, W, K, stride):
    layer = core.CoreLayer("MaxPool2d", [K, stride])
    x = rng.standard_normal((N, C, H, W)).astype(F32)
    y = layer.forward(x)
    np.testing.assert_array_equal(y, ref.maxpool2d_forward(x, K, stride).astype(F32))
    dy = rng.standard_normal(y.shape).astype(F32)
    dx, _ = layer.backward(x, y, dy)
    assert rel_err(dx, ref.maxpool2d_backward(x, dy, K, stride)) < TOL


def test_maxpool2d_routes_ties_to_the_first_maximum():
    layer = core.CoreLayer("MaxPool2d", [2, 2])
    x = np.ones((1, 1, 2, 2), dtype=F32)
    y = layer.forward(x)
    dx, _ = layer.backward(x, y, np.full((1, 1, 1, 1), 3.0, dtype=F32))
    np.testing.assert_array_equal(dx[0, 0], [[3, 0], [0, 0]])


@pytest.mark.parametrize("kind", ["ReLU", "Sigmoid"])
@pytest.mark.parametrize("shape", [(3, 5, 7, 2), (4, 9), (1, 1), (2, 300, 200)])
def test_activations_match_reference(rng, kind, shape):
    layer = core.CoreLayer(kind, [])
    x = (3 * rng.standard_normal(shape)).astype(F32)
    y = layer.forward(x)
    fwd, bwd = {"ReLU": (ref.relu_forward, ref.relu_backward),
                "Sigmoid": (ref.sigmoid_forward, ref.sigmoid_backward)}[kind]
    y_ref = fwd(x.astype(np.float64))
    assert rel_err(y, y_ref) < TOL
    dy = rng.standard_normal(shape).astype(F32)
    dx, _ = layer.backward(x, y, dy)
    assert rel_err(dx, bwd(y_ref, dy)) < TOL


@pytest.mark.parametrize("N,K", [(1, 10), (7, 3), (64, 10), (5, 1)])
def test_softmax_cross_entropy_matches_reference(rng, N, K):
    z = (4 * rng.standard_normal((N, K))).astype(F32)
    labels = rng.integers(0, K, N).astype(np.int64)
    loss, correct, dz = core.loss_cpu("cross_entropy", z, labels)
    loss_ref, dz_ref = ref.softmax_cross_entropy(z.astype(np.float64), labels)
    assert abs(loss - loss_ref) <= 1e-6 * max(1.0, abs(loss_ref))
    assert rel_err(dz, dz_ref) < TOL
    assert correct == int((z.argmax(axis=1) == labels).sum())


@pytest.mark.parametrize("N", [1, 6, 33])
def test_sigmoid_bce_matches_reference(rng, N):
    z = (4 * rng.standard_normal((N, 1))).astype(F32)
    labels = rng.integers(0, 2, N).astype(np.int64)
    loss, correct, dz = core.loss_cpu("bce", z, labels)
    loss_ref, dz_ref = ref.sigmoid_bce(z.astype(np.float64), labels)
    assert abs(loss - loss_ref) <= 1e-6 * max(1.0, abs(loss_ref))
    assert rel_err(dz, dz_ref) < TOL
    assert correct == int(((z[:, 0] > 0) == (labels == 1)).sum())


@pytest.mark.parametrize("kind", ["cross_entropy", "bce"])
def test_losses_stay_finite_on_extreme_logits(kind):
    z = np.array([[1000.0, -1000.0], [-1000.0, 1000.0], [88.0, -88.0]], dtype=F32)
    if kind == "bce":
        z = z[:, :1].copy()
    labels = np.array([1, 0, 1] if kind == "cross_entropy" else [0, 1, 0], dtype=np.int64)
    loss, _, dz = core.loss_cpu(kind, z, labels)
    assert np.isfinite(loss) and np.isfinite(dz).all()
    loss_ref, dz_ref = (ref.softmax_cross_entropy if kind == "cross_entropy" else ref.sigmoid_bce)(
        z.astype(np.float64), labels)
    assert abs(loss - loss_ref) <= 1e-6 * abs(loss_ref)
    assert rel_err(dz, dz_ref) < TOL


def test_reference_im2col_and_col2im_are_adjoint(rng):
    x = rng.standard_normal((3, 7, 6))
    col = im = ref.im2col(x, 3, 2, 1)
    c = rng.standard_normal(col.shape)
    assert abs((im * c).sum() - (x * ref.col2im(c, x.shape, 3, 2, 1)).sum()) < 1e-9


@pytest.mark.parametrize("K,stride", [(2, 2), (3, 2)])
def test_maxpool2d_nan_wins_and_takes_the_gradient(K, stride):
    # As in PyTorch, a NaN in a window is its maximum; the first NaN gets the gradient.
    layer = core.CoreLayer("MaxPool2d", [K, stride])
    x = np.zeros((1, 1, 4, 4), dtype=F32)
    x[0, 0, 0, 1] = np.nan
    x[0, 0, 1, 0] = np.nan
    x[0, 0, 1, 1] = 5
    y = layer.forward(x)
    assert np.isnan(y[0, 0, 0, 0])
    dx, _ = layer.backward(x, y, np.full(y.shape, 2.0, dtype=F32))
    assert dx[0, 0, 0, 1] == 2 and dx[0, 0, 1, 0] == 0 and dx[0, 0, 1, 1] == 0


# -- average pooling, Tanh, LeakyReLU, GELU, and convolutions and linear layers without bias --

AVGPOOL_CASES = [  # N, C, H, W, K, stride, pad
    (3, 5, 7, 9, 3, 2, 1),
    (2, 3, 7, 9, 2, 2, 0),
    (1, 2, 6, 5, 3, 1, 1),
    (2, 2, 5, 141, 2, 2, 1),
    (1, 1, 4, 4, 4, 4, 2),
    (3, 4, 11, 6, 3, 3, 0),
    (2, 3, 8, 8, 5, 2, 2),
]


@pytest.mark.parametrize("N,C,H,W,K,stride,pad", AVGPOOL_CASES)
def test_avgpool2d_matches_reference(rng, N, C, H, W, K, stride, pad):
    layer = core.CoreLayer("AvgPool2d", [K, stride, pad])
    x = rng.standard_normal((N, C, H, W)).astype(F32)
    y = layer.forward(x)
    y_ref = ref.avgpool2d_forward(x.astype(np.float64), K, stride, pad)
    assert y.shape == y_ref.shape
    assert rel_err(y, y_ref) < TOL
    dy = rng.standard_normal(y.shape).astype(F32)
    dx, _ = layer.backward(x, y, dy)
    assert rel_err(dx, ref.avgpool2d_backward(x.shape, dy, K, stride, pad)) < TOL


@pytest.mark.parametrize("N,C,H,W,out", [
    (3, 5, 7, 9, 1), (3, 5, 7, 9, 3), (2, 3, 7, 9, 4), (2, 2, 3, 4, 5), (1, 1, 1, 1, 1),
    (4, 64, 14, 14, 1), (2, 3, 6, 6, 2)])
def test_adaptive_avgpool2d_matches_reference(rng, N, C, H, W, out):
    layer = core.CoreLayer("AdaptiveAvgPool2d", [out])
    x = rng.standard_normal((N, C, H, W)).astype(F32)
    y = layer.forward(x)
    y_ref = ref.adaptive_avgpool2d_forward(x.astype(np.float64), out)
    assert y.shape == (N, C, out, out)
    assert rel_err(y, y_ref) < TOL
    dy = rng.standard_normal(y.shape).astype(F32)
    dx, _ = layer.backward(x, y, dy)
    assert rel_err(dx, ref.adaptive_avgpool2d_backward(x.shape, dy, out)) < TOL


def _wide_inputs(rng, shape):
    """Normal values scaled by 3, with large ones of both signs (saturation, the tails)."""
    x = 3 * rng.standard_normal(shape)
    flat = x.reshape(-1)
    picks = rng.choice(flat.size, max(1, flat.size // 10), replace=False)
    flat[picks] = rng.choice([-1, 1], picks.size) * rng.uniform(8, 40, picks.size)
    return x.astype(F32)


@pytest.mark.parametrize("kind,args", [("Tanh", []), ("LeakyReLU", [0.01]),
                                       ("LeakyReLU", [0.3]), ("LeakyReLU", [-0.5]),
                                       ("GELU", []), ("GELU", [1])])
@pytest.mark.parametrize("shape", [(3, 5, 7, 9), (4, 9), (1, 1), (2, 300, 200)])
def test_new_activations_match_reference(rng, kind, args, shape):
    layer = core.CoreLayer(kind, args)
    x = _wide_inputs(rng, shape)
    x64 = x.astype(np.float64)
    y = layer.forward(x)
    dy = rng.standard_normal(shape).astype(F32)
    dx, _ = layer.backward(x, y, dy)
    if kind == "Tanh":
        y_ref = ref.tanh_forward(x64)
        dx_ref = ref.tanh_backward(y_ref, dy)
    elif kind == "LeakyReLU":
        y_ref = ref.leaky_relu_forward(x64, args[0])
        dx_ref = ref.leaky_relu_backward(x64, dy, args[0])
    elif args:  # GELU(approximate="tanh")
        y_ref = ref.gelu_tanh_forward(x64)
        dx_ref = ref.gelu_tanh_backward(x64, dy)
    else:
        y_ref = ref.gelu_forward(x64)
        dx_ref = ref.gelu_backward(x64, dy)
    assert rel_err(y, y_ref) < TOL
    assert rel_err(dx, dx_ref) < TOL


def test_new_activations_pass_nan_through():
    x = np.array([[np.nan, -1.0, 2.0]], dtype=F32)
    for kind, args in (("Tanh", []), ("LeakyReLU", [0.1]), ("GELU", []), ("GELU", [1])):
        y = core.CoreLayer(kind, args).forward(x)
        assert np.isnan(y[0, 0]) and np.isfinite(y[0, 1:]).all(), kind


@pytest.mark.parametrize("N,C,H,W,M,K,stride,pad", [
    (3, 5, 7, 9, 4, 3, 2, 1), (1, 1, 5, 5, 2, 3, 1, 0), (2, 4, 6, 5, 3, 1, 1, 0),
    (16, 1, 28, 28, 6, 5, 1, 2), (2, 32, 14, 14, 64, 3, 1, 1)])
def test_conv2d_without_bias_matches_reference(rng, N, C, H, W, M, K, stride, pad):
    # Every CPU path (GEMM over im2col, 1x1 on the input itself, the direct kernels).
    layer = core.CoreLayer("Conv2d", [C, M, K, stride, pad, 0], 5)
    p = layer.params()
    assert list(p) == ["weight"]
    x = rng.standard_normal((N, C, H, W)).astype(F32)
    y = layer.forward(x)
    zero = np.zeros(M)
    assert rel_err(y, ref.conv2d_forward(x.astype(np.float64), p["weight"], zero, stride,
                                         pad)) < TOL
    dy = rng.standard_normal(y.shape).astype(F32)
    dx, g = layer.backward(x, y, dy)
    dx_ref, dw_ref, _ = ref.conv2d_backward(x.astype(np.float64), p["weight"], dy, stride, pad)
    assert list(g) == ["weight"]
    assert rel_err(dx, dx_ref) < TOL
    assert rel_err(g["weight"], dw_ref) < TOL


@pytest.mark.parametrize("N,I,O", [(3, 7, 5), (64, 784, 256)])
def test_linear_without_bias_matches_reference(rng, N, I, O):
    layer = core.CoreLayer("Linear", [I, O, 0], 1)
    p = layer.params()
    assert list(p) == ["weight"]
    x = rng.standard_normal((N, I)).astype(F32)
    y = layer.forward(x)
    assert rel_err(y, ref.linear_forward(x.astype(np.float64), p["weight"], 0.0)) < TOL
    dy = rng.standard_normal(y.shape).astype(F32)
    dx, g = layer.backward(x, y, dy)
    dx_ref, dw_ref, _ = ref.linear_backward(x.astype(np.float64), p["weight"], dy)
    assert list(g) == ["weight"]
    assert rel_err(dx, dx_ref) < TOL
    assert rel_err(g["weight"], dw_ref) < TOL


@pytest.mark.parametrize("kind,args,match", [
    ("AvgPool2d", [3, 2, 2], "padding must be at most"),
    ("AvgPool2d", [0, 1, 0], "positive"),
    ("AdaptiveAvgPool2d", [0], "output_size"),
    ("LeakyReLU", [float("inf")], "finite"),
    ("Conv2d", [1, 2, 3, 1, 0, 2], "must be 0 or 1"),
    ("Linear", [3, 4, 0.5], "must be 0 or 1"),
    ("Linear", [3, 4, 1, 1], "takes 2 to 3 arguments"),
    ("GELU", [2], "must be 0 or 1"),
    ("GELU", [1, 0], "takes 0 to 1 arguments"),
])
def test_new_layer_specs_are_checked_by_the_core(kind, args, match):
    with pytest.raises(ValueError, match=match):
        core.CoreLayer(kind, args)
