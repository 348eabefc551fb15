"""Sequential end to end against the reference: logits, gradients of every parameter, SGD
steps; state_dict layout and round trip; He init; determinism."""

import numpy as np
import pytest

import heterocnn as hc
import reference as ref
from conftest import rel_err

F32 = np.float32


def ref_forward_backward(model, state, x, y):
    """(logits, loss, grads) of ``model``'s architecture with weights ``state``, in float64."""
    acts, h = [], x.astype(np.float64)
    for i, layer in enumerate(model.layers):
        acts.append(h)
        if isinstance(layer, hc.Conv2d):
            h = ref.conv2d_forward(h, state[f"{i}.weight"], state[f"{i}.bias"], layer.stride,
                                   layer.padding)
        elif isinstance(layer, hc.Linear):
            h = ref.linear_forward(h, state[f"{i}.weight"], state[f"{i}.bias"])
        elif isinstance(layer, hc.MaxPool2d):
            h = ref.maxpool2d_forward(h, layer.kernel_size, layer.stride)
        elif isinstance(layer, hc.ReLU):
            h = ref.relu_forward(h)
        elif isinstance(layer, hc.Sigmoid):
            h = ref.sigmoid_forward(h)
        elif isinstance(layer, hc.Flatten):
            h = h.reshape(len(h), -1)
    loss_fn = ref.sigmoid_bce if model.loss == "bce" else ref.softmax_cross_entropy
    loss, d = loss_fn(h, y)
    grads = {}
    for i in reversed(range(len(model.layers))):
        layer, a = model.layers[i], acts[i]
        if isinstance(layer, hc.Conv2d):
            d, grads[f"{i}.weight"], grads[f"{i}.bias"] = ref.conv2d_backward(
                a, state[f"{i}.weight"], d, layer.stride, layer.padding)
        elif isinstance(layer, hc.Linear):
            d, grads[f"{i}.weight"], grads[f"{i}.bias"] = ref.linear_backward(
                a, state[f"{i}.weight"], d)
        elif isinstance(layer, hc.MaxPool2d):
            d = ref.maxpool2d_backward(a, d, layer.kernel_size, layer.stride)
        elif isinstance(layer, hc.ReLU):
            d = ref.relu_backward(ref.relu_forward(a), d)
        elif isinstance(layer, hc.Sigmoid):
            d = ref.sigmoid_backward(ref.sigmoid_forward(a), d)
        elif isinstance(layer, hc.Flatten):
            d = d.reshape(a.shape)
    return h, loss, grads


def small_convnet(seed=0, loss="cross_entropy", classes=5):
    """For (N, 3, 11, 7) input: conv -> (5,7,5), pool -> (5,3,2), conv -> (4,4,3),
    pool 3/2 -> (4,1,1)."""
    return hc.Sequential(
        hc.Conv2d(3, 5, 3, stride=2, padding=2), hc.ReLU(), hc.MaxPool2d(2),
        hc.Conv2d(5, 4, 2, padding=1), hc.Sigmoid(), hc.MaxPool2d(3, stride=2),
        hc.Flatten(), hc.Linear(4, 7), hc.ReLU(), hc.Linear(7, classes),
        loss=loss, seed=seed)


@pytest.mark.parametrize("N", [1, 3])
def test_small_convnet_matches_reference(rng, N):
    model = small_convnet(seed=N)
    x = rng.standard_normal((N, 3, 11, 7)).astype(F32)
    y = rng.integers(0, 5, N)
    state = model.state_dict()
    logits_ref, loss_ref, grads_ref = ref_forward_backward(model, state, x, y)
    assert model.output_shape(x.shape) == (N, 5)
    assert rel_err(model(x), logits_ref) < 1e-5
    loss, grads = model.loss_and_grads(x, y)
    assert abs(loss - loss_ref) < 1e-5 * max(1, abs(loss_ref))
    assert list(grads) == list(state)
    for key in state:
        assert rel_err(grads[key], grads_ref[key]) < 1e-4, key


def test_bce_model_matches_reference(rng):
    model = hc.Sequential(hc.Flatten(), hc.Linear(12, 6), hc.Sigmoid(), hc.Linear(6, 1),
                          loss="bce", seed=3)
    x = rng.standard_normal((9, 2, 2, 3)).astype(F32)
    y = rng.integers(0, 2, 9)
    _, loss_ref, grads_ref = ref_forward_backward(model, model.state_dict(), x, y)
    loss, grads = model.loss_and_grads(x, y)
    assert abs(loss - loss_ref) < 1e-5
    for key in grads:
        assert rel_err(grads[key], grads_ref[key]) < 1e-4, key


@pytest.mark.parametrize("momentum,weight_decay", [(0.0, 0.0), (0.9, 0.0), (0.8, 1e-3)])
def test_train_step_is_torch_sgd(rng, momentum, weight_decay):
    model = small_convnet(seed=7)
    opt = hc.SGD(model, lr=0.1, momentum=momentum, weight_decay=weight_decay)
    p = {k: v.astype(np.float64) for k, v in model.state_dict().items()}
    v = {k: np.zeros_like(a) for k, a in p.items()}
    for _ in range(3):
        x = rng.standard_normal((4, 3, 11, 7)).astype(F32)
        y = rng.integers(0, 5, 4)
        _, loss_ref, g = ref_forward_backward(model, model.state_dict(), x, y)
        loss = model.train_step(x, y, opt)
        assert abs(loss - loss_ref) < 1e-5 * max(1, loss_ref)
        for k in p:
            p[k], v[k] = ref.sgd_step(p[k], g[k], v[k], 0.1, momentum, weight_decay)
    for k, a in model.state_dict().items():
        assert rel_err(a, p[k]) < 1e-5, k


def test_state_dict_has_torch_layout():
    model = hc.models.lenet5()
    shapes = {k: v.shape for k, v in model.state_dict().items()}
    assert shapes == {
        "0.weight": (6, 1, 5, 5), "0.bias": (6,), "3.weight": (16, 6, 5, 5), "3.bias": (16,),
        "7.weight": (120, 400), "7.bias": (120,), "9.weight": (84, 120), "9.bias": (84,),
        "11.weight": (10, 84), "11.bias": (10,)}
    assert all(v.dtype == F32 for v in model.state_dict().values())


def test_state_dict_round_trip(rng):
    a, b = small_convnet(seed=1), small_convnet(seed=2)
    x = rng.standard_normal((2, 3, 11, 7)).astype(F32)
    assert not np.array_equal(a(x), b(x))
    b.load_state_dict(a.state_dict())
    np.testing.assert_array_equal(a(x), b(x))
    for k, v in a.state_dict().items():
        np.testing.assert_array_equal(v, b.state_dict()[k])


def test_state_dict_is_a_copy(rng):
    model = small_convnet()
    state = model.state_dict()
    state["0.weight"][...] = 0
    assert np.abs(model.state_dict()["0.weight"]).sum() > 0


def test_he_init():
    model = hc.Sequential(hc.Conv2d(20, 300, 5), hc.Flatten(), hc.Linear(50, 600), seed=11)
    s = model.state_dict()
    for key, fan_in in (("0.weight", 20 * 25), ("2.weight", 50)):
        std = np.sqrt(2 / fan_in)
        assert abs(s[key].mean()) < 0.02 * std
        assert abs(s[key].std() / std - 1) < 0.02, key
    assert not s["0.bias"].any() and not s["2.bias"].any()
    again = hc.Sequential(hc.Conv2d(20, 300, 5), hc.Flatten(), hc.Linear(50, 600), seed=11)
    other = hc.Sequential(hc.Conv2d(20, 300, 5), hc.Flatten(), hc.Linear(50, 600), seed=12)
    np.testing.assert_array_equal(s["0.weight"], again.state_dict()["0.weight"])
    assert not np.array_equal(s["0.weight"], other.state_dict()["0.weight"])


def test_training_is_bit_reproducible(rng):
    x = rng.standard_normal((32, 3, 11, 7)).astype(F32)
    y = rng.integers(0, 5, 32)
    runs = []
    for _ in range(2):
        model = small_convnet(seed=3)
        opt = hc.SGD(model, lr=0.05, momentum=0.9)
        hc.fit(model, opt, (x, y), epochs=2, batch_size=8, seed=5, progress=False)
        runs.append(model.state_dict())
    for k in runs[0]:
        np.testing.assert_array_equal(runs[0][k], runs[1][k])


def test_batch_size_changes_reuse_the_model(rng):
    model = small_convnet()
    for n in (4, 1, 7, 4):
        x = rng.standard_normal((n, 3, 11, 7)).astype(F32)
        logits_ref, _, _ = ref_forward_backward(model, model.state_dict(), x, np.zeros(n, int))
        assert rel_err(model(x), logits_ref) < 1e-5


def test_placement_names():
    model = small_convnet()
    assert model.to("cpu") is model
    assert model.placement == ("cpu",) * len(model.layers)
    model.to(["cpu"] * len(model.layers))
    assert "Conv2d(3, 5, 3, 2, 2)" in repr(model)


@pytest.mark.parametrize("N", [1, 4])
def test_relu_fused_into_conv_and_linear_matches_reference(rng, N):
    """ReLUs after Conv2d (im2col and 1x1 paths) and Linear are computed in the layer's output
    pass on the CPU: logits, gradients and an SGD step still match the reference, also with a
    ReLU that ends the net, one after another ReLU, and one after a pool (not fused)."""
    model = hc.Sequential(
        hc.Conv2d(2, 4, 3, padding=1), hc.ReLU(), hc.Conv2d(4, 3, 1), hc.ReLU(), hc.ReLU(),
        hc.MaxPool2d(2), hc.ReLU(), hc.Flatten(), hc.Linear(27, 8), hc.ReLU(),
        hc.Linear(8, 5), hc.ReLU(), seed=11)
    x = rng.standard_normal((N, 2, 6, 7)).astype(F32)
    y = rng.integers(0, 5, N)
    state = model.state_dict()
    logits_ref, loss_ref, grads_ref = ref_forward_backward(model, state, x, y)
    out = model(x)
    assert out.min() >= 0
    assert rel_err(out, logits_ref) < 1e-5
    loss, grads = model.loss_and_grads(x, y)
    assert abs(loss - loss_ref) < 1e-5 * max(1, abs(loss_ref))
    for key in state:
        assert rel_err(grads[key], grads_ref[key]) < 1e-4, key
    opt = hc.SGD(model, lr=0.1, momentum=0.9)
    model.train_step(x, y, opt)
    for k, a in model.state_dict().items():
        p, _ = ref.sgd_step(state[k].astype(np.float64), grads_ref[k], np.zeros(a.shape), 0.1,
                            0.9, 0.0)
        assert rel_err(a, p) < 1e-5, k


@pytest.mark.parametrize("N", [1, 3])
def test_relu_backward_applied_by_the_next_layer_matches_reference(rng, N):
    """On the CPU a ReLU followed by a Conv2d, MaxPool2d or Linear has its backward applied by
    that layer (to its dx), and stride-1 3x3/5x5 convs and 2x2 pools run the direct (AVX-512, AVX2)
    kernels where the CPU has them: odd image sizes, channels not a multiple of 4, padding
    0..2; logits, loss and every gradient match the NumPy reference."""
    model = hc.Sequential(
        hc.Conv2d(2, 3, 5, padding=2), hc.ReLU(), hc.Conv2d(3, 5, 3, padding=1), hc.ReLU(),
        hc.MaxPool2d(2), hc.Conv2d(5, 7, 3), hc.ReLU(), hc.Flatten(), hc.Linear(7 * 2 * 3, 9),
        hc.ReLU(), hc.Linear(9, 4), seed=5)
    x = rng.standard_normal((N, 2, 9, 11)).astype(F32)
    y = rng.integers(0, 4, N)
    state = model.state_dict()
    logits_ref, loss_ref, grads_ref = ref_forward_backward(model, state, x, y)
    assert rel_err(model(x), logits_ref) < 1e-5
    loss, grads = model.loss_and_grads(x, y)
    assert abs(loss - loss_ref) < 1e-5 * max(1, abs(loss_ref))
    for key in state:
        assert rel_err(grads[key], grads_ref[key]) < 1e-4, key
