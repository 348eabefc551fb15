"""Adam, AdamW and SGD's Nesterov and dampening: against torch.optim on lenet5, against the
NumPy reference (tests/reference.py) on odd-sized arrays, their state and step count (round
trip, checkpoints, resume bit-identical), on data-parallel replicas, bad hyper-parameters; and
the same updates on a GPU against the CPU (skipped without one)."""

import numpy as np
import pytest

import heterocnn as hc
import reference as ref
from conftest import rel_err

F32 = np.float32
cuda = pytest.mark.skipif(not hc.cuda_available(), reason="no CUDA GPU available")

# (hc optimizer, torch optimizer, keyword arguments both take)
CASES = {
    "adam": ("Adam", "Adam", {"lr": 1e-3}),
    "adam_weight_decay": ("Adam", "Adam", {"lr": 2e-3, "weight_decay": 1e-2}),
    "adam_betas_eps": ("Adam", "Adam", {"lr": 1e-3, "betas": (0.8, 0.99), "eps": 1e-6}),
    "adamw": ("AdamW", "AdamW", {"lr": 1e-3}),
    "adamw_weight_decay": ("AdamW", "AdamW", {"lr": 3e-3, "weight_decay": 0.1}),
    # lr 0.02, not 0.05: at 0.05 step 4 meets a pre-activation within 1e-6 of zero in conv1's
    # mostly inactive channel 5, where float rounding decides the ReLU and so that channel's
    # whole gradient (2.7e-4 apart from equal weights on this 2-core EPYC).
    "sgd_nesterov": ("SGD", "SGD", {"lr": 0.02, "momentum": 0.9, "nesterov": True,
                                    "weight_decay": 1e-4}),
    "sgd_dampening": ("SGD", "SGD", {"lr": 0.05, "momentum": 0.9, "dampening": 0.3}),
}


def batches(n_batches, batch, seed=0):
    train = hc.datasets.fashion_mnist("train", sample=True)
    rng = np.random.default_rng(seed)
    idx = rng.permutation(len(train.labels))[: n_batches * batch]
    X = (train.images[idx] / 255).astype(F32)
    y = train.labels[idx].astype(np.int64)
    return [(X[i * batch:(i + 1) * batch], y[i * batch:(i + 1) * batch])
            for i in range(n_batches)]


@pytest.mark.parametrize("case", sorted(CASES))
def test_lenet5_matches_torch_over_20_steps(case):
    """Each step from equal weights: the loss and the weights after the update agree; then
    torch takes heterocnn's weights, so that rounding (a pre-activation within 1e-6 of zero
    decides a ReLU, differently for another summation order or CPU) cannot compound over the
    steps. The optimizers' own states run apart, checked at the end."""
    torch = pytest.importorskip("torch")
    from heterocnn.interop import to_torch

    hc_name, torch_name, kwargs = CASES[case]
    model = hc.models.lenet5(seed=5)
    tmodel = to_torch(model)
    opt = getattr(hc, hc_name)(model, **kwargs)
    topt = getattr(torch.optim, torch_name)(tmodel.parameters(), **kwargs)
    loss_fn = torch.nn.CrossEntropyLoss()
    for step, (x, y) in enumerate(batches(20, 32)):
        if step == 10:  # a new learning rate mid-way, as a schedule sets it
            opt.lr = kwargs["lr"] / 2
            for group in topt.param_groups:
                group["lr"] = kwargs["lr"] / 2
        loss = model.train_step(x, y, opt)
        topt.zero_grad()
        tloss = loss_fn(tmodel(torch.from_numpy(x)), torch.from_numpy(y))
        tloss.backward()
        topt.step()
        assert abs(loss - tloss.item()) <= 1e-5 * max(1.0, abs(tloss.item())), step
        tstate = tmodel.state_dict()
        state = model.state_dict()
        for key, value in state.items():
            assert rel_err(value, tstate[key].numpy()) <= 1e-5, (step, key)
        tmodel.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in state.items()})
    assert opt.state()["step"] == 20


def odd_model():
    """Parameters of 63, 1, 65, 65, 65, 1, 1000 and 1000 floats (each padded to 64 in the
    store)."""
    return hc.Sequential(hc.Linear(63, 1), hc.Linear(1, 65), hc.Linear(65, 1),
                         hc.Linear(1, 1000), seed=2)


def gradient_spans(model, grads):
    """The store's gradient spans holding ``grads`` ({key: array}), zero padding kept."""
    (device, span), = model.gradient_spans()
    out, at = np.zeros_like(span), 0
    for key, shape in model.parameters():
        n = int(np.prod(shape))
        out[at:at + n] = grads[key].ravel()
        at += -(-n // 64) * 64
    assert at == len(span)
    return [(device, out)]


REFERENCE_CASES = {
    "adam": (hc.Adam, {"lr": 1e-2, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.0}),
    "adam_l2": (hc.Adam, {"lr": 1e-2, "betas": (0.85, 0.99), "eps": 1e-3, "weight_decay": 0.1}),
    "adamw": (hc.AdamW, {"lr": 1e-2, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.05}),
    "sgd": (hc.SGD, {"lr": 0.1, "momentum": 0.0, "weight_decay": 0.01}),
    "sgd_momentum": (hc.SGD, {"lr": 0.1, "momentum": 0.9, "weight_decay": 0.01}),
    "sgd_nesterov": (hc.SGD, {"lr": 0.1, "momentum": 0.9, "weight_decay": 0.01,
                              "nesterov": True}),
    "sgd_dampening": (hc.SGD, {"lr": 0.1, "momentum": 0.8, "dampening": 0.4}),
}


def reference_step(cls, kw, p, g, bufs, t):
    """One step of the NumPy reference on float64 arrays: -> new p, new buffers."""
    if cls is hc.SGD:
        p, v = ref.sgd_step(p, g, bufs[0], kw["lr"], kw["momentum"], kw.get("weight_decay", 0.0),
                            kw.get("dampening", 0.0), kw.get("nesterov", False), first=t == 1)
        return p, [v if kw["momentum"] else bufs[0]]
    p, m, v = ref.adam_step(p, g, bufs[0], bufs[1], t, kw["lr"], kw["betas"], kw["eps"],
                            kw["weight_decay"], decoupled=cls is hc.AdamW)
    return p, [m, v]


def run_against_reference(model, cls, kw, rng, steps=6):
    opt = cls(model, **kw)
    names = opt.state_names()
    p = {k: v.astype(np.float64) for k, v in model.state_dict().items()}
    bufs = {k: [np.zeros(p[k].shape) for _ in names] for k in p}
    for t in range(1, steps + 1):
        if t == 4:  # the config path: a new rate reaches the update
            opt.lr = kw["lr"] * 0.3
        lr = opt.lr
        grads = {k: rng.standard_normal(v.shape).astype(F32) for k, v in p.items()}
        model.set_gradient_spans(gradient_spans(model, grads))
        model.apply_update(opt)
        for k in p:
            p[k], bufs[k] = reference_step(cls, {**kw, "lr": lr}, p[k],
                                           grads[k].astype(np.float64), bufs[k], t)
    state = opt.state()
    assert state["step"] == steps
    for k, value in model.state_dict().items():
        np.testing.assert_allclose(value, p[k], rtol=2e-5, atol=2e-6, err_msg=k)
        for name, want in zip(names, bufs[k]):
            np.testing.assert_allclose(state[f"{name}.{k}"], want, rtol=2e-5, atol=2e-6,
                                       err_msg=f"{name}.{k}")
    return opt


@pytest.mark.parametrize("case", sorted(REFERENCE_CASES))
def test_core_update_matches_reference_on_odd_sizes(rng, case):
    cls, kw = REFERENCE_CASES[case]
    model = odd_model()
    assert sorted({int(np.prod(s)) for _, s in model.parameters()}) == [1, 63, 65, 1000]
    run_against_reference(model, cls, kw, rng)


def test_the_update_of_a_large_span_does_not_depend_on_the_threads(rng):
    # 1000 x 65 weights: above the size where the update's loop goes parallel
    runs = []
    for threads in (1, 2):
        hc.set_threads(threads)
        model = hc.Sequential(hc.Linear(65, 1000), seed=1)
        opt = hc.AdamW(model, lr=0.01)
        g = np.random.default_rng(3)
        for _ in range(3):
            grads = {k: g.standard_normal(s).astype(F32) for k, s in model.parameters()}
            model.set_gradient_spans(gradient_spans(model, grads))
            model.apply_update(opt)
        runs.append((model.state_dict(), opt.state()))
    hc.set_threads(hc.build_info()["threads"])
    for k, v in runs[0][0].items():
        np.testing.assert_array_equal(runs[1][0][k], v)
    for k, v in runs[0][1].items():
        np.testing.assert_array_equal(runs[1][1][k], v)


def test_state_keys_round_trip_and_zero_state():
    data = batches(4, 16)
    model = hc.models.lenet5(seed=1)
    opt = hc.Adam(model, lr=1e-3, weight_decay=1e-3)
    for x, y in data[:2]:
        model.train_step(x, y, opt)
    state = opt.state()
    keys = [k for k, _ in model.parameters()]
    assert list(state) == ([f"exp_avg.{k}" for k in keys] + [f"exp_avg_sq.{k}" for k in keys]
                           + ["step"])
    assert state["step"] == 2 and type(state["step"]) is int
    # Another model with the same weights and this state continues bit for bit.
    other = hc.models.lenet5(seed=1)
    other.load_state_dict(model.state_dict())
    oopt = hc.Adam(other, lr=1e-3, weight_decay=1e-3)
    oopt.load_state(state)
    for x, y in data[2:]:
        model.train_step(x, y, opt)
        other.train_step(x, y, oopt)
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(other.state_dict()[k], v)
    for k, v in opt.state().items():
        np.testing.assert_array_equal(oopt.state()[k], v)
    # Bad states change nothing.
    before = oopt.state()
    for bad in ({**state, "step": -1}, {**state, "step": 1.5}, {**state, "step": True},
                {k: v for k, v in state.items() if k != "step"}):
        with pytest.raises((hc.InvalidValueError, hc.StateDictError)):
            oopt.load_state(bad)
    wrong_shape = dict(state)
    wrong_shape["exp_avg.0.weight"] = np.zeros(3, F32)
    with pytest.raises(hc.ShapeError):
        oopt.load_state(wrong_shape)
    for k, v in before.items():
        np.testing.assert_array_equal(oopt.state()[k], v)
    oopt.zero_state()
    zeroed = oopt.state()
    assert zeroed["step"] == 0
    assert all(not np.any(v) for k, v in zeroed.items() if k != "step")


def test_step_count_advances_once_per_step_on_every_path():
    data = batches(3, 12)
    model = hc.models.mlp(seed=0)
    opt = hc.Adam(model)
    model.train_step(*data[0], opt)
    model.compute_grads(*data[1])
    model.apply_update(opt)
    assert opt.state()["step"] == 2
    with pytest.raises(hc.InvalidValueError):  # a bad label: the step does not count
        model.train_step(data[2][0], np.full(12, 99), opt)
    assert opt.state()["step"] == 2
    dp = hc.models.mlp(seed=0).to(hc.DataParallel(["cpu", "cpu"], shares=[1, 2], threads=[1, 2]))
    dopt = hc.Adam(dp)
    for x, y in data:
        dp.train_step(x, y, dopt)
    assert dopt.state()["step"] == 3


@pytest.mark.parametrize("make", [lambda m: hc.Adam(m, lr=2e-3, weight_decay=1e-4),
                                  lambda m: hc.AdamW(m, lr=2e-3),
                                  lambda m: hc.SGD(m, lr=0.02, momentum=0.9, nesterov=True)])
def test_data_parallel_matches_one_device(make):
    data = batches(20, 48)
    one = hc.models.lenet5(seed=3)
    opt_one = make(one)
    dp = hc.models.lenet5(seed=3).to(hc.DataParallel(["cpu", "cpu"], shares=[2, 1],
                                                     threads=[1, 2]))
    opt_dp = make(dp)
    for x, y in data:
        a, b = one.train_step(x, y, opt_one), dp.train_step(x, y, opt_dp)
        assert abs(a - b) <= 1e-5 * max(1.0, abs(a))
    for key, value in one.state_dict().items():
        assert rel_err(dp.state_dict()[key], value) < 1e-5, key
    assert opt_dp.state()["step"] == opt_one.state()["step"] == 20


def test_fit_resume_with_adam_is_bit_identical(tmp_path):
    pytest.importorskip("safetensors")
    hc.set_threads(2)
    X, y = hc.datasets.fashion_mnist("train", sample=True).as_tuple()
    X, y = X[:640], y[:640]
    sched = hc.WarmupCosine(3e-3, 30, 5)
    path = tmp_path / "adam.safetensors"
    model = hc.models.lenet5(seed=4)
    full = hc.fit(model, hc.Adam(model, lr=3e-3, weight_decay=1e-4), (X, y), 3, 64, seed=9,
                  progress=False, schedule=sched)
    model2 = hc.models.lenet5(seed=4)
    hc.fit(model2, hc.Adam(model2, lr=3e-3, weight_decay=1e-4), (X, y), 2, 64, seed=9,
           progress=False, checkpoint=path, schedule=sched)
    model3, opt3, meta = hc.load(path)
    assert type(opt3) is hc.Adam and opt3.state()["step"] == 20
    assert opt3.betas == (0.9, 0.999) and opt3.eps == 1e-8 and opt3.weight_decay == 1e-4
    part = hc.fit(model3, opt3, (X, y), 3, 64, progress=False, resume=meta, schedule=sched)
    assert part["loss"] == full["loss"]
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(v, model3.state_dict()[k], err_msg=k)
    hc.set_threads(hc.build_info()["threads"])


@pytest.mark.parametrize("make", [
    lambda m: hc.AdamW(m, lr=5e-4, betas=(0.8, 0.95), eps=1e-7, weight_decay=0.03),
    lambda m: hc.Adam(m, lr=1e-3),
    lambda m: hc.SGD(m, lr=0.03, momentum=0.8, nesterov=True, weight_decay=1e-3),
    lambda m: hc.SGD(m, lr=0.03, momentum=0.8, dampening=0.1)])
def test_save_and_load_rebuild_the_optimizer(tmp_path, make):
    pytest.importorskip("safetensors")
    data = batches(3, 16)
    model = hc.models.mlp(seed=2)
    opt = make(model)
    for x, y in data[:2]:
        model.train_step(x, y, opt)
    path = hc.save(model, tmp_path / "c.safetensors", opt, epoch=1)
    loaded, lopt, _ = hc.load(path)
    assert type(lopt) is type(opt) and lopt.settings() == opt.settings()
    for k, v in opt.state().items():
        np.testing.assert_array_equal(lopt.state()[k], v)
    a, b = model.train_step(*data[2], opt), loaded.train_step(*data[2], lopt)
    assert a == b
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(loaded.state_dict()[k], v)


def test_old_sgd_checkpoints_still_load(tmp_path):
    pytest.importorskip("safetensors")
    import json

    from safetensors.numpy import save_file

    model = hc.models.mlp(seed=0)
    tensors = dict(model.state_dict())
    for k, v in model.state_dict().items():
        tensors[f"optimizer.momentum.{k}"] = np.full_like(v, 0.5)
    arch = {"layers": [list(layer._spec()) for layer in model.layers], "loss": model.loss,
            "seed": model.seed}
    save_file(tensors, str(tmp_path / "old.safetensors"),
              metadata={"format": "heterocnn-checkpoint-1", "architecture": json.dumps(arch),
                        "optimizer": json.dumps({"type": "SGD", "lr": 0.1, "momentum": 0.9,
                                                 "weight_decay": 0.0})})
    loaded, opt, _ = hc.load(tmp_path / "old.safetensors")
    assert type(opt) is hc.SGD and opt.nesterov is False and opt.state()["step"] == 0
    assert loaded.label_smoothing == 0.0
    assert np.all(opt.state()["momentum.1.weight"] == 0.5)


@pytest.mark.parametrize("name, value", [
    ("lr", -1e-3), ("lr", "0.1"), ("lr", float("nan")), ("lr", None), ("lr", True),
    ("betas", (1.0, 0.999)), ("betas", (0.9, 1.0)), ("betas", (-0.1, 0.999)),
    ("betas", (0.9,)), ("betas", "0.9"), ("betas", (0.9, "x")), ("betas", 0.9),
    ("eps", 0.0), ("eps", -1e-8), ("eps", "1e-8"), ("eps", float("inf")),
    ("weight_decay", -0.1), ("weight_decay", "0"),
])
@pytest.mark.parametrize("cls", [hc.Adam, hc.AdamW])
def test_bad_adam_hyper_parameters(cls, name, value):
    model = hc.models.mlp()
    with pytest.raises(hc.InvalidValueError, match=name.split("[")[0]):
        cls(model, **{name: value})
    opt = cls(model, lr=2e-3)
    before = opt.settings()
    with pytest.raises(hc.InvalidValueError, match=name):
        setattr(opt, name, value)
    assert opt.settings() == before
    # ... and the core kept its settings too: a step equals that of a fresh optimizer
    fresh = hc.models.mlp()
    fopt = cls(fresh, lr=2e-3)
    (x, y), = batches(1, 8)
    assert model.train_step(x, y, opt) == fresh.train_step(x, y, fopt)
    for k, v in fresh.state_dict().items():
        np.testing.assert_array_equal(model.state_dict()[k], v)


def test_bad_values_name_themselves():
    model = hc.models.mlp()
    with pytest.raises(hc.InvalidValueError, match=r"Adam lr must be >= 0, got -0.5"):
        hc.Adam(model, lr=-0.5)
    with pytest.raises(hc.InvalidValueError, match=r"AdamW betas\[1\] must be < 1, got 1.5"):
        hc.AdamW(model, betas=(0.9, 1.5))
    with pytest.raises(hc.InvalidValueError, match=r"Adam eps must be > 0, got 0.0"):
        hc.Adam(model, eps=0.0)
    with pytest.raises(hc.DTypeError):
        hc.Adam("not a model")


def test_nesterov_needs_momentum_as_in_torch():
    model = hc.models.mlp()
    with pytest.raises(hc.InvalidValueError, match="nesterov"):
        hc.SGD(model, lr=0.1, nesterov=True)
    with pytest.raises(hc.InvalidValueError, match="nesterov"):
        hc.SGD(model, lr=0.1, momentum=0.9, dampening=0.1, nesterov=True)
    with pytest.raises(hc.InvalidValueError, match="nesterov"):
        hc.SGD(model, lr=0.1, momentum=0.9, nesterov="yes")
    opt = hc.SGD(model, lr=0.1, momentum=0.9, nesterov=True)
    with pytest.raises(hc.InvalidValueError, match="nesterov"):
        opt.momentum = 0.0
    assert opt.momentum == 0.9 and opt.nesterov is True
    with pytest.raises(hc.InvalidValueError, match="dampening"):
        hc.SGD(model, lr=0.1, momentum=0.9, dampening=-1)
    assert repr(opt) == ("SGD(lr=0.1, momentum=0.9, weight_decay=0.0, dampening=0.0, "
                         "nesterov=True)")


def test_memory_accounting_counts_adams_two_buffers():
    model = hc.models.lenet5()
    one = hc.estimate_memory(model, 8, (1, 28, 28))["cpu"]["parameters"]
    two = hc.estimate_memory(model, 8, (1, 28, 28), optimizer_states=2)["cpu"]["parameters"]
    assert two * 3 == one * 4  # value, gradient and 1 or 2 buffers per parameter
    assert len(hc.Adam(model).state_names()) == 2 and len(hc.SGD(model, 0.1).state_names()) == 1
    with pytest.raises(hc.InvalidValueError, match="optimizer_states"):
        hc.estimate_memory(model, 8, (1, 28, 28), optimizer_states=-1)


def test_the_planner_counts_adams_two_buffers(monkeypatch):
    import sys
    import types

    import heterocnn.data_parallel as dp
    from test_placement import plan_table

    monkeypatch.setattr(dp, "canonical_device", lambda d: d)  # the table names a GPU

    table = plan_table()
    two = table.with_optimizer_states(2)
    assert two.layer_memory["cpu"] == [10**6 + 624, 10**5, 0, 10**5 + 47080]
    assert table.layer_memory["cpu"] == [10**6, 10**5, 0, 10**5]  # the measured one unchanged
    assert table.with_optimizer_states(1) is table
    with pytest.raises(hc.InvalidValueError, match="optimizer_states"):
        table.with_optimizer_states("2")
    monkeypatch.setitem(sys.modules, "heterocnn.measure",
                        types.SimpleNamespace(measure=lambda *a, **k: plan_table()))
    assert hc.plan("model", 64, (1, 28, 28), optimizer_states=2).table.layer_memory == \
        two.layer_memory


def test_recipe_and_cli_choose_the_optimizer(tmp_path, capsys):
    pytest.importorskip("safetensors")
    from heterocnn.cli import main

    r = hc.Recipe(optimizer_kind="adamw", lr=1e-3, weight_decay=0.05)
    opt = r.optimizer(hc.models.mlp())
    assert type(opt) is hc.AdamW and (opt.lr, opt.weight_decay) == (1e-3, 0.05)
    assert type(hc.Recipe().optimizer(hc.models.mlp())) is hc.SGD  # the default is unchanged
    assert hc.Recipe(nesterov=True).optimizer(hc.models.mlp()).nesterov
    with pytest.raises(hc.InvalidValueError, match="optimizer_kind"):
        hc.Recipe(optimizer_kind="rmsprop")
    with pytest.raises(hc.InvalidValueError, match="nesterov"):
        hc.Recipe(optimizer_kind="adam", nesterov=True)

    args = ["--model", "mlp", "--sample", "--threads", "2", "--no-progress", "--device", "cpu",
            "--batch-size", "256"]
    straight, resumed = tmp_path / "s.safetensors", tmp_path / "r.safetensors"
    assert main(args + ["--optimizer", "adam", "--epochs", "2", "--save", str(straight)]) == 0
    assert "Adam(lr=0.001, betas=(0.9, 0.999), eps=1e-08, weight_decay=0.0)" in \
        capsys.readouterr().out
    for epochs in ("1", "2"):
        assert main(args + ["--optimizer", "adam", "--epochs", epochs, "--save", str(resumed),
                            "--resume", str(resumed)]) == 0
    a, b = hc.load(straight), hc.load(resumed)
    assert type(b[1]) is hc.Adam and b[1].state().keys() == a[1].state().keys()
    for k, v in a[0].state_dict().items():
        np.testing.assert_array_equal(b[0].state_dict()[k], v)
    for k, v in a[1].state().items():
        np.testing.assert_array_equal(b[1].state()[k], v)
    assert main(args + ["--optimizer", "sgd", "--nesterov", "--epochs", "1"]) == 0
    assert "nesterov=True" in capsys.readouterr().out
    assert main(args + ["--optimizer", "adam", "--nesterov"]) == 2
    assert "--nesterov is for --optimizer sgd" in capsys.readouterr().err
    assert main(args + ["--optimizer", "rmsprop"]) == 2


# ---- on a GPU: the same updates as the CPU ------------------------------------------------

GPU_CASES = [lambda m: hc.Adam(m, lr=2e-3, weight_decay=1e-3),
             lambda m: hc.AdamW(m, lr=2e-3, betas=(0.8, 0.99)),
             lambda m: hc.SGD(m, lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-4),
             lambda m: hc.SGD(m, lr=0.05, momentum=0.9, dampening=0.2)]


@cuda
@pytest.mark.parametrize("make", GPU_CASES)
def test_gpu_train_steps_match_cpu(rng, make):
    cpu = hc.models.lenet5(seed=6)
    gpu = hc.models.lenet5(seed=6).to("cuda")
    opt_c, opt_g = make(cpu), make(gpu)
    for step, n in enumerate((8, 8, 3, 8, 8, 8)):  # a graph per batch shape, replayed
        if step == 3:
            opt_c.lr = opt_g.lr = opt_c.lr / 3  # a replayed graph sees the new rate
        x = rng.standard_normal((n, 1, 28, 28)).astype(F32)
        y = rng.integers(0, 10, n)
        assert abs(gpu.train_step(x, y, opt_g) - cpu.train_step(x, y, opt_c)) < 1e-4
    for k, v in cpu.state_dict().items():
        assert rel_err(gpu.state_dict()[k], v) < 1e-4, k
    state_c, state_g = opt_c.state(), opt_g.state()
    assert state_c["step"] == state_g["step"] == 6
    for k, v in state_c.items():
        if k != "step":
            assert rel_err(state_g[k], v) < 1e-4, k


@cuda
@pytest.mark.parametrize("case", sorted(REFERENCE_CASES))
def test_gpu_update_matches_reference_on_odd_sizes(rng, case):
    cls, kw = REFERENCE_CASES[case]
    run_against_reference(odd_model().to("cuda"), cls, kw, rng)


@cuda
def test_gpu_pipeline_and_split_model_count_one_step_each(rng):
    data = [(rng.standard_normal((8, 1, 28, 28)).astype(F32), rng.integers(0, 10, 8))
            for _ in range(5)]
    cpu = hc.models.lenet5(seed=1)
    n = len(cpu.layers)
    split = hc.models.lenet5(seed=1).to(["cuda"] * 3 + ["cpu"] * (n - 3))
    dp = hc.models.lenet5(seed=1).to(hc.DataParallel(["cuda", "cpu"], shares=[1, 1]))
    models = [cpu, split, dp]
    opts = [hc.Adam(m, lr=1e-3) for m in models]
    for x, y in data:
        for m, o in zip(models, opts):
            m.train_step(x, y, o)
    for m, o in zip(models[1:], opts[1:]):
        assert o.state()["step"] == 5
        for k, v in cpu.state_dict().items():
            assert rel_err(m.state_dict()[k], v) < 1e-4, k
