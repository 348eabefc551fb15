"""BatchNorm2d/1d: the core's CPU op against the NumPy reference (both modes, running
statistics), finite-difference gradients, torch equivalence (forward, gradients, running
statistics after SGD steps, eval outputs, state_dict both ways), ONNX in onnxruntime,
checkpoints, data-parallel replicas (each normalises over its own share) and bad input."""

import heterocnn as hc
import heterocnn._core as core
import numpy as np
import pytest
import reference as ref
from conftest import rel_err
from test_gradcheck import _check_layer

F32 = np.float32
TOL = 1e-5

SHAPES = [("BatchNorm2d", (3, 5, 7, 9)), ("BatchNorm2d", (1, 5, 2, 3)),
          ("BatchNorm1d", (3, 5)), ("BatchNorm1d", (4, 5, 6))]


def bn_layer(rng, kind, C, affine=True, eps=1e-5, momentum=0.1):
    """The core's layer of hc.<kind>(C, eps, momentum, affine) (momentum None: the cumulative
    average), with a random weight and bias."""
    layer = core.CoreLayer(kind, getattr(hc, kind)(C, eps, momentum, affine)._spec()[1])
    if affine:
        layer.set_param("weight", (1 + 0.5 * rng.standard_normal(C)).astype(F32))
        layer.set_param("bias", rng.standard_normal(C).astype(F32))
    return layer


@pytest.mark.parametrize("kind,shape", SHAPES)
@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize("momentum", [0.3, None])
def test_batchnorm_training_matches_reference(rng, kind, shape, affine, momentum):
    C = shape[1]
    layer = bn_layer(rng, kind, C, affine, momentum=momentum)
    p = layer.params()
    w, b = (p["weight"], p["bias"]) if affine else (None, None)
    rm, rv = np.zeros(C), np.ones(C)
    for step in range(3):  # running statistics over several steps
        x = (3 * rng.standard_normal(shape) + 5).astype(F32)
        y = layer.forward(x)
        y_ref, (mean, inv_std), rm, rv = ref.batchnorm_forward(x.astype(np.float64), w, b, rm, rv,
                                                               1e-5, momentum, True, step + 1)
        assert rel_err(y, y_ref) < TOL
        bufs = layer.buffers()
        assert rel_err(bufs["running_mean"], rm) < TOL and rel_err(bufs["running_var"], rv) < TOL
        assert bufs["num_batches_tracked"] == step + 1 and bufs["num_batches_tracked"].shape == ()
        dy = rng.standard_normal(shape).astype(F32)
        dx, g = layer.backward(x, y, dy)
        dx_ref, dw_ref, db_ref = ref.batchnorm_backward(x.astype(np.float64), w, mean, inv_std,
                                                        dy, True)
        assert rel_err(dx, dx_ref) < 1e-4
        if affine:
            assert rel_err(g["weight"], dw_ref) < TOL and rel_err(g["bias"], db_ref) < TOL
        else:
            assert g == {}


@pytest.mark.parametrize("kind,shape", SHAPES)
def test_batchnorm_eval_matches_reference(rng, kind, shape):
    C = shape[1]
    layer = bn_layer(rng, kind, C)
    rm, rv = rng.standard_normal(C).astype(F32), (0.5 + rng.random(C)).astype(F32)
    layer.set_buffer("running_mean", rm)
    layer.set_buffer("running_var", rv)
    layer.set_training(False)
    p = layer.params()
    x = rng.standard_normal(shape).astype(F32)
    y = layer.forward(x)
    y_ref, (mean, inv_std), _, _ = ref.batchnorm_forward(x.astype(np.float64), p["weight"],
                                                         p["bias"], rm, rv, 1e-5, 0.1, False)
    assert rel_err(y, y_ref) < TOL
    bufs = layer.buffers()  # evaluation leaves the estimates alone
    np.testing.assert_array_equal(bufs["running_mean"], rm)
    assert bufs["num_batches_tracked"] == 0
    dy = rng.standard_normal(shape).astype(F32)
    dx, g = layer.backward(x, y, dy)
    dx_ref, dw_ref, db_ref = ref.batchnorm_backward(x.astype(np.float64), p["weight"], mean,
                                                    inv_std, dy, False)
    assert rel_err(dx, dx_ref) < TOL
    assert rel_err(g["weight"], dw_ref) < TOL and rel_err(g["bias"], db_ref) < TOL


def test_batchnorm_sums_do_not_depend_on_the_thread_count(rng):
    layer = bn_layer(rng, "BatchNorm2d", 5)
    x = (rng.standard_normal((8, 5, 33, 31)) + 2).astype(F32)
    outs = []
    for threads in (1, 3):
        hc.set_threads(threads)
        layer.set_buffer("num_batches_tracked", np.zeros((), np.int64))
        y = layer.forward(x)
        outs.append((y, layer.backward(x, y, x)))
    hc.set_threads(2)
    np.testing.assert_array_equal(outs[0][0], outs[1][0])
    np.testing.assert_array_equal(outs[0][1][0], outs[1][1][0])
    np.testing.assert_array_equal(outs[0][1][1]["weight"], outs[1][1][1]["weight"])


def test_reference_gradients_in_float64(rng):
    x = rng.standard_normal((3, 4, 2, 3))
    w, r = rng.standard_normal(4), rng.standard_normal((3, 4, 2, 3))
    for training in (True, False):
        def loss(x=x, training=training):
            y = ref.batchnorm_forward(x, w, None, np.zeros(4), np.full(4, 2.0), 1e-5, 0.1,
                                      training)[0]
            return float((y * r).sum())
        _, (mean, inv_std), _, _ = ref.batchnorm_forward(x, w, None, np.zeros(4), np.full(4, 2.0),
                                                         1e-5, 0.1, training)
        dx = ref.batchnorm_backward(x, w, mean, inv_std, r, training)[0]
        for idx in [(0, 1, 1, 2), (2, 3, 0, 0), (1, 0, 1, 1)]:
            xp, xm = x.copy(), x.copy()
            xp[idx] += 1e-6
            xm[idx] -= 1e-6
            fd = (loss(xp) - loss(xm)) / 2e-6
            assert abs(fd - dx[idx]) < 1e-6 * max(1, abs(fd))


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("kind,shape", [("BatchNorm2d", (3, 2, 3, 2)), ("BatchNorm1d", (4, 3))])
def test_batchnorm_gradcheck(rng, kind, shape, training):
    C = shape[1]
    layer = bn_layer(rng, kind, C)
    layer.set_buffer("running_var", (0.5 + rng.random(C)).astype(F32))
    layer.set_training(training)
    _check_layer(rng, layer, rng.standard_normal(shape).astype(F32))


def test_batchnorm_one_value_per_channel_in_training_is_refused():
    model = hc.Sequential(hc.BatchNorm1d(3), hc.Linear(3, 2))
    x = np.ones((1, 3), F32)
    before = model.state_dict()
    with pytest.raises(hc.InvalidValueError, match="more than 1 value per channel"):
        model.loss_and_grads(x, np.array([0]))
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(v, before[k])
    model.eval()  # as torch: evaluation takes a batch of one
    assert model(x).shape == (1, 2)
    m2 = hc.Sequential(hc.BatchNorm2d(3), hc.Flatten())
    with pytest.raises(hc.InvalidValueError, match="more than 1 value per channel"):
        m2(np.ones((1, 3, 1, 1), F32))
    assert m2(np.ones((1, 3, 2, 1), F32)).shape == (1, 6)  # two values a channel, as torch
    # Refused before anything runs: the layers before it (a BatchNorm, a Dropout) keep their
    # running estimates and their step.
    m3 = hc.Sequential(hc.Linear(4, 3), hc.BatchNorm1d(3), hc.Dropout(0.5), hc.Linear(3, 3),
                       hc.BatchNorm1d(3), hc.Linear(3, 2))
    m3(np.ones((2, 4), F32))  # one step of each buffer
    before = m3.buffers(all_buffers=True)
    for call in (lambda: m3(np.ones((1, 4), F32)),
                 lambda: m3.loss_and_grads(np.ones((1, 4), F32), np.array([1]))):
        with pytest.raises(hc.InvalidValueError, match="layer|BatchNorm1d"):
            call()
        for k, v in m3.buffers(all_buffers=True).items():
            np.testing.assert_array_equal(v, before[k], err_msg=k)


def test_batchnorm_arguments_are_checked():
    for bad in [{"num_features": 0}, {"num_features": 2.5}, {"num_features": 3, "eps": 0},
                {"num_features": 3, "momentum": 1.5}, {"num_features": 3, "momentum": "none"},
                {"num_features": 3, "affine": 2}]:
        name = [k for k in bad if k != "num_features"] or ["num_features"]
        with pytest.raises(hc.InvalidValueError, match=name[-1]):
            hc.BatchNorm2d(**bad)
    with pytest.raises(hc.ShapeError, match="BatchNorm2d"):
        hc.Sequential(hc.BatchNorm2d(3))(np.ones((2, 3), F32))
    with pytest.raises(hc.ShapeError, match="channels"):
        hc.Sequential(hc.BatchNorm1d(4))(np.ones((2, 3), F32))
    bn = hc.BatchNorm1d(7, 1e-3, 0.2, False)
    assert type(bn)(*bn._spec()[1])._spec() == bn._spec() == ("BatchNorm1d", [7, 1e-3, 0.2, 0])
    assert repr(bn) == "BatchNorm1d(7, eps=0.001, momentum=0.2, affine=False)"
    assert bn.param_shapes() == [] and hc.BatchNorm2d(3).param_shapes() == [(3,), (3,)]
    # momentum=None (torch's cumulative average): a trailing flag in the spec, from_spec
    # inverts it; older 4-argument specs read as before
    cma = hc.BatchNorm2d(5, momentum=None)
    assert cma._spec() == ("BatchNorm2d", [5, 1e-5, 0.0, 1, 1])
    assert hc.BatchNorm2d.from_spec(cma._spec()[1]).momentum is None
    assert hc.BatchNorm2d.from_spec([5, 1e-5, 0.0, 1, 0]).momentum == 0.0
    assert type(bn).from_spec(bn._spec()[1])._spec() == bn._spec()
    assert repr(cma) == "BatchNorm2d(5, eps=1e-05, momentum=None, affine=True)"
    for bad in ([5, 1e-5, 0.1], [5, 1e-5, 0.1, 1, 2], [5, 1e-5, 0.1, 1, 1, 1]):
        with pytest.raises(hc.InvalidValueError):
            hc.BatchNorm2d.from_spec(bad)
    with pytest.raises(ValueError, match="takes 4 to 5 arguments"):
        core.CoreLayer("BatchNorm2d", [5, 1e-5, 0.1, 1, 1, 1])


def conv_bn_net(seed=0, affine=True):
    return hc.Sequential(hc.Conv2d(2, 4, 3, padding=1), hc.BatchNorm2d(4, affine=affine),
                         hc.ReLU(), hc.MaxPool2d(2), hc.Flatten(), hc.Linear(4 * 3 * 4, 8),
                         hc.BatchNorm1d(8, momentum=0.2), hc.ReLU(), hc.Linear(8, 3), seed=seed)


def test_state_dict_keys_and_init_as_torch():
    model = conv_bn_net()
    keys = list(model.state_dict())
    assert keys[:7] == ["0.weight", "0.bias", "1.weight", "1.bias", "1.running_mean",
                        "1.running_var", "1.num_batches_tracked"]
    s = model.state_dict()
    np.testing.assert_array_equal(s["1.weight"], np.ones(4))
    np.testing.assert_array_equal(s["1.running_var"], np.ones(4))
    assert s["1.num_batches_tracked"].dtype == np.int64
    assert "1.batch_stats" not in s
    assert "1.weight" not in conv_bn_net(affine=False).state_dict()


def test_torch_equivalence_forward_gradients_running_stats_and_eval(rng):
    torch = pytest.importorskip("torch")
    from heterocnn.interop import to_torch, torch_loss

    model = conv_bn_net(seed=3)
    tm = to_torch(model)
    opt = hc.SGD(model, lr=0.1, momentum=0.9)
    topt = torch.optim.SGD(tm.parameters(), lr=0.1, momentum=0.9)
    x = rng.standard_normal((6, 2, 6, 8)).astype(F32)
    y = rng.integers(0, 3, 6)
    loss, grads = model.loss_and_grads(x, y)
    tl = torch_loss(model)(tm(torch.from_numpy(x)), torch.from_numpy(y))
    tl.backward()
    assert abs(loss - tl.item()) < 1e-5
    for k, p in tm.named_parameters():  # (the conv bias's is ~0: BatchNorm cancels it)
        np.testing.assert_allclose(grads[k], p.grad.numpy(), rtol=1e-4, atol=1e-6, err_msg=k)
    model.load_state_dict({k: v.numpy() for k, v in tm.state_dict().items()})  # one step done
    for step in range(5):
        x = rng.standard_normal((6, 2, 6, 8)).astype(F32)
        y = rng.integers(0, 3, 6)
        model.train_step(x, y, opt)
        topt.zero_grad()
        torch_loss(model)(tm(torch.from_numpy(x)), torch.from_numpy(y)).backward()
        topt.step()
    ts = tm.state_dict()
    for k, v in model.state_dict().items():
        assert v.dtype == ts[k].numpy().dtype and v.shape == tuple(ts[k].shape), k
        np.testing.assert_allclose(v, ts[k].numpy(), rtol=1e-4, atol=1e-6, err_msg=k)
    model.eval()
    tm.eval()
    x = rng.standard_normal((3, 2, 6, 8)).astype(F32)
    with torch.no_grad():
        assert rel_err(model(x), tm(torch.from_numpy(x)).numpy()) < 1e-4
    # and back: torch's state_dict (num_batches_tracked a 0-d int64) loads strictly both ways
    back = conv_bn_net()
    back.load_state_dict({k: v.numpy() for k, v in ts.items()})
    to_torch(back).load_state_dict(ts, strict=True)


def test_cumulative_average_matches_torch_over_steps_and_a_checkpoint_resume(rng, tmp_path):
    """momentum=None (torch's cumulative moving average, factor 1 / num_batches_tracked):
    training steps against torch's, through a training checkpoint saved and loaded mid-run, and
    a torch state_dict loaded into heterocnn continuing the average from its count."""
    torch = pytest.importorskip("torch")
    from heterocnn.interop import to_torch, torch_loss

    def make(seed):
        return hc.Sequential(
            hc.Conv2d(2, 4, 3, padding=1, bias=False), hc.BatchNorm2d(4, momentum=None),
            hc.ReLU(), hc.MaxPool2d(2), hc.Flatten(), hc.Linear(4 * 3 * 4, 8, bias=False),
            hc.BatchNorm1d(8, momentum=None, affine=False), hc.ReLU(), hc.Linear(8, 3),
            seed=seed)

    model = make(4)
    tm = to_torch(model)
    assert tm[1].momentum is None and tm[6].momentum is None
    opt = hc.SGD(model, lr=0.1, momentum=0.9)
    topt = torch.optim.SGD(tm.parameters(), lr=0.1, momentum=0.9)
    for step in range(6):
        x = (2 * rng.standard_normal((6, 2, 6, 8)) + 1).astype(F32)
        y = rng.integers(0, 3, 6)
        if step == 3:
            path = hc.save(model, tmp_path / "cma.safetensors", opt)
            model, opt, _ = hc.load(path)
            assert model.layers[1].momentum is None and model.layers[6].momentum is None
        model.train_step(x, y, opt)
        topt.zero_grad()
        torch_loss(model)(tm(torch.from_numpy(x)), torch.from_numpy(y)).backward()
        topt.step()
    ts = tm.state_dict()
    assert model.state_dict()["1.num_batches_tracked"] == 6 == ts["1.num_batches_tracked"]
    for k, v in model.state_dict().items():
        np.testing.assert_allclose(v, ts[k].numpy(), rtol=1e-4, atol=1e-6, err_msg=k)
    # torch's state (count 6) in a fresh heterocnn model: the 7th batch weighs 1/7 in both
    fresh = make(0)
    fresh.load_state_dict({k: v.numpy() for k, v in ts.items()})
    x = (2 * rng.standard_normal((5, 2, 6, 8)) + 1).astype(F32)
    fresh(x)
    with torch.no_grad():
        tm(torch.from_numpy(x))
    for k, v in tm.state_dict().items():
        np.testing.assert_allclose(fresh.state_dict()[k], v.numpy(), rtol=1e-5, atol=1e-6,
                                   err_msg=k)
    fresh.eval()
    tm.eval()
    with torch.no_grad():
        assert rel_err(fresh(x), tm(torch.from_numpy(x)).numpy()) < 1e-4


def test_onnx_export_in_eval_form(rng, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    model = conv_bn_net(seed=1, affine=False)
    opt = hc.SGD(model, lr=0.05)
    for _ in range(3):
        model.train_step(rng.standard_normal((8, 2, 6, 8)).astype(F32), rng.integers(0, 3, 8), opt)
    path = hc.export_onnx(model, tmp_path / "bn.onnx", input_shape=(2, 6, 8))
    x = rng.standard_normal((5, 2, 6, 8)).astype(F32)
    out = ort.InferenceSession(str(path)).run(None, {"input": x})[0]
    model.eval()
    assert rel_err(out, model(x)) < 1e-5


def test_checkpoint_keeps_running_stats_and_rebuilds(rng, tmp_path):
    model = conv_bn_net(seed=2)
    opt = hc.SGD(model, lr=0.05, momentum=0.9)
    for _ in range(2):
        model.train_step(rng.standard_normal((8, 2, 6, 8)).astype(F32), rng.integers(0, 3, 8), opt)
    path = hc.save(model, tmp_path / "bn.safetensors", opt)
    loaded, _, _ = hc.load(path)
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(loaded.state_dict()[k], v)
    assert loaded.state_dict()["1.num_batches_tracked"] == 2
    # a model-only file holds only state_dict keys: torch loads it strictly
    pytest.importorskip("torch")
    from heterocnn.interop import to_torch, torch_state_dict
    from safetensors.torch import load_file

    hc.save(model, tmp_path / "m.safetensors")
    to_torch(model).load_state_dict(load_file(tmp_path / "m.safetensors"), strict=True)
    to_torch(model).load_state_dict(torch_state_dict(path), strict=True)


def test_checkpoint_architecture_must_match_the_buffers(tmp_path):
    import json

    from safetensors import safe_open
    from safetensors.numpy import load_file, save_file

    path = hc.save(conv_bn_net(), tmp_path / "a.safetensors")
    tensors = load_file(path)
    with safe_open(path, "np") as f:
        meta = f.metadata()
    del tensors["1.running_var"]
    save_file(tensors, tmp_path / "b.safetensors", metadata=meta)
    with pytest.raises(hc.DataFormatError, match="1.running_var"):
        hc.load(tmp_path / "b.safetensors")
    assert json.loads(meta["architecture"])["layers"][1] == ["BatchNorm2d", [4, 1e-5, 0.1, 1]]


def test_replicas_normalise_over_their_own_share(rng):
    # as torch DDP without SyncBatchNorm: replica r's BatchNorm sees only its rows
    def make():
        return hc.Sequential(hc.BatchNorm1d(3, momentum=0.5), hc.Linear(3, 2), seed=5)

    dp = make().to(hc.DataParallel(["cpu", "cpu"], shares=[2, 1], threads=[1, 2]))
    one = make()
    w0 = one.state_dict()
    x = (rng.standard_normal((6, 3)) + 1).astype(F32)
    y = rng.integers(0, 2, 6)
    _, g0 = one.loss_and_grads(x[:4], y[:4])  # by hand: each share normalised on its own
    _, g1 = one.loss_and_grads(x[4:], y[4:])
    opt = hc.SGD(dp, lr=0.1)
    dp.train_step(x, y, opt)
    s = dp.state_dict()
    for k in ("0.weight", "0.bias", "1.weight", "1.bias"):
        expected = w0[k] - 0.1 * (4 * g0[k] + 2 * g1[k]) / 6
        np.testing.assert_allclose(s[k], expected, rtol=1e-5, atol=1e-7, err_msg=k)
    for _ in range(2):
        dp.train_step(x, y, opt)
    # the running estimates are the first replica's (rows 0..3), broadcast to all
    rm = np.zeros(3)
    for _ in range(3):
        rm = 0.5 * rm + 0.5 * x[:4].mean(axis=0)
    s = dp.state_dict()
    assert rel_err(s["0.running_mean"], rm) < 1e-5
    assert s["0.num_batches_tracked"] == 3
    dp.eval()
    assert dp(x).shape == (6, 2)


def test_train_and_eval_switch_the_behaviour(rng):
    model = hc.Sequential(hc.BatchNorm1d(4), seed=1)
    x = (5 + rng.standard_normal((8, 4))).astype(F32)
    t = model(x)  # training: normalised by the batch
    assert abs(t.mean()) < 1e-5
    model.eval()
    e = model(x)  # evaluation: by the running estimates (0.1 of the way to the batch's)
    rm = 0.1 * x.mean(axis=0)
    rv = 0.9 + 0.1 * x.var(axis=0, ddof=1)
    assert rel_err(e, (x - rm) / np.sqrt(rv + 1e-5)) < 1e-5
    assert model.state_dict()["0.num_batches_tracked"] == 1
    model.train()
    model(x)
    assert model.state_dict()["0.num_batches_tracked"] == 2
