"""The report: BENCHMARKS.md's generated tables and the plots in benchmarks/, from the JSON
files of apps/bench.py.

For every suite, the newest run of each machine (its tag) that holds the suite fills the text
between ``<!-- bench:SUITE -->`` and ``<!-- /bench:SUITE -->`` in the Markdown file; everything
outside the markers stays as written. A full run is preferred to a --quick one. The plots need
matplotlib; without it the tables are still written."""

import glob
import json
import os
import re

from _bench_common import INSTALL_HINT, SCHEMA, try_import

SUITES = ("cpu", "gpu", "layers", "gemm", "memory", "tta", "hetero", "mpi", "fusion")
MARK = re.compile(r"(<!-- bench:(\w+) -->\n)(.*?)(<!-- /bench:\2 -->)", re.S)


def load_runs(bench_dir):
    """Every apps/bench.py JSON file in ``bench_dir`` (others are left alone), with its name."""
    runs = []
    for path in sorted(glob.glob(os.path.join(bench_dir, "*.json"))):
        try:
            with open(path) as f:
                run = json.load(f)
        except (OSError, ValueError):
            continue
        if isinstance(run, dict) and run.get("schema") == SCHEMA:
            run["_file"] = os.path.abspath(path)
            runs.append(run)
    return runs


def pick(runs, suite):
    """The run to show for ``suite`` on each machine tag: the newest that measured it (full
    runs before --quick ones), else the newest that tried it."""
    best = {}
    for run in runs:
        result = run["results"].get(suite)
        if result is None:
            continue
        key = (result.get("status") == "ok", not run["settings"].get("quick"),
               run.get("started") or "")
        if run["tag"] not in best or key > best[run["tag"]][0]:
            best[run["tag"]] = (key, run)
    return [run for _, run in sorted(best.values(), key=lambda kv: kv[1]["tag"])]


def repeats_note(suite, run):
    """How the suite's spread was taken, for the header of its tables."""
    if suite == "mpi":
        return (f"Median of {run['settings']['repeats']} timed loops in one launch per "
                "figure, ± half their range. ")
    if suite in ("tta", "hetero"):
        return ""  # one run per figure: no spread (the tables say so)
    if suite == "fusion":  # each repeat a fresh process per setting, not a loop in one
        return (f"Median of {run['settings']['repeats']} fresh processes per setting, taking "
                "turns, ± half their range. ")
    if suite == "memory":  # each figure from fresh processes, not from --repeats
        n = max((len(r["peak_rss"]["repeats"]) for r in run["results"]["memory"]["rows"]
                 if isinstance(r.get("peak_rss"), dict)), default=1)
        return f"Median of {n} fresh process{'es' if n > 1 else ''}, ± half their range. "
    return f"Median of {run['settings']['repeats']} repeats, ± half their range. "


# -- formatting ---------------------------------------------------------------------------------

def spread(fig, fmt="{:,.0f}"):
    """'median ±x%' with x half the range (max - min) over the median."""
    if not isinstance(fig, dict):
        return "n/a"
    half = 50 * (fig["max"] - fig["min"]) / fig["median"] if fig["median"] else 0
    return f"{fmt.format(fig['median'])} ±{half:.0f}%" if half >= 0.5 else \
        f"{fmt.format(fig['median'])} ±{half:.1f}%"


def times(r):
    return "n/a" if r is None else f"{r:.2f}x"


def table(header, rows, align=None):
    """A Markdown table; ``align`` per column: 'l' or 'r' (default: first left, rest right)."""
    align = align or ["l"] + ["r"] * (len(header) - 1)
    lines = ["| " + " | ".join(header) + " |",
             "|" + "|".join(":---" if a == "l" else "---:" for a in align) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def heading(run, md_dir, suite):
    """Where and how a run was measured, in one paragraph."""
    m, v = run["machine"], run["versions"]
    gpu = (f"; {m['gpu']['name']}, driver {m['gpu'].get('driver')}" if m.get("gpu") else "")
    torch = (f"PyTorch {v['torch']}" + (f" (CUDA {v['torch_cuda']}, cuDNN {v['cudnn']})"
                                        if v.get("cudnn") else "") if v.get("torch")
             else "PyTorch not installed")
    quick = " **A --quick smoke run: not figures to quote.**" if run["settings"].get("quick") \
        else ""
    threads = f"{m['threads']} thread" + ("s" if m["threads"] != 1 else "")
    return (f"*{m['cpu']}, {m['cores']} cores, {threads}{gpu}; heterocnn "
            f"{v['heterocnn']['version']} (CPU GEMM kernel {v['heterocnn']['gemm_kernel']}), "
            f"{torch}, numpy {v['numpy']} ({v.get('numpy_blas')}). {run['started'][:16]} UTC, "
            f"load average (1, 5, 15 min) {m['load_average_start']} at the start and "
            f"{m['load_average_end']} at the end. "
            + repeats_note(suite, run)
            + f"`{run['command']}`, "
            f"[{os.path.basename(run['_file'])}]"
            f"({os.path.relpath(run['_file'], md_dir)}).*{quick}")


# -- tables per suite ---------------------------------------------------------------------------

def cpu_tables(result):
    rows = [[r["net"], r["batch"], spread(r["heterocnn"]), spread(r["torch"]), times(r["ratio"])]
            for r in result["rows"]]
    return table(["net", "batch", "heterocnn img/s", "PyTorch img/s", "ratio"], rows)


def gemm_lab_tables(lab):
    """The CUDA GEMM lab: % of cuBLAS per version on square sizes, and the layers' shapes."""
    if not isinstance(lab, dict) or "rows" not in lab:
        return f"CUDA GEMM lab: {lab if isinstance(lab, str) else lab.get('status')}"
    rows = lab["rows"]
    sizes = sorted({r["M"] for r in rows if r["M"] == r["N"] == r["K"]})
    versions = list(dict.fromkeys(r["version"] for r in rows if r["version"] != "cublas_fp32"
                                  and r["M"] == r["N"] == r["K"]))
    cell = {(r["version"], r["M"], r["N"], r["K"]): r for r in rows}
    square = [[v] + [f"{cell[(v, n, n, n)]['pct_cublas']:.1f}%" if (v, n, n, n) in cell else "-"
                     for n in sizes] for v in versions]
    square.append(["cuBLAS FP32 GFLOP/s"] + [
        f"{cell[('cublas_fp32', n, n, n)]['gflops']:,.0f}" if ('cublas_fp32', n, n, n) in cell
        else "-" for n in sizes])
    shapes = [[r["version"], r["M"], r["N"], r["K"], f"{r['gflops']:,.0f}",
               f"{r['pct_cublas']:.1f}%"] for r in rows
              if not r["M"] == r["N"] == r["K"] and r["version"].startswith("production")]
    return (f"CUDA GEMM lab ({lab.get('device')}, {lab.get('validation_failures')} validation "
            f"failures; timed by the lab with CUDA events, median of its launches, no spread "
            f"reported), % of cuBLAS FP32 (TF32 off):\n\n"
            + table(["version"] + [f"{n}^3" for n in sizes], square) + "\n\n"
            + table(["version", "M", "N", "K", "GFLOP/s", "% cuBLAS"], shapes))


def gpu_tables(result):
    rows = [[r["net"], r["batch"], spread(r["heterocnn"]), spread(r.get("torch_eager")),
             spread(r.get("torch_compile")), times(r.get("ratio_vs_best")),
             times(r.get("ratio_vs_torch_eager")), times(r.get("ratio_vs_torch_compile"))]
            for r in result["rows"]]
    return (table(["net", "batch", "heterocnn img/s", "torch eager", "torch.compile",
                   "vs best PyTorch", "vs eager", "vs compile"], rows)
            + "\n\n" + gemm_lab_tables(result.get("gemm_lab")))


def layers_tables(result):
    """One table per device and batch: fwd / bwd microseconds per layer and contender, and
    each PyTorch contender's fwd+bwd time over heterocnn's (above 1: heterocnn faster)."""
    out = []
    groups = {}
    for entry in result["runs"]:
        groups.setdefault((entry["device"], entry["batch"]), []).append(entry)
    for (device, batch), entries in groups.items():
        keys = list(entries[0]["contenders"])
        header = ["layer"] + [f"{entries[0]['contenders'][k]['what']} fwd / bwd us"
                              for k in keys] + [f"{entries[0]['contenders'][k]['what']} / "
                                                "heterocnn" for k in keys[1:]]
        rows = []
        for entry in entries:
            per = [entry["contenders"][k]["layers"] for k in keys]
            for i, ours in enumerate(per[0]):
                total = ours["forward_us"]["median"] + ours["backward_us"]["median"]
                row = [f"{entry['net']} {ours['layer']}"]
                row += [f"{c[i]['forward_us']['median']:,.0f} / {c[i]['backward_us']['median']:,.0f}"
                        for c in per]
                row += [times((c[i]["forward_us"]["median"] + c[i]["backward_us"]["median"])
                              / total if total else None) for c in per[1:]]
                rows.append(row)
        out.append(f"{device.upper()}, batch {batch}:\n\n" + table(header, rows))
    return "\n\n".join(out)


def gemm_tables(result):
    cpu = result["cpu"]
    rows = [[r["shape"], r["M"], r["N"], r["K"], spread(r["ours"], "{:,.1f}"),
             spread(r["numpy"], "{:,.1f}"), times(r["ratio"])] for r in cpu["rows"]]
    out = (f"CPU, {cpu['threads']} threads, kernel `{cpu['kernel']}`, GFLOP/s:\n\n"
           + table(["shape", "M", "N", "K", "ours", "numpy", "ratio"], rows))
    if isinstance(result.get("cuda_lab"), dict):
        out += "\n\n" + gemm_lab_tables(result["cuda_lab"])
    return out


def scaled(fig, factor):
    """A figure with its median, min and max times ``factor`` (anything else as it is)."""
    if not isinstance(fig, dict):
        return fig
    return {k: fig[k] * factor for k in ("median", "min", "max")}


def mib(row, key):
    """A figure in bytes as 'MiB ±x%'."""
    return spread(scaled(row.get(key), 2**-20), "{:,.1f}")


def memory_tables(result):
    by = {}
    for r in result["rows"]:
        by.setdefault((r["device"], r["net"], r["batch"]), {})[r["framework"]] = r
    def host_rows(on):
        return [[net, batch] + [mib(f.get(w, {}), k) for w in ("heterocnn", "torch")
                                for k in ("peak_rss", "peak_rss_above_import")]
                for (device, net, batch), f in by.items() if device == on]

    host_columns = ["net", "batch", "heterocnn peak RSS", "above import", "PyTorch peak RSS",
                    "above import"]
    parts = []
    for on, what in (("cpu", "training on the CPU"), ("cuda", "training on the GPU")):
        rows = host_rows(on)
        if rows:
            parts.append(f"Host, {what}, MiB (peak RSS of the whole process, and that peak "
                         "above the RSS before the model, right after the framework's import"
                         + (" and the CUDA context's start" if on == "cuda" else "") + "):\n\n"
                         + table(host_columns, rows))
    dev = [[net, batch, mib(f.get("heterocnn", {}), "framework_allocated"),
            mib(f.get("heterocnn", {}), "device_used_by_process"),
            mib(f.get("torch", {}), "framework_allocated"),
            mib(f.get("torch", {}), "framework_reserved"),
            mib(f.get("torch", {}), "device_used_by_process")]
           for (device, net, batch), f in by.items() if device == "cuda"]
    if dev:
        parts.append("Device, training on the GPU, MiB: allocated by the framework (heterocnn: "
                     "its arena; PyTorch: max_memory_allocated, and max_memory_reserved by its "
                     "caching allocator) and taken from the device by the process "
                     "(cudaMemGetInfo before the model and after training; the CUDA context "
                     "not included):\n\n"
                     + table(["net", "batch", "heterocnn arena", "heterocnn device used",
                              "PyTorch allocated", "PyTorch reserved", "PyTorch device used"],
                             dev))
    out = "\n\n".join(parts)
    errors = [r for r in result["rows"] if "error" in r]
    if errors:
        out += f"\n\n{len(errors)} measurement(s) failed; the JSON has their output."
    return out


def tta_tables(result):
    rows = []
    recipes = result.get("recipes") or {}
    for r in result["runs"]:
        reached = r.get("reached")
        recipe = recipes.get(r["model"]) or result["recipe"]  # JSON before per-net recipes
        rows.append([r["model"], r["device"], r.get("batch", recipe["batch_size"]),
                     f"{r.get('lr', recipe['lr']):g}", f"{r['target']:.1%}",
                     f"{reached['epoch']} ({r['test_accuracy'][reached['epoch'] - 1]:.2%})"
                     if reached else "not reached",
                     f"{r['test_accuracy'][-1]:.2%} after {r['epochs'][-1]}",
                     f"{reached['train_s']:,.1f} s" if reached else "-",
                     f"{reached['wall_s']:,.1f} s" if reached else "-",
                     f"{r['train_s'][-1]:,.1f} s"])
    own = "; ".join(f"{name}: lr {rec['lr']:g} at batch {rec['batch_size']}"
                    for name, rec in recipes.items()) if recipes else (
        f"lr {result['recipe']['lr']:g} at batch {result['recipe']['batch_size']}")
    return (f"Each net's recipe (hc.default_recipe(name)), seed 0, {result['train_images']:,} "
            f"training images ({result['data']}); the peak learning rate scaled linearly with "
            f"the batch size from the recipe's ({own}); one run each, so no spread:\n\n"
            + table(["net", "device", "batch", "peak lr", "target", "epoch first reached",
                     "test accuracy, epochs",
                     "training time to target", "wall (with evaluations)", "training time, all"],
                    rows))


def hetero_tables(result):
    rows = []
    for r in result["rows"]:
        rows.append([r["net"], r["batch"], f"{r['cpu_rate']:,.0f}", f"{r['gpu_rate']:,.0f}",
                     f"`{r['plan']}`", f"{r['plan_rate']:,.0f}",
                     f"{r['exhaustive_best']} {r['exhaustive_best_rate']:,.0f}",
                     f"{r['plan_vs_best']:.2f}", f"{r['plan_vs_best_single']:.2f}",
                     f"{r['plan_predicted_step_s'] * 1e3:.3f} / "
                     f"{r['plan_measured_step_s'] * 1e3:.3f}",
                     f"{r['best_dp_rate']:,.0f} at {r['best_dp_gpu_share']:.2f}",
                     f"{r['dp_ceiling']:.2f}x", f"{r['dp_gain']:.2f}x",
                     f"{r['dp_share_of_ceiling_gain']:.0%}"])
    train = table(["net", "batch", "all-CPU img/s", "all-GPU img/s", "planner's choice",
                   "its img/s", "exhaustive best (img/s)", "plan / best", "plan / best single",
                   "predicted / measured ms a step", "best CPU+GPU split (GPU share)",
                   "ceiling 1 + cpu/gpu", "split / GPU", "share of the ceiling's gain"], rows)
    lat = [[r["net"], r["batch"], f"{r['cpu'] * 1e3:.3f}", f"{r['cuda:0'] * 1e3:.3f}",
            f"`{r['plan']}`", f"{r['plan_s'] * 1e3:.3f}", f"{r['plan_vs_best_single']:.2f}"]
           for r in result["predict"]]
    return (f"Training ({result['note']}); each figure one timed run:\n\n" + train
            + "\n\nPredict latency (ms per call of the batch), the planner's inference choice "
            "against each device alone:\n\n"
            + table(["net", "batch", "CPU ms", "GPU ms", "planner's choice", "its ms",
                     "best single / plan"], lat))


def not_a_figure(value):
    """What a table cell says for a figure that is missing: n/a, or why (not run, failed)."""
    return "n/a" if value is None else str(value).split(":")[0]


def figure_cell(fig, fmt="{:,.0f}"):
    return spread(fig, fmt) if isinstance(fig, dict) else not_a_figure(fig)


def fraction(value, fmt="{:.2f}"):
    return "n/a" if value is None else fmt.format(value)


def weights_cell(r):
    """How far the weights after the warm-up are from P = 1's: 'same' when bit for bit."""
    diff = r.get("weights_max_rel_diff_vs_p1")
    if diff is None:
        return "n/a"
    return "same" if diff == 0 else f"{diff:.1e}"


def overlap_cell(r):
    same = r.get("sum_during_backward")
    return "n/a" if same is None else ("yes" if same else "no")


def rerun_cell(r):
    same = r.get("rerun_bit_identical")
    return "n/a" if same is None else ("yes" if same else "**no**")


def rank_work_cell(r):
    """The fastest and the slowest rank's milliseconds a step outside the gradient sums."""
    fast, slow = (r.get(f"compute_s_per_step_{k}_rank") for k in ("fastest", "slowest"))
    if fast is None or slow is None:
        return "n/a"
    return f"{fast['median'] * 1e3:,.1f} - {slow['median'] * 1e3:,.1f}"


def mpi_tables(result):
    rows = [[r["net"], r["batch"], f"{r['ranks']} x {r['threads_per_rank']}",
             figure_cell(r["heterocnn"]), figure_cell(r["ddp"]), times(r["ratio"]),
             fraction(r["scaling_efficiency"]), fraction(r["ddp_scaling_efficiency"]),
             figure_cell(scaled(r["comm_s_per_step"], 1e3), "{:,.3f}"),
             figure_cell(scaled(r["comm_busy_s_per_step"], 1e3), "{:,.3f}"),
             fraction(r["comm_share"]["median"] if r["comm_share"] else None, "{:.0%}"),
             rank_work_cell(r), figure_cell(scaled(r.get("exchange_s_per_step"), 1e3),
                                            "{:,.3f}"),
             overlap_cell(r), weights_cell(r), rerun_cell(r)]
            for r in result["rows"]]
    out = (f"{result['mpi_version']}, {result['cores']} threads split evenly over P ranks "
           f"(each rank bound to its own cores; the heading's thread count is the other "
           f"suites'), {result['seconds_per_repeat']:g} s per timed loop after "
           f"{result['warmup_steps']} warm-up step{'s' if result['warmup_steps'] > 1 else ''}. "
           "Scaling efficiency: images/s at P over the same framework's at P = 1 with every "
           f"thread. Communication: {result['comm']}. Weights vs P = 1: the largest relative difference of the "
           "weights after the warm-up steps (same data, same order) from P = 1's (BatchNorm "
           "normalises each rank's rows, so a net with it differs by more than rounding); "
           "rerun: "
           "the same weights, bit for bit, from a second launch. Work: each rank's step less "
           "its own exposed wait (the spread is the imbalance rank 0 waits for); exchange: the "
           "least exposed wait of any rank, the slowest one's, which waits for the sum alone:\n\n"
           + table(["net", "global batch", "P x threads", "heterocnn img/s", "DDP (gloo) img/s",
                    "ratio", "heterocnn efficiency", "DDP efficiency", "comm exposed ms a step",
                    "comm busy ms a step", "exposed share",
                    "work ms a step, fastest - slowest rank", "exchange ms a step",
                    "sum during backward",
                    "weights vs P = 1", "rerun bit-identical"], rows))
    gpu = result["gpu_rows"]
    if not isinstance(gpu, list):
        return out + f"\n\n1 GPU rank + CPU ranks: {gpu}."
    rows = [[r["net"], r["batch"], f"1 GPU + {r['ranks'] - 1} CPU x {r['threads_per_rank']}",
             figure_cell(r["heterocnn"]), figure_cell(r["gpu_alone"]),
             times(r["ratio_vs_gpu_alone"]),
             fraction(r["shares"][0] / sum(r["shares"]) if r["shares"] else None, "{:.1%}"),
             fraction(r["comm_share"]["median"] if r["comm_share"] else None, "{:.0%}"),
             rank_work_cell(r), figure_cell(scaled(r.get("exchange_s_per_step"), 1e3),
                                            "{:,.3f}")]
            for r in gpu]
    return (out + "\n\n1 GPU rank + CPU ranks (rank 0 on cuda:0; each batch split by every "
            "rank's own measured rate) against the GPU rank alone with every thread:\n\n"
            + table(["net", "global batch", "ranks x threads", "heterocnn img/s",
                     "GPU alone img/s",
                     "ratio", "GPU's share", "comm share",
                     "work ms a step, fastest - slowest rank", "exchange ms a step"], rows))


def fusion_tables(result):
    """Fused and unfused images/s per device, net and batch, their ratio, and per kind of pair
    the microseconds a step spends in it, fused / unfused."""
    ok = [r for r in result["rows"] if "error" not in r]
    kinds = list(dict.fromkeys(k for r in ok for k in r["pairs"]))

    def pair(r, kind):
        p = r["pairs"].get(kind)
        if p is None:
            return "-"
        return (f"{p['fused_us']['median']:,.0f} / {p['unfused_us']['median']:,.0f} "
                f"({times(p['speedup'])}, {p['count']})")

    rows = [[r["device"], r["net"], r["batch"], spread(r["fused"]), spread(r["unfused"]),
             times(r["speedup"])] + [pair(r, k) for k in kinds] for r in ok]
    out = ("Training images/s with ReLU fusion (the default) and with HC_RELU_FUSION=0, and per "
           "kind of pair the microseconds a step spends in the layer and the ReLU after it, "
           "fused / unfused (unfused over fused, how many such pairs in the net; from the "
           "profiled steps, op by op):\n\n"
           + table(["device", "net", "batch", "fused img/s", "unfused img/s", "fused / unfused"]
                   + [f"{k} us a step" for k in kinds], rows))
    failed = len(result["rows"]) - len(ok)
    if failed:
        out += f"\n\n{failed} measurement(s) failed; the JSON has their output."
    return out


TABLES = {"cpu": cpu_tables, "gpu": gpu_tables, "layers": layers_tables, "gemm": gemm_tables,
          "memory": memory_tables, "tta": tta_tables, "hetero": hetero_tables,
          "mpi": mpi_tables, "fusion": fusion_tables}


# -- plots --------------------------------------------------------------------------------------

def ratio_bars(ax, labels, series, title):
    """Grouped bars of ratios, a line at 1.0."""
    width = 0.8 / max(len(series), 1)
    for j, (name, values) in enumerate(series.items()):
        ax.bar([i + j * width for i in range(len(labels))],
               [v if v is not None else 0 for v in values], width, label=name)
    ax.axhline(1.0, color="k", linewidth=0.8)
    ax.set_xticks([i + width * (len(series) - 1) / 2 for i in range(len(labels))])
    ax.set_xticklabels(labels, rotation=30, ha="right")
    ax.set_ylabel("heterocnn / peer (same run)")
    ax.set_title(title)
    ax.legend(fontsize=8)


def plot_cpu(plt, result, title):
    fig, ax = plt.subplots(figsize=(7, 4))
    ratio_bars(ax, [f"{r['net']} {r['batch']}" for r in result["rows"]],
               {"vs PyTorch CPU": [r["ratio"] for r in result["rows"]]}, title)
    return fig


def plot_gpu(plt, result, title):
    fig, ax = plt.subplots(figsize=(7, 4))
    rows = result["rows"]
    ratio_bars(ax, [f"{r['net']} {r['batch']}" for r in rows],
               {k: [r.get(f"ratio_{k.replace(' ', '_')}") for r in rows]
                for k in ("vs best", "vs torch eager", "vs torch compile")}, title)
    return fig


def plot_layers(plt, result, title):
    groups = {}
    for entry in result["runs"]:
        groups.setdefault((entry["device"], entry["net"], entry["batch"]), entry)
    fig, axes = plt.subplots(len(groups), 1, figsize=(8, 2.6 * len(groups)), squeeze=False)
    for ax, ((device, net, batch), entry) in zip(axes[:, 0], groups.items()):
        keys = list(entry["contenders"])
        layers = entry["contenders"]["heterocnn"]["layers"]
        width = 0.8 / len(keys)
        for j, k in enumerate(keys):
            c = entry["contenders"][k]["layers"]
            ax.barh([i + j * width for i in range(len(layers))],
                    [t["forward_us"]["median"] + t["backward_us"]["median"] for t in c], width,
                    label=entry["contenders"][k]["what"])
        ax.set_yticks([i + width * (len(keys) - 1) / 2 for i in range(len(layers))])
        ax.set_yticklabels([t["layer"][:28] for t in layers], fontsize=7)
        ax.invert_yaxis()
        ax.set_xlabel("forward + backward, us per call")
        ax.set_title(f"{title}: {net}, batch {batch}, {device}", fontsize=9)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def square_axes(ax, title):
    """Axes of GFLOP/s against the size of a square GEMM."""
    ax.set_xscale("log", base=2)
    ax.set_xlabel("M = N = K")
    ax.set_ylabel("GFLOP/s")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)


def plot_gemm(plt, result, title):
    lab = result.get("cuda_lab")
    has_lab = isinstance(lab, dict) and "rows" in lab
    fig, axes = plt.subplots(1, 2 if has_lab else 1, figsize=(11 if has_lab else 6, 4),
                             squeeze=False)
    ax = axes[0, 0]
    square = [r for r in result["cpu"]["rows"] if r["M"] == r["N"] == r["K"]]
    for key, name in (("ours", "heterocnn SGEMM"), ("numpy", "numpy (BLAS)")):
        ax.errorbar([r["M"] for r in square], [r[key]["median"] for r in square],
                    yerr=[[r[key]["median"] - r[key]["min"] for r in square],
                          [r[key]["max"] - r[key]["median"] for r in square]],
                    marker="o", label=name, capsize=3)
    square_axes(ax, f"{title}: CPU, threads: {result['cpu']['threads']}")
    if has_lab:
        ax = axes[0, 1]
        by = {}
        for r in lab["rows"]:
            if r["M"] == r["N"] == r["K"]:
                by.setdefault(r["version"], []).append((r["M"], r["gflops"]))
        for version, pts in by.items():
            ax.plot(*zip(*sorted(pts)), marker="o", label=version)
        ax.set_yscale("log")
        square_axes(ax, f"CUDA GEMM lab, {lab.get('device')}")
    fig.tight_layout()
    return fig


def plot_memory(plt, result, title):
    rows = [r for r in result["rows"] if "error" not in r]
    devices = sorted({r["device"] for r in rows})
    fig, axes = plt.subplots(1, len(devices), figsize=(6 * len(devices), 4), squeeze=False)
    for ax, device in zip(axes[0], devices):
        key = "peak_rss" if device == "cpu" else "device_used_by_process"
        cases = list(dict.fromkeys((r["net"], r["batch"]) for r in rows if r["device"] == device))
        for j, fw in enumerate(("heterocnn", "torch")):
            vals = {(r["net"], r["batch"]): r[key]["median"] / 2**20 for r in rows
                    if r["device"] == device and r["framework"] == fw}
            ax.bar([i + j * 0.4 for i in range(len(cases))], [vals.get(c, 0) for c in cases],
                   0.4, label=fw)
        ax.set_xticks([i + 0.2 for i in range(len(cases))])
        ax.set_xticklabels([f"{n} {b}" for n, b in cases], rotation=30, ha="right")
        ax.set_ylabel("MiB")
        ax.set_title(f"{title}: " + ("peak host RSS" if device == "cpu"
                                     else "device memory taken"), fontsize=9)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_tta(plt, result, title):
    fig, ax = plt.subplots(figsize=(7, 4))
    for r in result["runs"]:
        line, = ax.plot(r["train_s"], [100 * a for a in r["test_accuracy"]], marker=".",
                        label=f"{r['model']} ({r['device']}, batch {r.get('batch', 64)})")
        ax.axhline(100 * r["target"], color=line.get_color(), linestyle=":", linewidth=0.8)
    ax.set_xlabel("training time, s")
    ax.set_ylabel("test accuracy, %")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    return fig


def plot_hetero(plt, result, title):
    labels = [f"{r['net']} {r['batch']}" for r in result["rows"]]
    gpu = [r["gpu_rate"] for r in result["rows"]]
    series = {"all-CPU": [r["cpu_rate"] / g for r, g in zip(result["rows"], gpu)],
              "planner's choice": [r["plan_rate"] / g for r, g in zip(result["rows"], gpu)],
              "exhaustive best": [r["exhaustive_best_rate"] / g
                                  for r, g in zip(result["rows"], gpu)]}
    fig, ax = plt.subplots(figsize=(9, 3.5))
    ratio_bars(ax, labels, series, f"{title}: training rate over all-GPU")
    return fig


def plot_mpi(plt, result, title):
    """Scaling efficiency against P, one line per framework, net and batch."""
    fig, ax = plt.subplots(figsize=(7, 4))
    cases = list(dict.fromkeys((r["net"], r["batch"]) for r in result["rows"]))
    for net, batch in cases:
        rows = [r for r in result["rows"] if (r["net"], r["batch"]) == (net, batch)]
        for key, style, who in (("scaling_efficiency", "-o", "heterocnn"),
                                ("ddp_scaling_efficiency", "--x", "DDP")):
            points = [(r["ranks"], r[key]) for r in rows if r[key] is not None]
            if points:
                ax.plot(*zip(*points), style, label=f"{who} {net} {batch}")
    ax.axhline(1.0, color="k", linewidth=0.8)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("MPI ranks P (cores / P threads each)")
    ax.set_ylabel("images/s over P = 1's")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    return fig


def plot_fusion(plt, result, title):
    """Fused over unfused: images/s, and the BatchNorm2d+ReLU pairs' time (unfused / fused)."""
    rows = [r for r in result["rows"] if "error" not in r]
    bn = [r["pairs"].get("BatchNorm2d+ReLU") for r in rows]
    fig, ax = plt.subplots(figsize=(7, 4))
    ratio_bars(ax, [f"{r['device']} {r['net']} {r['batch']}" for r in rows],
               {"training img/s, fused / unfused": [r["speedup"] for r in rows],
                "BatchNorm2d+ReLU time, unfused / fused": [p["speedup"] if p else None
                                                           for p in bn]}, title)
    ax.set_ylabel("with fusion / without")
    fig.tight_layout()
    return fig


PLOTS = {"cpu": plot_cpu, "gpu": plot_gpu, "layers": plot_layers, "gemm": plot_gemm,
         "memory": plot_memory, "tta": plot_tta, "hetero": plot_hetero, "mpi": plot_mpi,
         "fusion": plot_fusion}


def plot(plt, suite, run, bench_dir):
    """Write the suite's plot of ``run`` as benchmarks/<suite>-<tag>.png; its path."""
    path = os.path.join(bench_dir, f"{suite}-{run['tag']}.png")
    fig = PLOTS[suite](plt, run["results"][suite], f"{suite}, {run['tag']}")
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


# -- the Markdown file --------------------------------------------------------------------------

def block(suite, runs, bench_dir, md_dir, plt):
    """The generated text of one suite."""
    source = os.path.relpath(os.path.abspath(bench_dir), md_dir)
    parts = [f"<!-- generated by `python apps/bench.py --report` from {source}/*.json: edit the "
             "prose outside these markers, not this -->"]
    if not runs:
        parts.append(f"Not measured yet: run `python apps/bench.py --suite {suite}`.")
    for run in runs:
        result = run["results"][suite]
        parts.append(heading(run, md_dir, suite))
        if result.get("status") != "ok":
            parts.append(f"Suite {suite} on {run['tag']}: {result.get('status')}.")
            continue
        parts.append(TABLES[suite](result))
        if plt:
            png = plot(plt, suite, run, bench_dir)
            parts.append(f"![{suite} on {run['tag']}]({os.path.relpath(png, md_dir)})")
    return "\n\n".join(parts) + "\n"


def regenerate(bench_dir, markdown):
    """Rewrite the marked blocks of ``markdown`` from the JSON files in ``bench_dir`` and
    write the plots there. Returns 0, or 1 when the file has no markers."""
    plt = None
    if try_import("matplotlib"):
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    else:
        print(f"matplotlib is not installed: tables only, no plots ({INSTALL_HINT})")
    runs = load_runs(bench_dir)
    with open(markdown) as f:
        text = f.read()
    md_dir = os.path.dirname(os.path.abspath(markdown))
    found = []

    def replace(m):
        suite = m.group(2)
        if suite not in TABLES:
            return m.group(0)
        found.append(suite)
        return m.group(1) + block(suite, pick(runs, suite), bench_dir, md_dir, plt) + m.group(4)

    text = MARK.sub(replace, text)
    if not found:
        print(f"{markdown} has no <!-- bench:SUITE --> ... <!-- /bench:SUITE --> markers: "
              "nothing regenerated")
        return 1
    from heterocnn.atomic import write_atomic

    write_atomic(markdown, text.encode())
    missing = [s for s in SUITES if s not in found]
    print(f"regenerated {', '.join(found)} in {markdown} from {len(runs)} run(s) in {bench_dir}"
          + (f"; no markers for {', '.join(missing)}" if missing else ""))
    return 0
