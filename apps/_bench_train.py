"""Suites cpu and gpu: training images/s of the nets, heterocnn against PyTorch in one run.

Every contender trains the same net from the same weights (heterocnn's, copied by to_torch)
with SGD (lr 0.01, momentum 0.9) on the same Fashion-MNIST batches in the same order. After
untimed warm-up steps (torch.compile's compilation among them), --images images' worth of
steps are timed, --repeats times."""

import os

from _bench_common import CudaEventClock, WallClock, measure, ratio, train_batches

LR, MOMENTUM = 0.01, 0.9
WARMUP_IMAGES = 1920  # 30 steps at batch 64
LAB = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "cuda", "dev",
                   "build_and_run.sh")


def steps_of(ctx, batch):
    """(timed steps per repeat, warm-up steps) at ``batch``."""
    return max(1, ctx.args.images // batch), (1 if ctx.args.quick else
                                              max(3, WARMUP_IMAGES // batch))


def torch_trainer(ctx, name, device, compiled):
    """train(x, y): one SGD step of the PyTorch twin of ``name`` on ``device``, eager or with
    the model under torch.compile(mode="reduce-overhead") (the optimizer eager)."""
    torch, hc = ctx.torch, ctx.hc
    from heterocnn.interop import to_torch, torch_loss

    model = to_torch(hc.models.MODELS[name](seed=0)).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM)
    loss_fn = torch_loss(hc.models.MODELS[name]())
    net = torch.compile(model, mode="reduce-overhead") if compiled else model

    def train(x, y):
        if compiled:
            torch.compiler.cudagraph_mark_step_begin()
        opt.zero_grad(set_to_none=True)
        loss_fn(net(x), y).backward()
        opt.step()

    return train


def torch_step(ctx, name, X, Y, idx, compiled):
    """step(i) training the PyTorch twin on the batch X[idx[i]], Y[idx[i]] gathered on the GPU."""
    train = torch_trainer(ctx, name, "cuda", compiled)
    return lambda i: train(X.index_select(0, idx[i]), Y.index_select(0, idx[i]))


def run_cpu(ctx):
    """heterocnn and PyTorch on the CPU, --threads threads each."""
    hc, np, torch, args = ctx.hc, ctx.np, ctx.torch, ctx.args
    clock = WallClock()
    rows = []
    source = None
    for batch in args.batches:
        steps, warmup = steps_of(ctx, batch)
        data, source = train_batches(hc, np, batch, min(steps, 50), args.data, args.sample)
        for name in args.nets:
            row = {"net": name, "batch": batch, "steps": steps, "warmup_steps": warmup}
            model = hc.models.MODELS[name](seed=0)
            opt = hc.SGD(model, lr=LR, momentum=MOMENTUM)
            contenders = {"heterocnn": (lambda i: model.train_step(*data[i % len(data)], opt),
                                        clock)}
            if torch:
                train = torch_trainer(ctx, name, "cpu", compiled=False)
                tdata = [(torch.from_numpy(x), torch.from_numpy(y)) for x, y in data]
                contenders["torch"] = (lambda i: train(*tdata[i % len(tdata)]), clock)
            row["torch"] = "not run: PyTorch is not installed"
            row.update(measure(contenders, steps, warmup, args.repeats, per=batch))
            row["ratio"] = ratio(row["heterocnn"], row["torch"])
            rows.append(row)
            ctx.log(f"{name:<8} batch {batch:<4} heterocnn {row['heterocnn']['median']:>10,.0f}"
                    + (f"  torch {row['torch']['median']:>10,.0f}  {row['ratio']:.2f}x"
                       if row["ratio"] else "") + "  img/s")
    return {"unit": "images/s", "data": source, "lr": LR, "momentum": MOMENTUM,
            "timing": {"heterocnn": clock.name, "torch": clock.name},
            "note": "host batches in memory; the same threads for both", "rows": rows}


def run_gpu(ctx):
    """heterocnn, PyTorch eager and torch.compile on GPU 0, the training set held on the
    device by every contender; then the CUDA GEMM lab."""
    hc, np, torch, args = ctx.hc, ctx.np, ctx.torch, ctx.args
    train = hc.datasets.fashion_mnist("train", path=args.data, sample=args.sample)
    X, Y = train.as_tuple()
    on_device = hc.DeviceDataset((X, Y), device="cuda")
    hc_clock = WallClock(torch.cuda.synchronize if ctx.torch_gpu else None)
    if not ctx.torch_gpu:
        ctx.log("gpu: PyTorch with CUDA is missing: heterocnn's figures only")
    else:
        tX = torch.from_numpy(X).cuda().float().div_(255)
        tY = torch.from_numpy(Y.astype(np.int64)).cuda()
        torch.backends.cudnn.benchmark = True
    rows = []
    for batch in args.batches:
        steps, warmup = steps_of(ctx, batch)
        order = np.random.default_rng(0).permutation(len(Y))
        idx = np.resize(order, (max(steps, warmup), batch)).astype(np.int64)
        for name in args.nets:
            row = {"net": name, "batch": batch, "steps": steps, "warmup_steps": warmup}
            model = hc.models.MODELS[name](seed=0).to("cuda")
            opt = hc.SGD(model, lr=LR, momentum=MOMENTUM)
            contenders = {"heterocnn": (lambda i: model.train_step_on(on_device, idx[i], opt),
                                        hc_clock)}
            if ctx.torch_gpu:
                tidx = torch.from_numpy(idx).cuda()
                torch._dynamo.reset()  # a fresh cache: no recompile limit across nets
                contenders["torch_eager"] = (torch_step(ctx, name, tX, tY, tidx, False),
                                             CudaEventClock(torch))
                contenders["torch_compile"] = (torch_step(ctx, name, tX, tY, tidx, True),
                                               CudaEventClock(torch))
            try:
                row.update(measure(contenders, steps, warmup, args.repeats, per=batch))
            except Exception as e:  # noqa: BLE001 (a compile failure is reported, not fatal)
                if "torch_compile" not in contenders:
                    raise
                del contenders["torch_compile"]
                row["torch_compile"] = (f"not run: {type(e).__name__}: "
                                        f"{str(e).strip().splitlines()[0][:300]}")
                ctx.log(f"torch.compile failed, measuring without it: {row['torch_compile']}")
                row.update(measure(contenders, steps, warmup, args.repeats, per=batch))
            if ctx.torch_gpu:
                theirs = [row[w] for w in ("torch_eager", "torch_compile")
                          if isinstance(row[w], dict)]
                best = max(theirs, key=lambda f: f["median"])
                row["ratio_vs_best"] = ratio(row["heterocnn"], best)
                row["ratio_vs_torch_eager"] = ratio(row["heterocnn"], row["torch_eager"])
                row["ratio_vs_torch_compile"] = ratio(row["heterocnn"], row["torch_compile"])
            rows.append(row)
            ctx.log(f"{name:<8} batch {batch:<4} " + "  ".join(
                f"{who} {row[who]['median']:,.0f}" for who in
                ("heterocnn", "torch_eager", "torch_compile") if isinstance(row.get(who), dict))
                + (f"  vs best {row['ratio_vs_best']:.2f}x" if row.get("ratio_vs_best") else ""))
    return {"unit": "images/s", "data": train.source, "lr": LR, "momentum": MOMENTUM,
            "timing": {"heterocnn": hc_clock.name + " (torch.cuda.synchronize, which waits for "
                                                   "every stream of the device, heterocnn's too)"
                       if ctx.torch_gpu else hc_clock.name + " (each step returns its loss, "
                                                             "so it has finished)",
                       "torch": CudaEventClock.name},
            "note": "training set held on the device by every contender (heterocnn: "
                    "hc.DeviceDataset, one CUDA graph per step; PyTorch: index_select on a CUDA "
                    "tensor); fp32, TF32 off, cudnn.benchmark on; torch.compile wraps the model",
            "rows": rows, "gemm_lab": gemm_lab(ctx)}


def gemm_lab(ctx):
    """Build and run cuda/dev's GEMM lab for GPU 0's architecture (once per run): its table of
    versions, shapes, GFLOP/s and % of cuBLAS, timed by the lab with CUDA events."""
    import json
    import subprocess
    import tempfile
    import time

    if ctx.args.no_lab:
        return "skipped: --no-lab"
    if ctx.gemm_lab is not None:
        return ctx.gemm_lab
    major, minor = ctx.hc.build_info()["gpus"][0]["compute_capability"]
    with tempfile.TemporaryDirectory() as tmp:
        lab_json = os.path.join(tmp, "gemm_lab.json")
        ctx.log(f"GEMM lab: building for sm_{major}{minor} and running")
        start = time.perf_counter()
        run = subprocess.run(["bash", LAB, "lab", lab_json], capture_output=True, text=True,
                             env={**os.environ, "ARCH": f"{major}{minor}"})
        lab = {"command": f"ARCH={major}{minor} bash cuda/dev/build_and_run.sh lab",
               "returncode": run.returncode, "seconds": time.perf_counter() - start,
               "timing": "the lab's own: CUDA events, median of its timed launches"}
        if os.path.exists(lab_json):
            with open(lab_json) as f:
                lab.update(json.load(f))
            lab["status"] = "ok" if run.returncode == 0 else "failed (see log_tail)"
        else:
            lab["status"] = "failed: the lab wrote no table"
        if lab["status"] != "ok":
            lab["log_tail"] = (run.stdout + run.stderr)[-3000:]
    ctx.gemm_lab = lab
    return lab
