"""compute_grads(on_grads_ready=): the backward pass telling, layer by layer, which gradients
are final, so that an MPI rank sums them while the pass goes on (heterocnn.distributed's
GradientSum). What it reports must be what the pass ends with."""

import numpy as np
import pytest

import heterocnn as hc


def batch(rng, n, shape=(1, 28, 28)):
    return rng.random((n,) + shape, dtype=np.float32), rng.integers(0, 10, n)


@pytest.mark.parametrize("make", [hc.models.lenet5, hc.models.mlp, hc.models.bnnet])
def test_the_reported_gradients_are_final_and_the_offsets_decrease(make, rng):
    model = make(seed=1)
    x, y = batch(rng, 13)
    (_, span), = model.gradient_spans()
    seen = []
    model.compute_grads(x, y, on_grads_ready=lambda off: seen.append(
        (off, model.gradient_span("cpu", off, len(span)))))
    (_, final), = model.gradient_spans()
    offsets = [off for off, _ in seen]
    assert offsets == sorted(offsets, reverse=True) and len(set(offsets)) == len(offsets)
    assert offsets[-1] == 0  # every parameter's gradient reported, the first layer's last
    assert len(offsets) == sum(1 for layer in model.layers if layer.param_names())
    for off, part in seen:
        np.testing.assert_array_equal(part, final[off:])
    assert np.abs(final).max() > 0


def test_not_told_when_accumulating_and_errors_come_up_after_the_pass(rng):
    model = hc.models.lenet5(seed=1)
    x, y = batch(rng, 7)
    calls = []
    model.compute_grads(x, y, accumulate=True, on_grads_ready=calls.append)
    assert calls == []

    def fails(offset):
        calls.append(offset)
        raise KeyError("from the callback")

    with pytest.raises(KeyError, match="from the callback"):
        model.compute_grads(x, y, on_grads_ready=fails)
    assert len(calls) == 1  # not called again once it raised
    reference = hc.models.lenet5(seed=1)  # the pass itself still ran whole
    reference.compute_grads(x, y)
    np.testing.assert_array_equal(model.gradient_spans()[0][1], reference.gradient_spans()[0][1])
    with pytest.raises(hc.ShapeError):
        model.gradient_span("cpu", 10, 5)


@pytest.mark.skipif(not hc.cuda_available(), reason="needs a CUDA GPU")
def test_not_told_on_a_gpu():
    rng = np.random.default_rng(0)
    model = hc.models.lenet5(seed=1).to("cuda")
    x, y = batch(rng, 9)
    calls = []
    model.compute_grads(x, y, on_grads_ready=calls.append)
    assert calls == []
