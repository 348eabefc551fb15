"""Suite hetero: heterogeneous training and inference on this machine's CPU and GPU.

For each net (default mlp, lenet5 and convnet, issue 10's; --nets) and batch size (default 64,
256, 1024; --batches), training images/s measured
the way fit runs it (the training set held on the GPU where the GPU takes part) of:
  - all-CPU and all-GPU;
  - the planner's choice (hc.plan), with its predicted step time against the measured one;
  - the exhaustive best over every contiguous two-device split of the chain (CPU then GPU
    and GPU then CPU at every cut) and every CPU+GPU data-parallel split in 5% steps;
  - for the data-parallel split, the ceiling 1 + rate_cpu / rate_gpu and the share of that
    gain the best split reached.
Then predict latency at batch 1, 16, 256 and 4096: the planner's inference choice against
each device alone. Needs a GPU (the suite says so and stops without one)."""

import time

from _bench_common import NETS

TRAIN_SECONDS = 0.4      # timed training per configuration, after warm-up
PREDICT_SECONDS = 0.3
SHARES = [s / 20 for s in range(1, 20)]  # the GPU's share of a data-parallel batch
HETERO_NETS = ("mlp", "lenet5", "convnet")  # with bnnet (20 layers) it outgrew a device call


def training_rate(hc, np, model, X, y, batch, seconds=TRAIN_SECONDS):
    """Images/s of fit's inner loop on ``model`` as placed (steppers, device data "auto")."""
    opt = hc.SGD(model, lr=1e-4, momentum=0.9)
    stepper = model.stepper((X, y), "auto")
    buf = np.empty((batch,) + X.shape[1:], np.float32)
    order = np.random.default_rng(0).permutation(len(X))
    n_batches = len(X) // batch

    def host(rows):
        out = buf[: len(rows)]
        np.multiply(X[rows], np.float32(1 / 255), out=out, casting="unsafe")
        return out

    def run(k, first=0):
        for b in range(first, first + k):
            i = b % n_batches
            stepper.start(order[i * batch:(i + 1) * batch], host, opt)
        stepper.finish()

    run(3)
    steps, start = 0, time.perf_counter()
    while True:
        run(4, steps)
        steps += 4
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return steps * batch / elapsed


def predict_seconds(hc, np, model, x, seconds=PREDICT_SECONDS):
    model(x)
    n, start = 0, time.perf_counter()
    while True:
        model(x)
        n += 1
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return elapsed / n


def fresh(hc, name, placement):
    return hc.models.MODELS[name](seed=0).to(placement)


def run(ctx):
    hc, np, args = ctx.hc, ctx.np, ctx.args
    if not ctx.gpu:
        return {"status": "skipped: the hetero suite needs a GPU beside the CPU"}
    batches = args.batches if args.batches != [64, 256] else [64, 256, 1024]
    nets = args.nets if args.nets != list(NETS) else list(HETERO_NETS)
    rng = np.random.default_rng(1)
    X = rng.integers(0, 256, (16384, 1, 28, 28), dtype=np.uint8)
    y = rng.integers(0, 10, len(X)).astype(np.int64)
    rows = []
    for name in nets:
        n_layers = len(hc.models.MODELS[name]().layers)
        for batch in batches:
            row = {"net": name, "batch": batch}
            rate = {}
            rate["cpu"] = training_rate(hc, np, fresh(hc, name, "cpu"), X, y, batch)
            rate["cuda:0"] = training_rate(hc, np, fresh(hc, name, "cuda"), X, y, batch)
            t0 = time.perf_counter()
            plan = hc.plan(fresh(hc, name, "cpu"), batch, (1, 28, 28))
            row["plan_seconds"] = time.perf_counter() - t0
            row["plan"] = str(plan.placement)
            row["plan_alternatives"] = plan.alternatives
            row["plan_predicted_step_s"] = plan.predicted_step_s
            planned = fresh(hc, name, "cpu").to(plan)
            row["plan_rate"] = training_rate(hc, np, planned, X, y, batch)
            row["plan_measured_step_s"] = batch / row["plan_rate"]
            splits = {}
            for cut in range(1, n_layers):
                for first, second in (("cpu", "cuda:0"), ("cuda:0", "cpu")):
                    placement = [first] * cut + [second] * (n_layers - cut)
                    splits[f"{first}[:{cut}]+{second}"] = training_rate(
                        hc, np, fresh(hc, name, placement), X, y, batch, TRAIN_SECONDS / 2)
            dp = {}
            for share in SHARES:
                placement = hc.DataParallel({"cuda:0": share, "cpu": 1 - share})
                dp[f"{share:.2f}"] = training_rate(hc, np, fresh(hc, name, placement), X, y,
                                                   batch, TRAIN_SECONDS / 2)
            best_split = max(splits, key=splits.get)
            best_dp = max(dp, key=dp.get)
            everything = {"cpu": rate["cpu"], "cuda:0": rate["cuda:0"], **splits,
                          **{f"dp gpu {k}": v for k, v in dp.items()}}
            best = max(everything, key=everything.get)
            single = max(rate["cpu"], rate["cuda:0"])
            row.update({
                "cpu_rate": rate["cpu"], "gpu_rate": rate["cuda:0"],
                "best_split": best_split, "best_split_rate": splits[best_split],
                "best_dp_gpu_share": float(best_dp), "best_dp_rate": dp[best_dp],
                "exhaustive_best": best, "exhaustive_best_rate": everything[best],
                "plan_vs_best": row["plan_rate"] / everything[best],
                "plan_vs_best_single": row["plan_rate"] / single,
                "predicted_vs_measured": row["plan_predicted_step_s"] / row["plan_measured_step_s"],
                "dp_ceiling": 1 + rate["cpu"] / rate["cuda:0"],
                "dp_gain": dp[best_dp] / rate["cuda:0"],
                "dp_share_of_ceiling_gain": (dp[best_dp] / rate["cuda:0"] - 1)
                / (rate["cpu"] / rate["cuda:0"]),
                "splits": splits, "data_parallel": dp})
            rows.append(row)
            ctx.log(f"{name:<8} batch {batch:<5} cpu {rate['cpu']:>10,.0f}  gpu "
                    f"{rate['cuda:0']:>10,.0f}  plan {row['plan']} {row['plan_rate']:>10,.0f} "
                    f"({row['plan_vs_best']:.2f} of best {best} {everything[best]:,.0f}; "
                    f"predicted/measured {row['predicted_vs_measured']:.2f})  dp best "
                    f"{row['best_dp_rate']:,.0f} at gpu {best_dp} (ceiling "
                    f"{row['dp_ceiling']:.2f}x, got {row['dp_gain']:.2f}x)  img/s")
    latency = []
    for name in nets:
        for batch in (1, 16, 256, 4096):
            x = rng.random((batch, 1, 28, 28), dtype=np.float32)
            row = {"net": name, "batch": batch}
            for device in ("cpu", "cuda:0"):
                row[device] = predict_seconds(hc, np, fresh(hc, name, device), x)
            plan = hc.plan(fresh(hc, name, "cpu"), batch, (1, 28, 28), mode="infer")
            row["plan"] = str(plan.placement)
            row["plan_s"] = predict_seconds(hc, np, fresh(hc, name, "cpu").to(plan), x)
            row["plan_vs_best_single"] = min(row["cpu"], row["cuda:0"]) / row["plan_s"]
            latency.append(row)
            ctx.log(f"predict {name:<8} batch {batch:<5} cpu {row['cpu'] * 1e3:8.3f} ms  gpu "
                    f"{row['cuda:0'] * 1e3:8.3f} ms  plan {row['plan']} "
                    f"{row['plan_s'] * 1e3:8.3f} ms")
    return {"unit": "images/s (training), seconds (predict)", "rows": rows, "predict": latency,
            "note": "training as fit runs it: the training set (16384 random uint8 images) "
                    "held on the GPU where the GPU takes part; lr 1e-4"}
