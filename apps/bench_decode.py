#!/usr/bin/env python3
"""Decoding an image folder: hc.datasets.image_folder against a single-process Pillow loop,
and how soon a second run of the same folder starts training (the decoded cache).

    python apps/bench_decode.py [--images 60000] [--folder DIR] [--repeats 3] [--json PATH]

The folder (DIR/<class>/<n>.png, 28x28 grey PNGs of Fashion-MNIST: the full train set where
installed, else the embedded sample repeated) is written once and reused. Timed, the
contenders taking turns repeat by repeat:

  pillow loop   list the folder sorted, then for each file
                np.asarray(Image.open(path).convert("L").resize((28, 28))), stacked
  image_folder  hc.datasets.image_folder(DIR, cache=False): listing, decoding in one forked
                worker per core, the Dataset
  one worker    the same with workers=1 (decoding in the process: the per-file cost alone)
  first run     image_folder with the cache, after deleting it: decoding and writing it
  second run    a fresh `heterocnn-train --data-folder DIR` process, from its start to the
                call of fit (interpreter, imports, listing and checking the folder against
                the cache, reading it, the split, the model and its summary)

Beside each wall time, the CPU seconds it took (this process and its reaped children: the
decoding workers), which the load of a shared machine changes less.
Writes JSON (every repeat, the machine and its load) to benchmarks/decode-<machine>.json.
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

APPS = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(APPS)
sys.path.insert(0, APPS)

# Run in the child of the "second run": the CLI up to the moment it calls fit.
CHILD = r"""
import sys, time, heterocnn.cli as cli
def fit(*args, **kw):
    print("FIT_AT", time.time(), flush=True)
    raise SystemExit(0)
cli.fit = fit
cli.main(["--data-folder", sys.argv[1], "--no-progress", "--epochs", "1"])
"""


def write_folder(folder, n):
    """DIR/<class>/<i>.png for i < n, unless DIR already holds exactly those files."""
    from PIL import Image

    import heterocnn as hc

    marker = os.path.join(folder, ".complete")
    if os.path.exists(marker) and open(marker).read() == str(n):
        return
    shutil.rmtree(folder, ignore_errors=True)
    train = hc.datasets.fashion_mnist("train")
    names = [c.replace("/", "-") for c in train.classes]
    for name in names:
        os.makedirs(os.path.join(folder, name))
    for i in range(n):
        j = i % len(train)
        Image.fromarray(train.images[j, 0]).save(
            os.path.join(folder, names[train.labels[j]], f"{i:05d}.png"))
    with open(marker, "w") as f:
        f.write(str(n))
    print(f"wrote {n} PNGs to {folder} from {train.source}")


def pillow_loop(folder):
    import numpy as np
    from PIL import Image

    classes = sorted(e.name for e in os.scandir(folder) if e.is_dir())
    paths = [os.path.join(folder, c, f) for c in classes
             for f in sorted(os.listdir(os.path.join(folder, c)))]
    return np.stack([np.asarray(Image.open(p).convert("L").resize((28, 28))) for p in paths])


def second_run(folder, env):
    start = time.time()
    out = subprocess.run([sys.executable, "-c", CHILD, folder], capture_output=True, text=True,
                         env=env, timeout=600)
    line = next((ln for ln in out.stdout.splitlines() if ln.startswith("FIT_AT")), None)
    if line is None:
        raise RuntimeError(f"the CLI did not reach fit: {out.stdout[-2000:]} {out.stderr[-2000:]}")
    return float(line.split()[1]) - start


def cpu_seconds():
    """User + system CPU seconds of this process and of its children that have ended."""
    import resource

    own, kids = (resource.getrusage(w) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def timed(fn, times, cpu, key):
    """fn(), its wall time appended to times[key] and its CPU seconds to cpu[key]."""
    c, t = cpu_seconds(), time.perf_counter()
    out = fn()
    times[key].append(time.perf_counter() - t)
    cpu[key].append(cpu_seconds() - c)
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=60000)
    p.add_argument("--folder",
                   default=os.path.join(tempfile.gettempdir(), "heterocnn-bench-decode"))
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)

    import numpy as np

    import heterocnn as hc
    from _bench_common import figure, load_average, machine_info, machine_tag, versions, write_json

    write_folder(args.folder, args.images)
    cache = tempfile.mkdtemp(prefix="heterocnn-bench-cache-")
    os.environ["XDG_CACHE_HOME"] = cache
    env = dict(os.environ)
    machine = machine_info(hc, len(os.sched_getaffinity(0)))
    print(f"{machine['cpu']}, {machine['cores']} cores, load average "
          f"{machine['load_average_start']}; {args.images} PNGs in {args.folder}")
    times = {"pillow_loop": [], "image_folder": [], "one_worker": [], "first_run": [],
             "second_run": []}
    reference = pillow_loop(args.folder)  # warm-up: the files in the page cache
    cpu = {k: [] for k in times}
    for r in range(args.repeats):
        timed(lambda: pillow_loop(args.folder), times, cpu, "pillow_loop")
        data = timed(lambda: hc.datasets.image_folder(args.folder, cache=False, progress=False),
                     times, cpu, "image_folder")
        assert np.array_equal(data.images[:, 0], reference), "image_folder decoded otherwise"
        timed(lambda: hc.datasets.image_folder(args.folder, cache=False, progress=False,
                                               workers=1), times, cpu, "one_worker")
        shutil.rmtree(os.path.join(cache, "heterocnn"), ignore_errors=True)
        timed(lambda: hc.datasets.image_folder(args.folder, progress=False), times, cpu,
              "first_run")
        times["second_run"].append(second_run(args.folder, env))
        print(f"repeat {r + 1}: " + ", ".join(
            f"{k} {v[-1]:.2f} s" + (f" ({cpu[k][-1]:.2f} CPU s)" if cpu[k] else "")
            for k, v in times.items()), flush=True)
    shutil.rmtree(cache, ignore_errors=True)
    machine["load_average_end"] = load_average()
    results = {k: figure(v, "s") for k, v in times.items()}
    results.update({f"{k}_cpu": figure(v, "CPU s") for k, v in cpu.items() if v})
    ratio = results["pillow_loop"]["median"] / results["image_folder"]["median"]
    same_repeat = figure([a / b for a, b in zip(times["pillow_loop"], times["image_folder"])], "x")
    print(f"image_folder is {ratio:.2f}x the single-process Pillow loop (medians; same-repeat "
          f"ratios {same_repeat['min']:.2f}-{same_repeat['max']:.2f}, median "
          f"{same_repeat['median']:.2f}); one worker "
          f"{results['pillow_loop']['median'] / results['one_worker']['median']:.2f}x; the "
          f"second run calls fit after {results['second_run']['median']:.2f} s "
          f"(load average at the end {machine['load_average_end']})")
    command = " ".join(["python", "apps/bench_decode.py"] + (argv or sys.argv[1:]))
    out = {"schema": "heterocnn-bench-decode/1", "command": command,
           "images": args.images, "machine": machine, "versions": versions(hc, np),
           "pillow": __import__("PIL").__version__, "results": results, "speedup": ratio,
           "same_repeat_speedup": same_repeat}
    path = args.json or os.path.join(ROOT, "benchmarks", f"decode-{machine_tag(machine)}.json")
    write_json(path, out)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
