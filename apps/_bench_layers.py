"""Suite layers (the thesis's chapter 5): forward and backward time of every convolution,
linear and pooling layer of lenet5 and convnet, heterocnn against PyTorch, one device at a
time.

How heterocnn's times are taken: model.profile() makes the core time each layer's forward and
backward call with a steady clock and, on a GPU, a device synchronisation at the end of each
call (the step then runs op by op instead of as one CUDA graph); times are means per call over
the profiled steps. A ReLU after a conv or linear layer is fused into that layer's forward, so
its forward is part of that layer's and its backward is timed on its own (not in the table).
The first layer computes no input gradient.

PyTorch is measured the same way: the twin net (same weights, same batch) runs layer by layer,
each layer's forward (with the fused ReLU's, where heterocnn fuses one) and its backward
(torch.autograd.grad for the input and the parameters, no input gradient for the first layer)
timed between synchronisations, the output gradient of each layer coming from the layer after
it and the loss. On the GPU PyTorch runs on cuDNN with cudnn.benchmark on and off, TF32 off."""

import time

from _bench_common import figure

KINDS = ("Conv2d", "Linear", "MaxPool2d", "BatchNorm2d", "AdaptiveAvgPool2d")
NETS = ("lenet5", "convnet", "bnnet")


def calls_of(ctx, batch):
    """(profiled steps per repeat, warm-up steps)."""
    if ctx.args.quick:
        return 2, 1
    return max(5, 2560 // batch), 3


def heterocnn_layers(ctx, name, device, batch, x, y):
    """(layer indices, repeat()) for heterocnn's ``name`` on ``device``, warmed up: repeat()
    profiles a run of steps and returns the mean (forward, backward) us per call of each
    conv/linear/pooling layer."""
    hc, np = ctx.hc, ctx.np
    calls, warmup = calls_of(ctx, batch)
    model = hc.models.MODELS[name](seed=0).to(device)
    opt = hc.SGD(model, lr=0.0)  # the weights stay as the PyTorch twin has them
    if device == "cuda":
        data = hc.DeviceDataset((x, y), device="cuda")
        idx = np.arange(batch, dtype=np.int64)
        step = lambda: model.train_step_on(data, idx, opt)  # noqa: E731
    else:
        step = lambda: model.train_step(x, y, opt)  # noqa: E731
    timed = [i for i, layer in enumerate(model.layers) if type(layer).__name__ in KINDS]
    for _ in range(warmup):
        step()

    def repeat():
        model.profile(True)
        for _ in range(calls):
            step()
        t = model.layer_times()
        model.profile(False)
        return [(1e6 * t[i]["forward_s"], 1e6 * t[i]["backward_s"]) for i in timed]

    return timed, repeat


def torch_layers(ctx, name, device, batch, x, y):
    """The same for the PyTorch twin of ``name`` on ``device``, run layer by layer."""
    torch, hc = ctx.torch, ctx.hc
    from heterocnn.interop import to_torch

    calls, warmup = calls_of(ctx, batch)
    layers = list(to_torch(hc.models.MODELS[name](seed=0)).to(device))
    kinds = [type(m).__name__ for m in layers]
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    tx = torch.from_numpy(x).to(device)
    ty = torch.from_numpy(y).to(device)
    fwd = [0.0] * len(layers)
    bwd = [0.0] * len(layers)

    def timed(totals, i, fn):
        sync()
        t = time.perf_counter()
        out = fn()
        sync()
        totals[i] += time.perf_counter() - t
        return out

    def one_step():
        saved = []  # (index, input, pre-ReLU output or None, output)
        h, learned_before, i = tx, False, 0
        while i < len(layers):
            if kinds[i] == "Flatten":
                h, i = h.flatten(1), i + 1
                continue
            hin = h.detach().requires_grad_(learned_before)
            fuse = kinds[i] in ("Conv2d", "Linear", "BatchNorm2d") and i + 1 < len(layers) \
                and kinds[i + 1] == "ReLU"
            mod = layers[i]
            if fuse:
                mid, out = timed(fwd, i, lambda: (lambda m: (m, torch.relu(m)))(mod(hin)))
            else:
                mid, out = None, timed(fwd, i, lambda: mod(hin))
            saved.append((i, hin, mid, out))
            learned_before = learned_before or any(True for _ in mod.parameters())
            h, i = out, i + (2 if fuse else 1)
        logits = h.detach().requires_grad_(True)
        dy, = torch.autograd.grad(torch.nn.functional.cross_entropy(logits, ty), logits)
        for i, hin, mid, out in reversed(saved):
            dy = dy.reshape(out.shape)
            if mid is not None:  # the fused ReLU's backward, timed on its own as heterocnn does
                dy, = timed(bwd, i + 1, lambda: torch.autograd.grad(out, mid, dy,
                                                                    retain_graph=True))
                out = mid
            inputs = ([hin] if hin.requires_grad else []) + list(layers[i].parameters())
            grads = timed(bwd, i, lambda: torch.autograd.grad(out, inputs, dy))
            if not hin.requires_grad:
                break
            dy = grads[0]

    for _ in range(warmup):
        one_step()
    picked = [i for i, kind in enumerate(kinds) if kind in KINDS]

    def repeat():
        fwd[:] = [0.0] * len(layers)
        bwd[:] = [0.0] * len(layers)
        for _ in range(calls):
            one_step()
        return [(1e6 * fwd[i] / calls, 1e6 * bwd[i] / calls) for i in picked]

    return picked, repeat


def contenders(ctx, device):
    """{key: (description, function, setup)} of everything timed on ``device``."""
    out = {"heterocnn": ("heterocnn", heterocnn_layers, None)}
    if not ctx.torch or (device == "cuda" and not ctx.torch_gpu):
        return out
    if device == "cpu":
        return dict(out, torch=("PyTorch CPU", torch_layers, None))

    def cudnn(flag):
        return lambda: setattr(ctx.torch.backends.cudnn, "benchmark", flag)

    return dict(out, torch_cudnn_benchmark=("PyTorch cuDNN, benchmark on", torch_layers,
                                            cudnn(True)),
                torch_cudnn=("PyTorch cuDNN, benchmark off", torch_layers, cudnn(False)))


def measure_net(ctx, device, name, batch, x, y):
    """Every contender's per-layer figures for one net and batch; the contenders take turns
    repeat by repeat, so a change of load hits all of them."""
    prepared = {}
    for key, (what, fn, setup) in contenders(ctx, device).items():
        if setup:
            setup()
        prepared[key] = (what, setup) + fn(ctx, name, device, batch, x, y)
    samples = {key: [] for key in prepared}
    for _ in range(ctx.args.repeats):
        for key, (_, setup, _, repeat) in prepared.items():
            if setup:
                setup()
            samples[key].append(repeat())
    hc_model = ctx.hc.models.MODELS[name]()
    out = {}
    for key, (what, _, indices, _) in prepared.items():
        out[key] = {"what": what, "layers": [
            {"index": i, "layer": repr(hc_model.layers[i]),
             "forward_us": figure([s[j][0] for s in samples[key]], "us"),
             "backward_us": figure([s[j][1] for s in samples[key]], "us")}
            for j, i in enumerate(indices)]}
    return out


def run(ctx):
    hc, np, args = ctx.hc, ctx.np, ctx.args
    nets = [n for n in args.nets if n in NETS] or list(NETS)
    devices = ctx.devices
    train = hc.datasets.fashion_mnist("train", path=args.data, sample=args.sample)
    X, Y = train.as_tuple()
    runs = []
    for device in devices:
        if device == "cuda" and not ctx.torch_gpu:
            ctx.log("layers: PyTorch has no CUDA here: heterocnn's GPU figures only")
        for name in nets:
            for batch in args.batches:
                x = (X[:batch].astype(np.float32) / 255)
                y = Y[:batch].astype(np.int64)
                entry = {"device": device, "net": name, "batch": batch,
                         "steps_per_repeat": calls_of(ctx, batch)[0],
                         "contenders": measure_net(ctx, device, name, batch, x, y)}
                runs.append(entry)
                ctx.log(f"layers {device} {name} batch {batch}: " + "; ".join(
                    f"{key} " + ", ".join(f"{t['forward_us']['median'] + t['backward_us']['median']:.0f}"
                                          for t in c["layers"])
                    for key, c in entry["contenders"].items()) + " us (fwd+bwd per layer)")
    return {"unit": "microseconds per call", "data": train.source, "runs": runs,
            "timing": "wall time of each layer call between device synchronisations (both "
                      "sides); per call means over the profiled steps, one value per repeat",
            "notes": ["heterocnn's conv/linear forward includes the ReLU fused into it; "
                      "PyTorch's row times that layer and its ReLU in one window likewise",
                      "no input gradient for the first layer on either side",
                      "heterocnn's per-layer timer starts without a synchronisation: the first "
                      "layer's forward can include the end of the batch gather, the last "
                      "layer's backward the end of the loss kernel",
                      "TF32 off; cudnn.benchmark as the contender says"]}
