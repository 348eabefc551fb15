"""Suite fusion: what fusing the ReLUs gains. Per net (--nets), batch (--batches) and device
(--devices): training images/s with ReLU fusion (the default) and without (HC_RELU_FUSION=0:
no ReLU in the epilogue of the Conv2d, Linear or BatchNorm before it, nor its backward in the
layer after it), and the time a step spends in the BatchNorm+ReLU pairs (and in the Conv2d+ReLU
and Linear+ReLU pairs).

The setting is read once, at import, so every figure comes from fresh processes (python
apps/bench.py --fusion-child ...): per repeat one with fusion and one without, in turns (the
first of the two alternating from repeat to repeat), so that a change of load hits both. A child
trains the net from the same weights with SGD (lr 0.01, momentum 0.9) on the same Fashion-MNIST
batches as the cpu and gpu suites (host batches on the CPU; on a GPU the training set held on
the device, each step a replayed CUDA graph): untimed warm-up steps, then --images images' worth
of steps timed (wall time; each step returns its loss, so it has finished); then a profiled run
(model.profile(): each layer's forward and backward timed, on a GPU between device
synchronisations, op by op) for the pairs: the forward and backward of the layer and of the ReLU
after it, summed over the net's pairs of that kind, per step. With fusion the ReLU's forward is
inside the layer's and its backward inside the next layer's (not counted in the pair), so a
pair's fused time is the layer's alone."""

import json
import os
import subprocess
import sys

from _bench_common import WallClock, figure, measure, ratio, train_batches

LR, MOMENTUM = 0.01, 0.9
WARMUP_IMAGES = 1920  # as the cpu and gpu suites
FUSES = ("Conv2d", "Linear", "BatchNorm2d", "BatchNorm1d")  # layers a following ReLU fuses into
MODES = {"fused": "1", "unfused": "0"}  # HC_RELU_FUSION of each child


CHILD_TIMEOUT_S = 1800  # one child (build, warm-up, timed and profiled steps): a hung one ends


def steps_of(args, batch):
    """(timed steps, warm-up steps, profiled steps) of one child at ``batch``."""
    if args.quick:
        return max(1, args.images // batch), 1, 2
    return max(1, args.images // batch), max(3, WARMUP_IMAGES // batch), max(5, 2560 // batch)


def pairs(model):
    """{"BatchNorm2d+ReLU": [index of each such layer], ...}: the layers a ReLU follows that
    the step plan fuses it into."""
    out = {}
    for i, layer in enumerate(model.layers[:-1]):
        kind = type(layer).__name__
        if kind in FUSES and type(model.layers[i + 1]).__name__ == "ReLU":
            out.setdefault(f"{kind}+ReLU", []).append(i)
    return out


def child(spec):
    """Train per ``spec`` (JSON: net, batch, device, steps, warmup, profiled, threads, data,
    sample) with HC_RELU_FUSION as the parent set it, and print one JSON line: images/s and
    the pairs' microseconds per step."""
    import numpy as np

    import heterocnn as hc

    s = json.loads(spec)
    net, batch, device = s["net"], s["batch"], s["device"]
    hc.set_threads(s["threads"])
    model = hc.models.MODELS[net](seed=0).to(device)
    opt = hc.SGD(model, lr=LR, momentum=MOMENTUM)
    if device == "cuda":
        train = hc.datasets.fashion_mnist("train", path=s["data"], sample=s["sample"])
        X, Y = train.as_tuple()
        data = hc.DeviceDataset((X, Y), device="cuda")
        idx = np.resize(np.random.default_rng(0).permutation(len(Y)),
                        (max(s["steps"], s["warmup"], s["profiled"]), batch)).astype(np.int64)
        source = train.source
        step = lambda i: model.train_step_on(data, idx[i], opt)  # noqa: E731
    else:
        batches, source = train_batches(hc, np, batch, min(s["steps"], 50), s["data"],
                                        s["sample"])
        step = lambda i: model.train_step(*batches[i % len(batches)], opt)  # noqa: E731
    rate = measure({"step": (step, WallClock())}, s["steps"], s["warmup"], 1, per=batch)["step"]
    model.profile(True)
    for i in range(s["profiled"]):
        step(i)
    times = model.layer_times()
    model.profile(False)
    pair_us = {kind: 1e6 * sum(times[j]["forward_s"] + times[j]["backward_s"]
                               for i in where for j in (i, i + 1))
               for kind, where in pairs(model).items()}
    print(json.dumps({"relu_fusion": hc.build_info()["relu_fusion"], "data": source,
                      "images_per_s": rate["median"], "warmup_s": rate["warmup_s"],
                      "pair_us": pair_us}))
    return 0


def measure_child(ctx, mode, spec):
    """One child's figures with fusion ``mode`` ("fused" or "unfused"), or {"error": ...}."""
    cmd = [sys.executable, os.path.join(os.path.dirname(os.path.abspath(__file__)), "bench.py"),
           "--threads", str(spec["threads"]), "--fusion-child", json.dumps(spec)]
    env = dict(os.environ, HC_RELU_FUSION=MODES[mode])
    try:
        run = subprocess.run(cmd, capture_output=True, text=True, env=env,
                             timeout=CHILD_TIMEOUT_S)
    except subprocess.TimeoutExpired as e:
        tail = ((e.stdout or b"") + (e.stderr or b""))[-1500:]  # bytes, even with text=True
        return {"error": f"the {mode} child timed out after {CHILD_TIMEOUT_S} s: "
                         f"{tail.decode(errors='replace')}"}
    if run.returncode != 0:
        return {"error": (run.stdout + run.stderr)[-1500:]}
    out = json.loads(run.stdout.strip().splitlines()[-1])
    if out["relu_fusion"] != (mode == "fused"):
        return {"error": f"the child ran with relu_fusion={out['relu_fusion']} for {mode}"}
    return out


def measure_case(ctx, net, batch, device):
    """The row of one net, batch and device: both modes' children, in turns, repeat by
    repeat."""
    args = ctx.args
    steps, warmup, profiled = steps_of(args, batch)
    spec = {"net": net, "batch": batch, "device": device, "steps": steps, "warmup": warmup,
            "profiled": profiled, "threads": args.threads, "data": args.data,
            "sample": args.sample}
    samples = {mode: [] for mode in MODES}
    for r in range(args.repeats):
        for mode in (list(MODES) if r % 2 == 0 else list(MODES)[::-1]):
            samples[mode].append(measure_child(ctx, mode, spec))
    row = {"net": net, "batch": batch, "device": device, "steps": steps,
           "warmup_steps": warmup, "profiled_steps": profiled}
    errors = [s["error"] for ss in samples.values() for s in ss if "error" in s]
    if errors:
        return dict(row, error=errors[0])
    row["data"] = samples["fused"][0]["data"]
    for mode, ss in samples.items():
        row[mode] = figure([s["images_per_s"] for s in ss], "images/s")
    row["speedup"] = ratio(row["fused"], row["unfused"])
    row["pairs"] = {kind: {"count": len(where),
                           **{f"{mode}_us": figure([s["pair_us"][kind] for s in samples[mode]],
                                                   "us per step") for mode in MODES}}
                    for kind, where in pairs(ctx.hc.models.MODELS[net]()).items()}
    for p in row["pairs"].values():
        p["speedup"] = ratio(p["unfused_us"], p["fused_us"])
    return row


def run(ctx):
    args = ctx.args
    rows = []
    for device in ctx.devices:
        for net in args.nets:
            for batch in args.batches:
                row = measure_case(ctx, net, batch, device)
                rows.append(row)
                if "error" in row:
                    ctx.log(f"fusion {device} {net} batch {batch}: failed: {row['error'][-300:]}")
                    continue
                bn = row["pairs"].get("BatchNorm2d+ReLU")
                ctx.log(f"fusion {device} {net:<8} batch {batch:<4} fused "
                        f"{row['fused']['median']:>10,.0f}  unfused "
                        f"{row['unfused']['median']:>10,.0f} img/s  {row['speedup']:.2f}x"
                        + (f"; BatchNorm2d+ReLU {bn['fused_us']['median']:,.0f} / "
                           f"{bn['unfused_us']['median']:,.0f} us a step" if bn else ""))
    return {"unit": "images/s; pairs in microseconds per step", "lr": LR, "momentum": MOMENTUM,
            "rows": rows, "method": __doc__.split("\n\n", 1)[1].replace("\n", " ")}
