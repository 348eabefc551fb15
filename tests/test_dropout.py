"""Dropout/Dropout2d: Philox-4x32-10 against its known-answer vectors and the NumPy reference,
masks as a pure function of (seed, step, index), the drop rate, exact scaling, evaluation as
the identity, reproducible training runs, and resume from a checkpoint equal to a straight run."""

import numpy as np
import pytest

import heterocnn as hc
import heterocnn._core as core
import reference as ref

F32 = np.float32


def test_philox_reference_known_answers():
    # Random123's kat_vectors for philox4x32-10
    out = ref.philox4x32_10(np.zeros((1, 4), np.uint32), (0, 0))
    assert [hex(v) for v in out[0]] == ["0x6627e8d5", "0xe169c58d", "0xbc57ac4c", "0x9b00dbd8"]
    out = ref.philox4x32_10(np.full((1, 4), 0xFFFFFFFF, np.uint32), (0xFFFFFFFF, 0xFFFFFFFF))
    assert [hex(v) for v in out[0]] == ["0x408f276d", "0x41c83b0e", "0xa20bc7c6", "0x6d5451fd"]


def dropout(kind, p, seed=0, step=0):
    layer = core.CoreLayer(kind, [p])
    layer.set_buffer("rng_state", np.array([seed, step], np.int64))
    return layer


@pytest.mark.parametrize("p", [0.0, 0.1, 0.5, 0.9, 1.0])
def test_dropout_mask_is_the_reference_philox_stream(rng, p):
    seed = int(rng.integers(2**62))
    layer = dropout("Dropout", p, seed, step=41)
    x = rng.standard_normal((3, 5, 7, 9)).astype(F32)  # 945 elements: not a multiple of 4
    y = layer.forward(x)
    state = layer.buffers()["rng_state"]
    assert list(state) == [seed, 42]  # the forward advanced the step, then drew
    keep = ref.dropout_mask(seed, 42, x.size, p).reshape(x.shape)
    np.testing.assert_array_equal(y, ref.dropout_forward(x, keep, p))
    dy = rng.standard_normal(x.shape).astype(F32)
    dx, _ = layer.backward(x, y, dy)  # the same mask, recomputed from the same state
    np.testing.assert_array_equal(dx, ref.dropout_forward(dy, keep, p))
    assert list(layer.buffers()["rng_state"]) == [seed, 42]


def test_dropout2d_drops_whole_planes(rng):
    layer = dropout("Dropout2d", 0.4, 77, 0)
    x = (rng.random((3, 5, 7, 9)) + 0.5).astype(F32)
    y = layer.forward(x)
    keep = ref.dropout_mask(77, 1, 15, 0.4).reshape(3, 5, 1, 1)
    np.testing.assert_array_equal(y, ref.dropout_forward(x, keep, 0.4))
    planes = (y != 0).reshape(15, -1)
    assert (planes.all(axis=1) | ~planes.any(axis=1)).all()
    with pytest.raises(hc.ShapeError, match="Dropout2d"):
        core.CoreLayer("Dropout2d", [0.5]).forward(np.ones((2, 3), F32))


def test_rate_scaling_and_eval_identity(rng):
    x = np.ones((400, 1000), F32)
    for p in (0.2, 0.5, 0.8):
        y = dropout("Dropout", p, 5).forward(x)
        assert abs((y == 0).mean() - p) < 0.005
        np.testing.assert_array_equal(np.unique(y), [0, np.float32(1 / (1 - p))])
    np.testing.assert_array_equal(dropout("Dropout", 1.0).forward(x), np.zeros_like(x))
    np.testing.assert_array_equal(dropout("Dropout", 0.0).forward(x), x)
    model = hc.Sequential(hc.Dropout(0.5), hc.Flatten(), seed=1)
    x = rng.standard_normal((6, 10)).astype(F32)
    assert (model(x) == 0).any()
    a, b = model(x), model(x)
    assert not np.array_equal(a, b)  # a new mask each training forward
    model.eval()
    np.testing.assert_array_equal(model(x), x)
    model.train()
    assert (model(x) == 0).any()


def test_arguments_are_checked():
    for bad in (-0.1, 1.5, float("nan"), "0.5", None, True):
        with pytest.raises(hc.InvalidValueError, match="p must be"):
            hc.Dropout(bad)
        with pytest.raises(hc.InvalidValueError, match="p must be"):
            hc.Dropout2d(bad)
    d = hc.Dropout2d(0.25)
    assert type(d)(*d._spec()[1])._spec() == ("Dropout2d", [0.25])
    assert repr(d) == "Dropout2d(p=0.25)" and d.param_shapes() == []
    with pytest.raises(hc.InvalidValueError, match="p must be in"):
        core.CoreLayer("Dropout", [2.0])


def net(seed=0):
    return hc.Sequential(hc.Conv2d(1, 4, 3, padding=1), hc.BatchNorm2d(4), hc.ReLU(),
                         hc.Dropout2d(0.25), hc.MaxPool2d(2), hc.Flatten(), hc.Linear(4 * 14 * 14, 32),
                         hc.ReLU(), hc.Dropout(0.5), hc.Linear(32, 10), seed=seed)


def run(model, data, opt):
    return [model.train_step(x, y, opt) for x, y in data]


def make_data(sample, n=6, batch=16):
    X, y = sample[0].as_tuple()
    X = (X[: n * batch] / 255).astype(F32)
    return [(X[i * batch:(i + 1) * batch], y[i * batch:(i + 1) * batch]) for i in range(n)]


def test_training_twice_is_bit_identical_and_seeds_differ(sample):
    data = make_data(sample)
    runs = []
    for _ in range(2):
        m = net(seed=3)
        runs.append((run(m, data, hc.SGD(m, lr=0.05, momentum=0.9)), m.state_dict()))
    assert runs[0][0] == runs[1][0]
    for k, v in runs[0][1].items():
        np.testing.assert_array_equal(v, runs[1][1][k], err_msg=k)
    seeds = [int(v[0]) for k, v in net(seed=3).buffers(all_buffers=True).items()
             if k.endswith("rng_state")]
    assert len(set(seeds)) == 2  # one stream per layer
    other = [int(v[0]) for k, v in net(seed=4).buffers(all_buffers=True).items()
             if k.endswith("rng_state")]
    assert set(other).isdisjoint(seeds)


def test_resume_mid_run_equals_a_straight_run(sample, tmp_path):
    data = make_data(sample)
    straight = net(seed=2)
    losses = run(straight, data, hc.SGD(straight, lr=0.05, momentum=0.9))
    first = net(seed=2)
    opt = hc.SGD(first, lr=0.05, momentum=0.9)
    part = run(first, data[:3], opt)
    path = hc.save(first, tmp_path / "mid.safetensors", opt)
    resumed, opt2, _ = hc.load(path)
    part += run(resumed, data[3:], opt2)
    assert part == losses
    for k, v in straight.buffers(all_buffers=True).items():
        np.testing.assert_array_equal(v, resumed.buffers(all_buffers=True)[k], err_msg=k)
    for k, v in straight.state_dict().items():
        np.testing.assert_array_equal(v, resumed.state_dict()[k], err_msg=k)
    # without the counter (a model-only file) the stream would restart: the file holds it only
    # with the optimizer, under buffers.*
    from safetensors.numpy import load_file
    keys = load_file(path)
    assert "buffers.3.rng_state" in keys and keys["buffers.3.rng_state"].dtype == np.int64
    assert "buffers.3.rng_state" not in load_file(hc.save(first, tmp_path / "m.safetensors"))


def test_replicas_with_dropout_train_and_are_reproducible(sample):
    data = make_data(sample, 4, 12)
    states = []
    for _ in range(2):
        m = net(seed=1).to(hc.DataParallel(["cpu", "cpu"], shares=[1, 1], threads=[1, 2]))
        losses = run(m, data, hc.SGD(m, lr=0.05))
        states.append(m.buffers(all_buffers=True))
        assert np.isfinite(losses).all()
    for k, v in states[0].items():
        np.testing.assert_array_equal(v, states[1][k])
    assert states[0]["8.rng_state"][1] == 4  # one step each


def test_torch_and_onnx_see_dropout_as_dropout_and_identity(rng, tmp_path):
    torch = pytest.importorskip("torch")
    from heterocnn.interop import to_torch
    m = net()
    t = to_torch(m)
    assert isinstance(t[3], torch.nn.Dropout2d) and isinstance(t[8], torch.nn.Dropout)
    assert t[8].p == 0.5
    ort = pytest.importorskip("onnxruntime")
    path = hc.export_onnx(m, tmp_path / "d.onnx")
    x = rng.standard_normal((3, 1, 28, 28)).astype(F32)
    m.eval()
    out = ort.InferenceSession(str(path)).run(None, {"input": x})[0]
    assert np.abs(out - m(x)).max() < 1e-4


def test_each_replica_draws_its_own_stream():
    """Replica r keys its masks with seed ^ stream_key(r): stream 0 (the master, or a model on
    its own) draws the reference stream of its seed, the others independent masks."""
    x = np.ones((4, 50), F32)
    model = hc.Sequential(hc.Dropout(0.5), seed=9)
    seed = int(model.buffers(all_buffers=True)["0.rng_state"][0])
    model.to(hc.DataParallel(["cpu", "cpu", "cpu"], shares=[1, 1, 1], threads=[1, 2, 3]))
    masks = [net.forward(x) != 0 for net in model._replica_nets]  # training mode: step 1
    for r, got in enumerate(masks):
        keep = ref.dropout_mask(seed ^ ref.dropout_stream_key(r), 1, x.size, 0.5)
        np.testing.assert_array_equal(got, keep.reshape(x.shape))
    assert (masks[0] != masks[1]).mean() > 0.3 and (masks[1] != masks[2]).mean() > 0.3
    alone = hc.Sequential(hc.Dropout(0.5), seed=9)
    np.testing.assert_array_equal(alone(x) != 0, masks[0])  # stream 0
