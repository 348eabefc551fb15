"""Suite gemm: our CPU SGEMM (heterocnn._core.sgemm, the kernel the layers call) against
numpy's BLAS with the same threads, on square sizes and on the shapes the nets' layers make
(with their transposes); on a GPU machine also the CUDA GEMM lab's versions against cuBLAS."""

import time

from _bench_common import figure
from _bench_train import gemm_lab

SQUARE = (128, 256, 512, 1024, 2048)
# (label, M, N, K, trans_a, trans_b): C (M, N) = op(A) op(B)
LAYER_SHAPES = (
    ("lenet5 conv1 fwd", 6, 784, 25, False, False),
    ("lenet5 conv2 fwd", 16, 100, 150, False, False),
    ("lenet5 conv2 dx (TN)", 150, 100, 16, True, False),
    ("convnet conv2 fwd", 32, 784, 288, False, False),
    ("convnet conv4 dw (NT)", 64, 576, 196, False, True),
    ("mlp fc1 fwd (NT)", 64, 256, 784, False, True),
    ("mlp fc1 dW (TN)", 256, 784, 64, True, False),
)


def seconds_per_call(fn, repeats, min_time):
    """Per-call seconds of ``repeats`` timed loops, each long enough (min_time) for the clock,
    after a warm-up call."""
    fn()
    calls = 1
    while True:
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        if time.perf_counter() - start >= min_time:
            break
        calls *= 2
    out = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        out.append((time.perf_counter() - start) / calls)
    return out


def run(ctx):
    np, hc, args = ctx.np, ctx.hc, ctx.args
    from heterocnn import _core

    rng = np.random.default_rng(0)
    shapes = [(f"square {n}", n, n, n, False, False)
              for n in (SQUARE[:2] if args.quick else SQUARE)] + list(LAYER_SHAPES)
    min_time = 0.002 if args.quick else 0.05
    rows = []
    for label, M, N, K, ta, tb in shapes:
        A = rng.standard_normal((K, M) if ta else (M, K), dtype=np.float32)
        B = rng.standard_normal((N, K) if tb else (K, N), dtype=np.float32)
        opa, opb = (A.T if ta else A), (B.T if tb else B)
        ref = opa @ opb
        err = float(np.abs(_core.sgemm(A, B, ta, tb) - ref).max() / np.abs(ref).max())
        if err > 1e-4:
            raise AssertionError(f"{label}: our SGEMM's relative error is {err:.2e}")
        gflop = 2 * M * N * K / 1e9
        ours = seconds_per_call(lambda: _core.sgemm(A, B, ta, tb), args.repeats, min_time)
        theirs = seconds_per_call(lambda: opa @ opb, args.repeats, min_time)
        row = {"shape": label, "M": M, "N": N, "K": K, "trans_a": ta, "trans_b": tb,
               "rel_err": err, "ours": figure([gflop / s for s in ours], "GFLOP/s"),
               "numpy": figure([gflop / s for s in theirs], "GFLOP/s")}
        row["ratio"] = row["ours"]["median"] / row["numpy"]["median"]
        rows.append(row)
        ctx.log(f"gemm {label:<22} {M:>5} {N:>5} {K:>5}  ours {row['ours']['median']:7.1f}  "
                f"numpy {row['numpy']['median']:7.1f} GFLOP/s  {row['ratio']:.2f}x")
    out = {"cpu": {"unit": "GFLOP/s", "threads": args.threads,
                   "kernel": hc.build_info()["gemm_kernel"],
                   "timing": "wall time of a loop of calls long enough for the clock, per call; "
                             "one value per repeat; warm-up call untimed; float32 both",
                   "rows": rows}}
    out["cuda_lab"] = gemm_lab(ctx) if ctx.gpu else "skipped: no usable GPU"
    return out
