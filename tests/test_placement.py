"""The placement planner on synthetic cost tables (no GPU needed): the per-layer DP against a
brute force over every placement, the data-parallel split against every integer split, the
plan's alternatives and choice and its table, the share rebalancer on simulated timings,
and the cost cache."""

import dataclasses
import json
import math
import os
import sys
import types

import numpy as np
import pytest

import heterocnn as hc
from heterocnn import cost_cache, placement
from heterocnn.costs import CostTable, Transfer
from heterocnn.rebalance import Rebalancer, split_batch

DEVICES = ["cpu", "cuda:0", "cuda:1"]


@pytest.fixture
def any_device(monkeypatch):
    """DataParallel checks its device names against this build (a CPU-only build refuses
    "cuda:0"); the planner's tables here name GPUs that need not exist."""
    import heterocnn.data_parallel as dp

    monkeypatch.setattr(dp, "canonical_device", lambda d: d)


def random_table(rng, n_layers, n_devices, mode="train", bind=False, infs=False, batch=64):
    devices = DEVICES[:n_devices]
    views = rng.random(n_layers) < 0.2

    def times(scale):
        out = {}
        for k, d in enumerate(devices):
            t = scale * rng.lognormal(0.0, 1.0, n_layers) * (0.3 if k else 1.0)
            t[views] = 0.0
            if infs:
                t[rng.random(n_layers) < 0.15] = math.inf
            out[d] = [float(x) for x in t]
        return out

    forward = times(1e-3)
    backward = times(2e-3) if mode == "train" else {d: [0.0] * n_layers for d in devices}
    update = ({d: [0.0 if v else float(rng.uniform(1e-6, 1e-4)) for v in views]
               for d in devices} if mode == "train" else {d: [0.0] * n_layers for d in devices})
    memory = {d: [int(x) for x in rng.integers(1, 100, n_layers)] for d in devices}
    limit = {d: (int(sum(memory[d]) * rng.uniform(0.3, 0.8)) if bind and rng.random() < 0.8
                 else None) for d in devices}
    transfer = {(a, b): Transfer(float(rng.uniform(1e-6, 1e-4)), float(rng.uniform(1e8, 1e10)))
                for a in devices for b in devices if a != b}
    table = CostTable(
        mode=mode, batch_size=batch, input_shape=(1, 8, 8),
        layers=[f"{i}: Layer{i}" for i in range(n_layers)], devices=devices,
        forward_s=forward, backward_s=backward,
        loss_s={d: float(rng.uniform(1e-6, 1e-4)) for d in devices}, update_s=update,
        input_bytes=int(rng.integers(1, 10**6)),
        act_bytes=[int(x) for x in rng.integers(1, 10**6, n_layers)],
        param_bytes=[0 if v else int(rng.integers(1, 10**6)) for v in views],
        layer_memory=memory, memory_limit=limit, transfer=transfer, step_s={})
    for d in devices:
        whole = placement.chain_step_s(table, [d] * n_layers)
        if math.isfinite(whole):
            table.step_s[d] = {batch: whole * float(rng.uniform(0.7, 1.1)),
                               2 * batch: whole * float(rng.uniform(1.5, 2.2))}
    return table


# -- an independent, vectorised brute force over every per-layer placement --------------------

def brute_chain(t):
    n, k = len(t.layers), len(t.devices)
    every = (np.arange(k ** n)[:, None] // (k ** np.arange(n)[::-1])[None, :]) % k  # (k^n, n)
    train = t.mode == "train"
    node = np.array([[t.forward_s[d][i] + (t.backward_s[d][i] + t.update_s[d][i] if train else 0)
                      for i in range(n)] for d in t.devices])
    cost = node[every, np.arange(n)].sum(axis=1)

    def move(a, b, nbytes):
        return 0.0 if a == b else t.transfer[(t.devices[a], t.devices[b])].seconds(nbytes)

    head = np.array([move(0, b, t.input_bytes) for b in range(k)])  # devices[0] is "cpu"
    cost += head[every[:, 0]]
    for i in range(1, n):
        edge = np.array([[move(a, b, t.act_bytes[i - 1]) + (move(b, a, t.act_bytes[i - 1])
                                                              if train else 0.0)
                          for b in range(k)] for a in range(k)])
        cost += edge[every[:, i - 1], every[:, i]]
    tail = np.array([t.loss_s[d] if train else move(j, 0, t.act_bytes[-1])
                     for j, d in enumerate(t.devices)])
    cost += tail[every[:, -1]]
    for j, d in enumerate(t.devices):
        if t.memory_limit[d] is not None:
            used = (np.array(t.layer_memory[d])[None, :] * (every == j)).sum(axis=1)
            cost[used > t.memory_limit[d]] = np.inf
    best = int(np.argmin(cost))
    return [t.devices[j] for j in every[best]], float(cost[best])


def check_chain(t):
    got, seconds = placement.best_chain(t)
    want, want_s = brute_chain(t)
    if not math.isfinite(want_s):
        assert got is None and seconds == math.inf
        return False
    assert seconds == pytest.approx(want_s, rel=1e-9), (got, want)
    assert placement.chain_step_s(t, got) == pytest.approx(seconds, rel=1e-9)
    return True


@pytest.mark.parametrize("mode", ["train", "infer"])
def test_best_chain_equals_brute_force(rng, mode):
    found = bound = 0
    cases = ([(n, 1) for n in range(1, 13)] + [(n, 2) for n in range(1, 13)]
             + [(n, 3) for n in range(1, 10)])
    for n, k in cases:
        for bind, infs in ((False, False), (True, False), (True, True), (False, True)) * 2:
            t = random_table(rng, n, k, mode=mode, bind=bind, infs=infs)
            found += check_chain(t)
            unconstrained = CostTable(**{**t.__dict__, "memory_limit": {d: None for d in
                                                                      t.devices}})
            bound += bind and placement.best_chain(t)[1] > placement.best_chain(unconstrained)[1]
    assert found > 120 and bound > 40   # most tables were feasible, and the limits did bind


def test_best_chain_large_cases(rng):
    for bind in (False, True, True):
        check_chain(random_table(rng, 12, 3, bind=bind))


def test_best_chain_long_chain_with_full_gpus(rng):
    """A 40-layer chain whose GPUs cannot hold it (the CPU can): quick, and no better than
    without the limits, no worse than all on the CPU."""
    for _ in range(5):
        t = random_table(rng, 40, 3)
        for d in ("cuda:0", "cuda:1"):
            t.memory_limit[d] = int(sum(t.layer_memory[d]) * rng.uniform(0.2, 0.6))
        got, seconds = placement.best_chain(t)
        free = CostTable(**{**t.__dict__, "memory_limit": {}})
        assert placement.best_chain(free)[1] <= seconds <= placement.chain_step_s(t, ["cpu"] * 40)
        assert placement.chain_step_s(t, got) == pytest.approx(seconds, rel=1e-9)


def test_chain_step_s_by_hand():
    t = CostTable(
        mode="train", batch_size=8, input_shape=(4,), layers=["0: A", "1: B"],
        devices=["cpu", "cuda:0"], forward_s={"cpu": [1.0, 2.0], "cuda:0": [0.5, 0.25]},
        backward_s={"cpu": [10.0, 20.0], "cuda:0": [5.0, 2.5]},
        loss_s={"cpu": 100.0, "cuda:0": 200.0},
        update_s={"cpu": [1000.0, 2000.0], "cuda:0": [500.0, 250.0]},
        input_bytes=10, act_bytes=[20, 30], param_bytes=[1, 1],
        layer_memory={"cpu": [1, 1], "cuda:0": [1, 1]}, memory_limit={"cpu": None, "cuda:0": 1},
        transfer={("cpu", "cuda:0"): Transfer(1.0, 10.0), ("cuda:0", "cpu"): Transfer(3.0, 5.0)},
        step_s={})
    # input cpu -> cuda:0 (1 + 10/10), layer 0 on cuda:0, edge cuda:0 -> cpu (3 + 20/5) and the
    # gradient back (1 + 20/10), layer 1 on cpu, the loss on cpu
    assert placement.chain_step_s(t, ["cuda:0", "cpu"]) == \
        2.0 + 505.5 + 7.0 + 3.0 + 2022.0 + 100.0
    assert placement.chain_step_s(t, ["cuda:0", "cuda:0"]) == math.inf   # over cuda:0's limit
    infer = CostTable(**{**t.__dict__, "mode": "infer"})
    # forward only, and the logits (30 bytes) come back to the host
    assert placement.chain_step_s(infer, ["cpu", "cuda:0"]) == 1.0 + 3.0 + 0.25 + 9.0
    with pytest.raises(hc.InvalidValueError):
        placement.chain_step_s(t, ["cpu"])
    with pytest.raises(hc.InvalidValueError):
        placement.best_chain(t, devices=["cuda:7"])


def test_a_layer_cannot_go_where_its_time_is_inf_or_missing(rng):
    t = random_table(rng, 6, 2)
    t.forward_s["cuda:0"][2] = math.inf
    t.backward_s["cuda:0"][4] = None
    t.forward_s["cpu"] = t.forward_s["cpu"][:5]     # layer 5 not measured on the CPU
    got, seconds = placement.best_chain(t)
    assert got[2] == "cpu" and got[4] == "cpu" and got[5] == "cuda:0" and math.isfinite(seconds)
    assert placement.chain_step_s(t, ["cuda:0"] * 6) == math.inf
    t.forward_s["cpu"][2] = math.nan
    assert placement.best_chain(t) == (None, math.inf)


def test_views_stay_with_their_neighbours():
    n = 5
    t = CostTable(
        mode="train", batch_size=4, input_shape=(3,), layers=[f"{i}: L" for i in range(n)],
        devices=["cpu", "cuda:0"],
        forward_s={"cpu": [1.0, 1.0, 0.0, 9.0, 9.0], "cuda:0": [9.0, 9.0, 0.0, 1.0, 1.0]},
        backward_s={d: [0.0] * n for d in ("cpu", "cuda:0")}, loss_s={"cpu": 0, "cuda:0": 0},
        update_s={d: [0.0] * n for d in ("cpu", "cuda:0")}, input_bytes=1,
        act_bytes=[100, 50, 10, 10, 10], param_bytes=[0] * n,
        layer_memory={}, memory_limit={},
        transfer={("cpu", "cuda:0"): Transfer(0.0, 10.0), ("cuda:0", "cpu"): Transfer(0.0, 10.0)},
        step_s={})
    got, seconds = placement.best_chain(t)
    # the view (layer 2) crosses with the smaller tensor: its own output (10 B), not its input
    assert got == ["cpu", "cpu", "cpu", "cuda:0", "cuda:0"]
    assert seconds == pytest.approx(4.0 + 2.0)   # 10 B over 10 B/s there and back


# -- data parallel ----------------------------------------------------------------------------

def test_fit_step_s():
    assert placement.fit_step_s({64: 1.0, 128: 1.5}) == pytest.approx((0.5, 1 / 128))
    assert placement.fit_step_s({64: 2.0}) == (0.0, 2.0 / 64)
    a, c = placement.fit_step_s({10: 1.0, 20: 3.0, 30: 5.0})   # intercept -1: through 0
    assert a == 0.0 and c == pytest.approx((10 + 60 + 150) / (100 + 400 + 900))
    assert placement.fit_step_s({10: 2.0, 20: 1.0}) == (1.5, 0.0)  # falling: flat
    assert placement.fit_step_s({}) is None and placement.fit_step_s({8: math.inf}) is None


def dp_table(rng, n_devices, batch, mode="train"):
    t = random_table(rng, 4, n_devices, mode=mode, batch=batch)
    for d in t.devices:
        a = float(rng.uniform(0, 2e-3))
        c = float(rng.lognormal(-9, 1))
        t.step_s[d] = {batch: a + c * batch, 2 * batch: a + 2 * c * batch}
    return t


def every_split(batch, k):
    if k == 1:
        yield (batch,)
        return
    for b in range(batch + 1):
        for rest in every_split(batch - b, k - 1):
            yield (b,) + rest


def test_data_parallel_step_s_by_hand():
    t = CostTable(
        mode="train", batch_size=10, input_shape=(2,), layers=["0: A"], devices=["cpu", "cuda:0"],
        forward_s={"cpu": [1.0], "cuda:0": [1.0]}, backward_s={"cpu": [1.0], "cuda:0": [1.0]},
        loss_s={"cpu": 0.0, "cuda:0": 0.0}, update_s={"cpu": [0.5], "cuda:0": [0.25]},
        input_bytes=10, act_bytes=[10], param_bytes=[100], layer_memory={}, memory_limit={},
        transfer={("cpu", "cuda:0"): Transfer(1.0, 100.0), ("cuda:0", "cpu"): Transfer(2.0, 50.0)},
        step_s={"cpu": {10: 3.5, 20: 6.5}, "cuda:0": {10: 1.25}})
    cost = placement.data_parallel_step_s(t, {"cpu": 4, "cuda:0": 6})
    # less their updates (0.5, 0.25), cpu: steps 3 at 10 and 6 at 20, a line 0.3 b; cuda:0:
    # 1 at 10, proportional 0.1 b. A GPU master with a CPU replica overlaps its steps: the
    # GPU's side is its pass and the update (0.6 + 0.25), the host's its pass, the gradients
    # up (1 + 100 / 100) and the weights down (2 + 100 / 50): 1.2 + 6; the step the slower.
    assert cost.replica_s == pytest.approx({"cpu": 7.2, "cuda:0": 0.85})
    assert cost.master == "cuda:0" and cost.reduce_s == 0.0
    assert cost.seconds == pytest.approx(7.2)
    assert list(cost.sub_batches) == ["cuda:0", "cpu"]  # the master is replica 0
    t.dp_overhead_s = 0.5  # a measured split's own time beyond the model
    cost = placement.data_parallel_step_s(t, {"cpu": 4, "cuda:0": 6})
    assert cost.seconds == pytest.approx(7.7) and cost.overlapped
    t.dp_overhead_s = 0.0
    # On master cpu the steps do not overlap: gradients in (2 + 100 / 50), their sum (priced
    # as an update, 0.5), weights out (1 + 100 / 100), the update 0.5, after the slower pass.
    cost = placement.data_parallel_step_s(t, {"cpu": 4, "cuda:0": 6}, master="cpu")
    assert cost.reduce_s == pytest.approx(7.0) and cost.seconds == pytest.approx(1.2 + 7.0)
    assert list(cost.sub_batches) == ["cpu", "cuda:0"]
    assert placement.data_parallel_step_s(t, {"cpu": 0, "cuda:0": 10}).seconds == 1.25
    assert placement.data_parallel_step_s(t, {"cpu": 10, "cuda:0": 0}).seconds == 3.5
    with pytest.raises(hc.InvalidValueError):
        placement.data_parallel_step_s(t, {"cpu": 3, "cuda:0": 3})
    infer = CostTable(**{**t.__dict__, "mode": "infer"})
    assert placement.data_parallel_step_s(infer, {"cpu": 4, "cuda:0": 6}).reduce_s == 0.0


@pytest.mark.parametrize("mode", ["train", "infer"])
def test_data_parallel_shares_equal_brute_force(rng, mode):
    left_out = 0
    for k in (1, 2, 3):
        for batch in (1, 2, 5, 13, 24):
            for _ in range(3):
                t = dp_table(rng, k, batch, mode)
                if rng.random() < 0.3:   # transfers so slow that no split pays
                    t.transfer = {p: Transfer(1.0, 1.0) for p in t.transfer}
                shares, seconds = placement.data_parallel_shares(t, t.devices)
                assert sum(shares.values()) == batch and min(shares.values()) >= 1
                priced = [placement.data_parallel_step_s(t, dict(zip(t.devices, split))).seconds
                          for split in every_split(batch, k)]
                assert seconds == pytest.approx(min(priced), rel=1e-12)
                assert placement.data_parallel_step_s(
                    t, {d: shares.get(d, 0) for d in t.devices}).seconds == \
                    pytest.approx(seconds, rel=1e-12)
                single = min(placement.single_device_s(t, d) for d in t.devices)
                assert seconds <= single
                left_out += len(shares) < k
    assert left_out > 5


def test_a_device_that_does_not_pay_is_left_out(rng):
    t = dp_table(rng, 2, 256)
    t.step_s = {"cpu": {256: 1.0, 512: 2.0}, "cuda:0": {256: 0.01, 512: 0.02}}
    # the weights' way to the CPU and back alone takes longer than the GPU's step
    t.transfer = {p: Transfer(0.01, 1e9) for p in t.transfer}
    shares, seconds = placement.data_parallel_shares(t, ["cpu", "cuda:0"])
    assert shares == {"cuda:0": 256} and seconds == 0.01
    t.step_s["cpu"] = {256: 0.01, 512: 0.02}     # equal speeds, cheap transfers: both pay
    t.transfer = {p: Transfer(0.0, 1e15) for p in t.transfer}
    t.update_s = {d: [0.0] * 4 for d in t.devices}
    shares, seconds = placement.data_parallel_shares(t, ["cpu", "cuda:0"])
    assert shares == {"cpu": 128, "cuda:0": 128} and seconds == pytest.approx(0.005)


# -- the plan ---------------------------------------------------------------------------------

def plan_table(gpu_fits=True):
    devices = ["cpu", "cuda:0"]
    return CostTable(
        mode="train", batch_size=64, input_shape=(1, 28, 28),
        layers=["0: Conv2d(1, 6, 5, 1, 2)", "1: MaxPool2d(2, 2)", "2: Flatten()",
                "3: Linear(1176, 10)"], devices=devices,
        forward_s={"cpu": [4e-3, 1e-3, 0.0, 2e-4], "cuda:0": [1e-4, 5e-5, 0.0, 5e-5]},
        backward_s={"cpu": [8e-3, 1e-3, 0.0, 4e-4], "cuda:0": [2e-4, 5e-5, 0.0, 1e-4]},
        loss_s={"cpu": 1e-5, "cuda:0": 3e-5},
        update_s={"cpu": [1e-6, 0.0, 0.0, 2e-5], "cuda:0": [1e-6, 0.0, 0.0, 5e-6]},
        input_bytes=64 * 784 * 4, act_bytes=[64 * 6 * 784 * 4, 64 * 1176 * 4, 64 * 1176 * 4,
                                             64 * 10 * 4],
        param_bytes=[156 * 4, 0, 0, 11770 * 4],
        layer_memory={"cpu": [10**6, 10**5, 0, 10**5], "cuda:0": [10**6, 10**5, 0, 10**5]},
        memory_limit={"cpu": None, "cuda:0": 2 * 10**6 if gpu_fits else 10**6 + 10**5},
        transfer={("cpu", "cuda:0"): Transfer(1e-5, 2e10), ("cuda:0", "cpu"): Transfer(1e-5, 2e10)},
        step_s={"cpu": {64: 0.0150, 128: 0.0290}, "cuda:0": {64: 6e-4, 128: 9e-4}})


def test_plan_chooses_the_fastest_and_says_why(any_device):
    p = placement.make_plan(plan_table())
    assert p.placement == "cuda:0" and p.chosen == "cuda:0" and p.mode == "train"
    assert p.predicted_step_s == 6e-4 == p.alternatives["cuda:0"]
    assert p.alternatives["cpu"] == 0.0150                # priced from the measured step
    assert set(p.alternatives) == {"cpu", "cuda:0", "per-layer optimum",
                                   "data parallel cpu+cuda:0"}
    assert p.predicted_step_s == min(p.alternatives.values())
    text = str(p)
    for name in p.table.layers + p.table.devices + list(p.alternatives):
        assert name in text
    assert "total" in text and "chosen" in text and "600.0 us" in text
    assert "all on cuda:0: the same plan" in text
    assert "Plan(" in repr(p)


def test_plan_splits_the_chain_when_the_gpu_is_full(any_device):
    p = placement.make_plan(plan_table(gpu_fits=False))
    assert "cuda:0" not in p.alternatives and "cuda:0" in p.unfit
    assert isinstance(p.placement, list) and p.chosen == "per-layer optimum"
    assert p.placement[0] == "cuda:0" and "cpu" in p.placement
    assert p.predicted_step_s == pytest.approx(placement.chain_step_s(p.table, p.placement))
    assert p.predicted_step_s < p.alternatives["cpu"]
    text = str(p)
    assert "cuda:0 -> cpu" in text and "does not fit" in text


def test_plan_data_parallel_when_two_devices_are_equal(any_device):
    t = plan_table()
    t.step_s["cpu"] = dict(t.step_s["cuda:0"])
    t.update_s["cpu"] = list(t.update_s["cuda:0"])
    t.transfer = {pair: Transfer(1e-6, 1e12) for pair in t.transfer}
    p = placement.make_plan(t)
    assert isinstance(p.placement, hc.DataParallel) and p.chosen == "data parallel cpu+cuda:0"
    assert dict(zip(p.placement.devices, p.placement.shares)) == pytest.approx(
        {"cpu": 0.5, "cuda:0": 0.5})
    assert p.predicted_step_s < min(p.alternatives["cpu"], p.alternatives["cuda:0"])
    assert "overlapping the next step" in str(p)
    # a margin: the split must win by more than it to be chosen over one device
    assert placement.make_plan(t, margin=0.5).placement == "cpu"
    # and by DATA_PARALLEL_MARGIN at least, whatever the margin asked for
    single = min(p.alternatives["cpu"], p.alternatives["cuda:0"])
    base = p.predicted_step_s
    t.dp_overhead_s = single * (1 - placement.DATA_PARALLEL_MARGIN / 2) - base
    p = placement.make_plan(t)
    assert p.alternatives[p.chosen] == single and not isinstance(p.placement, hc.DataParallel)
    t.dp_overhead_s = single * (1 - 2 * placement.DATA_PARALLEL_MARGIN) - base
    assert isinstance(placement.make_plan(t).placement, hc.DataParallel)


def test_plan_ties_go_to_the_simplest(any_device):
    t = plan_table()
    t.forward_s["cuda:0"] = [math.inf] * 4
    t.step_s = {"cpu": {64: 0.0150}}      # per-layer optimum: all on the CPU, the same plan
    p = placement.make_plan(t)
    assert p.placement == "cpu" and p.chain == ["cpu"] * 4
    assert p.alternatives["per-layer optimum"] == p.alternatives["cpu"]


def test_plan_three_devices_and_inference(any_device, rng):
    t = random_table(rng, 7, 3, mode="infer")
    p = placement.make_plan(t)
    assert {"cpu", "cuda:0", "cuda:1"} <= set(p.alternatives) | set(p.unfit)
    # a forward pass runs on one device or one chain: no replicas in an inference plan
    assert not any(name.startswith("data parallel") for name in p.alternatives)
    assert p.predicted_step_s == min(p.alternatives.values())
    assert p.alternatives[p.chosen] == p.predicted_step_s
    assert "loss" not in str(p) and p.mode == "infer"
    trained = placement.make_plan(dataclasses.replace(t, mode="train"))
    names = {"data parallel cpu+cuda:0", "data parallel cpu+cuda:1",
             "data parallel cuda:0+cuda:1", "data parallel cpu+cuda:0+cuda:1"}
    assert names <= set(trained.alternatives) | set(trained.unfit)


def test_measured_overhead_is_added_to_every_data_parallel_price(any_device):
    t = plan_table()
    base = placement.data_parallel_step_s(t, {"cpu": 16, "cuda:0": 48})
    t.dp_overhead_s = 0.25
    more = placement.data_parallel_step_s(t, {"cpu": 16, "cuda:0": 48})
    assert more.seconds == pytest.approx(base.seconds + 0.25)
    assert placement.data_parallel_step_s(t, {"cpu": 0, "cuda:0": 64}).seconds == \
        pytest.approx(placement.single_device_s(t, "cuda:0"))  # one replica: no overhead


def test_plan_measures_then_plans(monkeypatch, any_device):
    seen = {}

    def measure(model, batch_size, input_shape, devices=None, mode="train"):
        seen.update(batch_size=batch_size, input_shape=input_shape, devices=devices, mode=mode)
        return plan_table()

    monkeypatch.setitem(sys.modules, "heterocnn.measure", types.SimpleNamespace(measure=measure))
    p = hc.plan("model", 64, (1, 28, 28), devices=["cpu", "cuda:0"], mode="train")
    assert isinstance(p, hc.Plan) and p.placement == "cuda:0"
    assert seen == {"batch_size": 64, "input_shape": (1, 28, 28), "devices": ["cpu", "cuda:0"],
                    "mode": "train"}


# -- the rebalancer ----------------------------------------------------------------------------

def equal_finish(overhead, per_sample, batch):
    """Continuous shares at which every replica of a + c * b finishes at once."""
    t = (batch + sum(a / c for a, c in zip(overhead, per_sample))) / sum(1 / c for c in per_sample)
    return [(t - a) / c / batch for a, c in zip(overhead, per_sample)]


def simulate(r, overhead, per_sample, steps, rng=None, noise=0.0, batch=None):
    devices = list(r.shares)
    sizes, changes = r.sub_batches(batch), []
    for step in range(steps):
        seconds = {d: overhead[k] + per_sample[k] * sizes[d] for k, d in enumerate(devices)}
        if noise:
            seconds = {d: s * float(rng.lognormal(0.0, noise)) for d, s in seconds.items()}
        new = r.observe(seconds, sizes)
        if new is not None:
            assert sum(new.values()) == r.batch_size
            changes.append(step)
            sizes = new
    return sizes, changes


def test_rebalancer_converges_to_equal_finish():
    overhead, per_sample = [2e-3, 1e-4], [1e-5, 4e-5]   # a fast GPU and a slower CPU
    r = Rebalancer({"cuda:0": 0.5, "cpu": 0.5}, batch_size=512, period=8)
    sizes, changes = simulate(r, overhead, per_sample, 8 * 60)
    want = equal_finish(overhead, per_sample, 512)
    assert sizes["cuda:0"] == pytest.approx(want[0] * 512, abs=512 * 0.012)
    assert changes and all((s + 1) % 8 == 0 for s in changes)     # only at period ends
    assert changes[-1] < 8 * 30                                   # and then it settles


def test_rebalancer_does_not_oscillate_under_noise(rng):
    overhead, per_sample = [1e-3, 1e-3, 1e-3], [1e-5, 2e-5, 4e-5]
    r = Rebalancer({"cuda:0": 1, "cuda:1": 1, "cpu": 1}, batch_size=1024)
    simulate(r, overhead, per_sample, 32 * 30, rng, noise=0.05)       # converge first
    settled = dict(r.shares)
    _, changes = simulate(r, overhead, per_sample, 32 * 60, rng, noise=0.05)
    assert len(changes) <= 3
    want = equal_finish(overhead, per_sample, 1024)
    for k, d in enumerate(r.shares):
        assert r.shares[d] == pytest.approx(want[k], abs=0.02)
        assert abs(r.shares[d] - settled[d]) < 0.02


def test_rebalancer_respects_the_period_and_partial_batches():
    r = Rebalancer({"cpu": 1, "cuda:0": 3}, batch_size=100, period=5)
    assert r.sub_batches() == {"cpu": 25, "cuda:0": 75}
    for _ in range(4):
        assert r.observe({"cpu": 0.25, "cuda:0": 0.75}, {"cpu": 25, "cuda:0": 75}) is None
    # a last partial batch: not counted, the shares stay, its sub-batches scale
    assert r.observe({"cpu": 1.0, "cuda:0": 1.0}, {"cpu": 9, "cuda:0": 28}) is None
    assert r.sub_batches(37) == {"cpu": 9, "cuda:0": 28}
    assert r.shares == {"cpu": 0.25, "cuda:0": 0.75}
    new = r.observe({"cpu": 0.25, "cuda:0": 0.25}, {"cpu": 25, "cuda:0": 75})
    # the period's rates: cpu 125 / 1.25 s = 100/s, cuda:0 375 / 3.25 s = 115/s; the CPU's
    # share moves half way from 0.25 to 100 / 215
    assert new == {"cpu": 36, "cuda:0": 64}
    assert r.sub_batches(1) in ({"cpu": 1, "cuda:0": 0}, {"cpu": 0, "cuda:0": 1})
    with pytest.raises(hc.InvalidValueError):
        r.observe({"cpu": 1.0}, {"cpu": 100})
    with pytest.raises(hc.InvalidValueError):
        Rebalancer({"cpu": 0}, 8)


def test_rebalancer_is_deterministic(rng):
    seed = int(rng.integers(1 << 30))
    runs = []
    for _ in range(2):
        r = Rebalancer({"cpu": 1, "cuda:0": 1}, batch_size=256, period=4)
        runs.append(simulate(r, [1e-3, 0], [1e-5, 3e-5], 200, np.random.default_rng(seed),
                             noise=0.1))
    assert runs[0] == runs[1]


def test_split_batch(rng):
    for _ in range(200):
        k = int(rng.integers(1, 5))
        shares = {f"d{j}": float(rng.uniform(0.01, 1)) for j in range(k)}
        batch = int(rng.integers(0, 300))
        sizes = split_batch(shares, batch)
        total = sum(shares.values())
        assert list(sizes) == list(shares) and sum(sizes.values()) == batch
        assert all(abs(sizes[d] - batch * w / total) < 1 for d, w in shares.items())
    assert split_batch({"a": 1, "b": 1}, 3) == {"a": 2, "b": 1}     # ties to the first
    assert split_batch({"a": 64 / 256, "b": 192 / 256}, 256) == {"a": 64, "b": 192}
    with pytest.raises(hc.InvalidValueError):
        split_batch({"a": -1}, 3)
    with pytest.raises(hc.InvalidValueError):
        split_batch({"a": 1}, -3)


# -- the cost cache ----------------------------------------------------------------------------

@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    return tmp_path / "heterocnn"


KEY = {"machine": "test cpu", "build": {"version": "0.1.0"}, "threads": 2,
       "model": ["Linear(4, 3)"], "batch_size": 64, "input_shape": [1, 28, 28],
       "devices": ["cpu", "cuda:0"], "mode": "train"}


def test_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert cost_cache.cache_dir() == str(tmp_path / "heterocnn")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/path")   # not absolute: ignored
    assert cost_cache.cache_dir() == str(tmp_path / "home" / ".cache" / "heterocnn")
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert cost_cache.cache_dir() == str(tmp_path / "home" / ".cache" / "heterocnn")


def test_cache_fresh_then_reused(cache, rng):
    assert cost_cache.load(KEY) == (None, None)
    table = random_table(rng, 5, 3, bind=True, infs=True)
    assert cost_cache.store(KEY, table) is None
    assert os.listdir(cache) == [os.path.basename(cost_cache.cache_path(KEY))]  # no temp left
    got, note = cost_cache.load(KEY)
    assert note is None and got.notes[-1].startswith("costs from the cache")
    got.notes.pop()
    for name, value in table.__dict__.items():
        assert getattr(got, name) == value or (name in ("forward_s", "backward_s") and
                                               json.dumps(getattr(got, name)) == json.dumps(value))
    assert placement.best_chain(got) == placement.best_chain(table)
    other = dict(KEY, batch_size=128)
    assert cost_cache.load(other) == (None, None)     # another key: another file
    assert cost_cache.store(KEY, table) is None       # over the old one
    assert cost_cache.load(KEY)[0] is not None


@pytest.mark.parametrize("damage", [
    lambda obj: "{not json",
    lambda obj: json.dumps(obj)[: len(json.dumps(obj)) // 2],
    lambda obj: b"\xff\xfe\x00garbage",
    lambda obj: json.dumps([1, 2, 3]),
    lambda obj: json.dumps({**obj, "table": None}),
    lambda obj: json.dumps({**obj, "table": {**obj["table"], "batch_size": "64"}}),
    lambda obj: json.dumps({**obj, "table": {**obj["table"], "mode": "sideways"}}),
    lambda obj: json.dumps({**obj, "table": {**obj["table"],
                                             "act_bytes": obj["table"]["act_bytes"][:-1]}}),
    lambda obj: json.dumps({**obj, "table": {**obj["table"], "transfer": [["cpu", 3]]}}),
    lambda obj: json.dumps({**obj, "table": {**obj["table"], "step_s": {"cpu": {"x": 1}}}}),
    lambda obj: json.dumps({**obj, "table": {**obj["table"],
                                             "forward_s": {"cpu": ["fast"] * 5}}}),
], ids=["bad json", "truncated", "binary", "not an object", "no table", "batch a string",
        "bad mode", "short list", "bad transfer", "bad step", "bad number"])
def test_cache_corrupt_is_a_note_not_an_error(cache, rng, damage):
    cost_cache.store(KEY, random_table(rng, 5, 2))
    path = cost_cache.cache_path(KEY)
    with open(path) as f:
        obj = json.load(f)
    text = damage(obj)
    with open(path, "wb") as f:
        f.write(text if isinstance(text, bytes) else text.encode())
    table, note = cost_cache.load(KEY)
    assert table is None and "\n" not in note and path in note and "measuring again" in note
    assert cost_cache.store(KEY, random_table(rng, 5, 2)) is None   # re-measured, stored over
    assert cost_cache.load(KEY)[0] is not None


def test_cache_stale(cache, rng):
    cost_cache.store(KEY, random_table(rng, 3, 2))
    path = cost_cache.cache_path(KEY)
    with open(path) as f:
        obj = json.load(f)
    with open(path, "w") as f:
        json.dump({**obj, "version": cost_cache.VERSION + 1}, f)
    table, note = cost_cache.load(KEY)
    assert table is None and "version" in note
    # a file that holds another key's table (a hash collision, a copied file)
    with open(path, "w") as f:
        json.dump({**obj, "key": dict(KEY, threads=16)}, f)
    table, note = cost_cache.load(KEY)
    assert table is None and "another setup" in note


def test_cache_unwritable_is_a_note(tmp_path, monkeypatch, rng):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))
    note = cost_cache.store(KEY, random_table(rng, 2, 1))
    assert note is not None and "not written" in note
    assert cost_cache.load(KEY)[0] is None
