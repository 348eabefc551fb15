#!/usr/bin/env python3
"""Training throughput on the CPU, heterocnn against PyTorch in the same run: the old command
line of `python apps/bench.py --suite cpu` (core/CPU_PERF.md quotes it), kept as a thin wrapper.

    python apps/bench_cpu.py [--threads 2] [--batch-size 64] [--steps 300] [--repeats 3]
                             [--nets mlp lenet5 convnet] [--json bench-out/bench_cpu.json]"""

import argparse
import sys

import bench

p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
p.add_argument("--threads", default="2")
p.add_argument("--batch-size", type=int, default=64)
p.add_argument("--steps", type=int, default=300, help="timed steps per repeat")
p.add_argument("--repeats", default="3")
p.add_argument("--nets", nargs="+", default=["mlp", "lenet5", "convnet"])
p.add_argument("--json", default="bench-out/bench_cpu.json")
a = p.parse_args()
sys.exit(bench.main(["--suite", "cpu", "--threads", a.threads, "--batches", str(a.batch_size),
                     "--images", str(a.steps * a.batch_size), "--repeats", a.repeats,
                     "--nets", ",".join(a.nets), "--json", a.json, "--no-report"]))
