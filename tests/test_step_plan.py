"""The step plan (train and forward-only), hc.measure and its cache on a real model, and
placing by a plan: model.to(plan), to("auto"), predict/evaluate by device."""

import hashlib
import json

import numpy as np
import pytest

import heterocnn as hc
from heterocnn import _core, cost_cache
from heterocnn.measure import available_devices, cache_key
from heterocnn.placement import make_plan


def test_inference_allocates_no_training_buffers(rng):
    model = hc.models.lenet5(seed=0)
    shape = (32, 1, 28, 28)
    train, infer = model.step_bytes(shape)["cpu"], model.step_bytes(shape, "infer")["cpu"]
    assert infer[0] == train[0] and infer[1] < train[1]  # same parameters, fewer buffers
    model(rng.random(shape, dtype=np.float32))
    after = model.step_bytes(shape)["cpu"]
    assert after[2] > 0  # the gradient buffers of a training step are still missing
    assert after[2] >= train[1] - infer[1] - 64 * 4
    assert model.step_bytes(shape, "infer")["cpu"][2] == 0  # what inference needs is there
    with pytest.raises(hc.InvalidValueError, match="mode"):
        model.step_bytes(shape, "backward")


def test_layer_shapes_follow_the_chain():
    shapes = hc.models.lenet5().layer_shapes((3, 1, 28, 28))
    assert shapes[0] == (3, 6, 28, 28) and shapes[2] == (3, 6, 14, 14)
    assert shapes[6] == (3, 400) and shapes[-1] == (3, 10)


def test_measure_fills_the_table_and_is_cached(capsys):
    model = hc.models.mlp(seed=0)
    table = hc.measure(model, 64, (1, 28, 28))
    n = len(model.layers)
    assert table.devices == available_devices() and "cpu" in table.devices
    assert len(table.forward_s["cpu"]) == n and len(table.backward_s["cpu"]) == n
    assert sum(table.forward_s["cpu"]) > 0 and sum(table.backward_s["cpu"]) > 0
    assert set(table.step_s["cpu"]) == {16, 64} and table.step_s["cpu"][64] > 0
    assert table.act_bytes[1] == 4 * 64 * 256 and table.input_bytes == 4 * 64 * 784
    assert table.param_bytes[1] == 4 * (256 * 784 + 256) and table.param_bytes[0] == 0
    again = hc.measure(model, 64, (1, 28, 28))
    assert any("from the cache" in note for note in again.notes)
    assert again.step_s == table.step_s
    # a corrupt cache file is measured again with a one-line note, never an error
    key = cache_key(model, 64, (1, 28, 28), table.devices, "train")
    assert key["build"]["relu_fusion"] is True  # HC_RELU_FUSION=0 measures tables of its own
    # a rebuilt core (same version, other kernels) measures tables of its own
    with open(_core.__file__, "rb") as f:
        assert key["build"]["core"] == hashlib.sha256(f.read()).hexdigest()[:16]
    with open(cost_cache.cache_path(key), "w") as f:
        f.write("{not json")
    fresh = hc.measure(model, 64, (1, 28, 28))
    assert not any("from the cache" in note for note in fresh.notes)
    assert "measuring again" in capsys.readouterr().err
    with open(cost_cache.cache_path(key)) as f:  # and the good table is back in the cache
        assert json.load(f)["version"] == cost_cache.VERSION
    with pytest.raises(hc.InvalidValueError, match="batch_size"):
        hc.measure(model, 0, (1, 28, 28))
    with pytest.raises(hc.ShapeError):
        hc.measure(model, 8, (3, 28, 28))


def test_cost_tables_list_the_layer_forms_of_issue_13():
    """GELU's tanh form, BatchNorm's cumulative average and adaptive pooling beyond 1 are
    measured and priced like any layer; a ReLU fused into the BatchNorm before it costs 0."""
    model = hc.Sequential(hc.Conv2d(1, 4, 3, bias=False), hc.BatchNorm2d(4, momentum=None),
                          hc.ReLU(), hc.GELU("tanh"), hc.AdaptiveAvgPool2d(3), hc.Flatten(),
                          hc.Linear(36, 3), seed=1)
    table = hc.measure(model, 16, (1, 9, 9), devices=["cpu"], cache=False)
    assert table.layers[1] == "1: BatchNorm2d(4, eps=1e-05, momentum=None, affine=True)"
    assert table.layers[3] == "3: GELU(approximate='tanh')"
    for i in (1, 3, 4):
        assert table.forward_s["cpu"][i] > 0 and table.backward_s["cpu"][i] > 0, i
    assert table.forward_s["cpu"][2] == 0  # computed by the BatchNorm's forward
    assert make_plan(table).placement == "cpu"


def test_to_auto_and_to_plan_place_the_model(rng):
    model = hc.models.lenet5(seed=0)
    model.to("auto", batch_size=64)
    assert isinstance(model.plan_used, hc.Plan)
    assert model.plan_used.predicted_step_s > 0 and "cpu" in model.plan_used.alternatives
    text = str(model.plan_used)
    assert "Conv2d" in text and "cpu" in text
    other = hc.models.lenet5(seed=0).to(model.plan_used)
    assert other.placement == model.placement
    with pytest.raises(hc.InvalidValueError, match="batch_size"):
        model.to("auto")
    with pytest.raises(hc.InvalidValueError, match="input_shape"):
        hc.Sequential(hc.Conv2d(1, 2, 3), hc.Flatten(), hc.Linear(2 * 26 * 26, 3)).to(
            "auto", batch_size=4)


def test_predict_by_device_gives_the_models_logits(rng):
    model = hc.models.lenet5(seed=1)
    x = rng.random((7, 1, 28, 28), dtype=np.float32)
    want = model(x)
    for device in (None, "cpu", ["cpu"] * len(model.layers)):
        np.testing.assert_array_equal(hc.predict(model, x, batch_size=3, device=device), want)
    # "auto" runs where the planner puts a forward pass of 3 images: on a machine with a GPU
    # that may be the GPU (other rounding), and it is then the same as asking for that place
    got = hc.predict(model, x, batch_size=3, device="auto")
    chosen = hc.plan(model, 3, (1, 28, 28), mode="infer").placement
    np.testing.assert_array_equal(got, hc.predict(model, x, batch_size=3, device=chosen))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    # a copy elsewhere follows the model's weights
    model.load_state_dict({k: v * 0.5 for k, v in model.state_dict().items()})
    np.testing.assert_array_equal(hc.predict(model, x, device=["cpu"] * 12), model(x))
